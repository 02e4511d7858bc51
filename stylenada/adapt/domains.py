"""Compact domains: what a run changed, as a small file applied to a base generator at any strength.

Every modulated layer computes its style vector as ``s = A(w) = W w + b``. A StyleSpace domain (StyleDomain,
ICCV'23) is one offset per style channel, ``s + delta``, which is exactly an offset of the affine bias ``b``:
a run with ``--params stylespace`` trains only those biases, and its domain is their change, a few thousand
numbers (the sum of the style widths: 6,048 for the convs of a 1024 px config-F generator, 9,088 with the
ToRGBs) instead of the ~30 M weights of a generator. ``--params affine`` also trains the affine weights;
``--params stylespace_torgb`` adds to the style offsets the ToRGB layers' own weights and biases, the map from
features to RGB (a few thousand numbers more), which a new colour may need: a generator that only ever drew red
recolours cleanly with them and not with style offsets alone (benchmarks/stylespace.py). ``--params
stylespace_conv`` is the style offsets without the ToRGBs': a domain that composes with a stylespace_torgb one
(outline + blue) because the two change different numbers.

A domain file is safetensors: the changed tensors as differences from the base, with the base's family and
config in the metadata (checked when applied). Domains add up, ``G + a * d1 + b * d2``, and a generator with
domains applied is an ordinary generator (``stylenada convert ... --domain``) for the rest of the ecosystem.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import CheckpointError, StylenadaError
from ..formats.native import load_checked_tensors, read_metadata, save_tensors
from ..formats.registry import check_file, describe
from ..models.family import Generator

DOMAIN_VERSION = 1
# Which synthesis parameters a run may train (applied on top of the layer strategy's choice): a predicate of
# the parameter's name and the role of the layer that holds it ('conv', 'torgb', 'input'; see scope_members).
PARAM_SCOPES: dict[str, Callable[[str, str], bool]] = {
    "full": lambda name, layer: True,
    "stylespace": lambda name, layer: name.endswith(".affine.bias"),
    # The style offsets of every layer but the ToRGBs: a domain that composes with one that changes how channels
    # map to RGB (a colour, stylespace_torgb) without the two editing the same numbers.
    "stylespace_conv": lambda name, layer: name.endswith(".affine.bias") and layer != "torgb",
    "affine": lambda name, layer: ".affine." in name,
    # The style offsets and the ToRGB layers' own weights and biases (how each channel maps to RGB).
    "stylespace_torgb": lambda name, layer: name.endswith(".affine.bias") or (layer == "torgb"
                                                                              and ".affine." not in name),
}


def scope_members(G: Generator, scope: str) -> set[str]:
    """The names of ``G``'s synthesis parameters in ``scope``; a layer's role comes from the family's layout
    (StyleGAN2's ``b32.torgb`` and StyleGAN3's last layer are both 'torgb'); other tensors (a const input)
    have the role 'other'."""
    roles = {slot.name: slot.role for slot in G.cfg.layout()}
    keep = PARAM_SCOPES[scope]
    members = set()
    for name, _ in G.synthesis.named_parameters():
        layer = next((roles[n] for n in roles if name.startswith(n + ".")), "other")
        if keep(name, layer):
            members.add(name)
    return members


@dataclass
class Domain:
    """A domain: per-tensor differences from the base generator (synthesis parameter names), the base's
    family and config, and what the run was asked for."""

    deltas: dict[str, torch.Tensor]
    family: str
    config: dict
    scope: str = "stylespace"
    source: str = ""
    target: str = ""

    @property
    def size(self) -> int:
        return sum(d.numel() for d in self.deltas.values())


def extract_domain(G_base: Generator, G_adapted: Generator, scope: str, source: str = "",
                   target: str = "") -> Domain:
    """The change of the parameters in ``scope`` from ``G_base`` to ``G_adapted`` (tensors that did not
    change are left out)."""
    if scope not in PARAM_SCOPES or scope == "full":
        compact = ", ".join(k for k in PARAM_SCOPES if k != "full")
        raise StylenadaError(f"a domain is extracted for a compact --params scope ({compact}), got {scope!r}")
    keep = scope_members(G_base, scope)
    base = dict(G_base.synthesis.named_parameters())
    deltas = {}
    for name, p in G_adapted.synthesis.named_parameters():
        if name in keep:
            d = (p.detach().float() - base[name].detach().float()).cpu()
            if d.abs().max() > 0:
                deltas[name] = d
    return Domain(deltas, G_base.family, G_base.cfg.to_dict(), scope, source, target)


def save_domain(domain: Domain, path: str | Path) -> Path:
    meta = {"kind": "domain", "version": DOMAIN_VERSION, "family": domain.family, "config": domain.config,
            "scope": domain.scope, "source": domain.source, "target": domain.target}
    save_tensors(Path(path), domain.deltas, meta)
    return Path(path)


def load_domain(path: str | Path) -> Domain:
    path = check_file(path)
    meta = read_metadata(path)
    if not isinstance(meta, dict) or meta.get("kind") != "domain":
        kind = meta.get("kind") if isinstance(meta, dict) else type(meta).__name__
        raise CheckpointError(f"{path}: holds a {kind!r}, not a domain (domain files are written by "
                              "`stylenada train --params stylespace`)")
    if not isinstance(meta.get("config"), dict) or not isinstance(meta.get("family"), str):
        raise CheckpointError(f"{path}: domain metadata lacks the base generator's family and config")
    deltas = load_checked_tensors(path, meta)
    return Domain(deltas, meta["family"], meta["config"], str(meta.get("scope", "")), str(meta.get("source", "")),
                  str(meta.get("target", "")))


def apply_domains(G: Generator, domains: list[tuple[Domain, float]], source: str = "") -> Generator:
    """A copy of ``G`` with ``sum(strength * domain)`` added to its parameters; each domain must have been
    trained on a generator of ``G``'s architecture."""
    out = copy.deepcopy(G)
    params = dict(out.synthesis.named_parameters())
    with torch.no_grad():
        for domain, strength in domains:
            if domain.family != G.family or domain.config != G.cfg.to_dict():
                try:
                    trained_on = describe(type(G.cfg).from_dict(domain.config))
                except (TypeError, ValueError):  # another family's config, or a corrupt one
                    trained_on = "another architecture"
                raise StylenadaError(
                    f"{source or 'the domain'} was trained on a {domain.family} generator of {trained_on}, not on "
                    f"this {G.family} of {describe(G.cfg)}: apply it to the generator it was trained from (or one "
                    "fine-tuned from it)")
            for name, d in domain.deltas.items():
                if name not in params or params[name].shape != d.shape:
                    raise CheckpointError(f"{source}: offset {name!r} {tuple(d.shape)} fits no parameter of the "
                                          "generator; the domain file is corrupt")
                params[name].add_(strength * d.to(params[name]))
    return out


def parse_domain_spec(spec: str) -> tuple[str, float]:
    """'file.safetensors[:strength]' -> (path, strength); strength 1 by default."""
    path, sep, strength = spec.rpartition(":")
    if not sep or not path:
        return spec, 1.0
    try:
        value = float(strength)
    except ValueError:
        return spec, 1.0  # a ':' that belongs to the path
    if not math.isfinite(value):
        raise StylenadaError(f"--domain {spec!r}: the strength must be a finite number")
    return path, value


__all__ = ["Domain", "PARAM_SCOPES", "apply_domains", "extract_domain", "load_domain", "parse_domain_spec",
           "scope_members",
           "save_domain"]
