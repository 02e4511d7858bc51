"""Generator families: the interface every generator offers, and the registry of families.

The rest of the library (training, layer strategies, inversion, figures, ``info``) works through
:class:`Generator` only; ``models/`` and ``formats/`` are the only places that know a family's layer
names. A family is one registered :class:`GeneratorFamily`:

    register_family(GeneratorFamily("stylegan2", GeneratorConfig, Generator))

and checkpoints record its name (native metadata ``family``) so that loading builds the right class.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
import torch.utils.checkpoint
from torch import nn

from ..errors import CheckpointError, first_line

NOISE_MODES = ("random", "const", "none")  # per-pixel noise: fresh each call, the stored maps, or none


@runtime_checkable
class LayoutSlot(Protocol):
    name: str  # a synthesis layer, e.g. "b8.conv0"
    w_index: int  # the W+ entry that drives it
    role: str  # "conv", "torgb", or "input" (StyleGAN3's Fourier features, driven by entry 0)
    resolution: int


class Synthesis(Protocol):
    num_ws: int
    w_dim: int

    def __call__(self, ws: torch.Tensor, noise_mode: str = "const",
                 noise: list[torch.Tensor | None] | None = None) -> torch.Tensor: ...

    def layers_by_w(self) -> list[list[tuple[str, nn.Module]]]: ...

    def parameter_role(self, name: str) -> str: ...

    def sample_noise(self, n: int, generator: torch.Generator | None = None,
                     device: torch.device | str | None = None) -> list[torch.Tensor]: ...

    def noise_resolutions(self) -> list[int]: ...


@runtime_checkable
class Generator(Protocol):
    """What every generator family offers: ``G(z)`` = ``G.synthesis(G.mapping(z))`` with W+ codes
    [N, num_ws, w_dim] in between, images NCHW in about [-1, 1]."""

    family: str
    cfg: Any  # the family's config dataclass: to_dict(), layout() -> list[LayoutSlot]
    z_dim: int
    w_dim: int
    num_ws: int
    resolution: int
    img_channels: int
    mapping: nn.Module  # z [N, z_dim] -> W+ [N, num_ws, w_dim]; its buffer w_avg is the mean w
    synthesis: Synthesis

    def __call__(self, z: torch.Tensor, truncation_psi: float = 1.0, noise_mode: str = "const") -> torch.Tensor: ...


def check_config_keys(config_class: type, d: dict) -> None:
    """ValueError naming the keys of ``d`` that are not fields of the config dataclass."""
    unknown = set(d) - {f.name for f in dataclasses.fields(config_class)}
    if unknown:
        raise ValueError(f"unknown generator config keys: {sorted(unknown)}")


class FieldChecks:
    """Checks of a config's fields, each raising ValueError naming the field (a checkpoint's metadata is
    untrusted input, and bounds keep a corrupt file from building a network of absurd size)."""

    def __init__(self, cfg: Any):
        self.cfg = cfg

    def integer(self, name: str, lo: int, hi: int) -> int:
        v = getattr(self.cfg, name)
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {v!r:.40}")
        return v

    def real(self, name: str, lo: float, hi: float, value: Any = None) -> float:
        v = getattr(self.cfg, name) if value is None else value
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
            raise ValueError(f"{name} must be a finite number in [{lo:g}, {hi:g}], got {v!r:.40}")
        return float(v)

    def style_network(self) -> int:
        """The fields every StyleGAN config has (resolution, latent sizes, mapping, channels, clamp); returns
        the resolution."""
        res = self.integer("resolution", 8, 4096)
        if res & (res - 1):
            raise ValueError(f"resolution must be a power of two, got {res}")
        self.integer("z_dim", 1, 8192)
        self.integer("w_dim", 1, 8192)
        self.integer("mapping_layers", 1, 64)
        self.real("mapping_lr_mul", 1e-6, 1e3)
        self.real("w_avg_beta", 0.0, 1.0)
        self.integer("img_channels", 1, 4)
        self.integer("channel_base", 1, 1 << 26)
        self.integer("channel_max", 1, 8192)
        if self.cfg.conv_clamp is not None:
            self.real("conv_clamp", 1e-6, 1e9)
        return res


@dataclass(frozen=True)
class GeneratorFamily:
    """A generator architecture: its name, config class (``from_dict``/``to_dict``) and generator class."""

    name: str
    config_class: type
    generator_class: Callable[[Any], nn.Module]
    description: str = ""
    preset: Callable[..., Any] | None = None  # (resolution, channel_multiplier) -> config, for random generators

    def config_from_dict(self, d: dict, source: str) -> Any:
        """The family's config from checkpoint metadata; one CheckpointError line naming what is wrong."""
        if not isinstance(d, dict):
            raise CheckpointError(f"{source}: the {self.name} config is not a mapping")
        try:
            return self.config_class.from_dict(d)
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{source}: bad {self.name} config ({first_line(e)})") from None

    def build(self, cfg: Any) -> nn.Module:
        return self.generator_class(cfg)


FAMILIES: dict[str, GeneratorFamily] = {}


def register_family(family: GeneratorFamily) -> GeneratorFamily:
    FAMILIES[family.name] = family
    return family


def get_family(name: str, source: str = "") -> GeneratorFamily:
    if name not in FAMILIES:
        where = f"{source}: " if source else ""
        raise CheckpointError(f"{where}unknown generator family {name!r} (this stylenada knows "
                              f"{', '.join(FAMILIES)}); upgrade stylenada or convert the file")
    return FAMILIES[name]


def family_of(G: nn.Module) -> GeneratorFamily:
    return get_family(getattr(G, "family", ""), type(G).__name__)


def family_for_config(cfg: Any) -> GeneratorFamily:
    """The family whose config class ``cfg`` is."""
    for family in FAMILIES.values():
        if isinstance(cfg, family.config_class):
            return family
    raise CheckpointError(f"no registered generator family has config class {type(cfg).__name__}")


def run_layer(layer: nn.Module, checkpointed: bool, *args, **kwargs) -> torch.Tensor:
    """``layer(*args, **kwargs)``; when ``checkpointed`` and autograd records, its activations are recomputed
    in the backward pass instead of stored (activation checkpointing: the layer's input is all it keeps)."""
    if checkpointed and torch.is_grad_enabled():
        return torch.utils.checkpoint.checkpoint(layer, *args, use_reentrant=False, **kwargs)
    return layer(*args, **kwargs)


def mix_styles(ws: torch.Tensor, ws2: torch.Tensor, cutoff: int) -> torch.Tensor:
    """Style mixing of W+ codes [N, num_ws, w_dim]: entries from ``cutoff`` on are taken from ``ws2``."""
    assert ws.shape == ws2.shape and 0 <= cutoff <= ws.shape[1]
    out = ws.clone()
    out[:, cutoff:] = ws2[:, cutoff:]
    return out


__all__ = ["FAMILIES", "NOISE_MODES", "FieldChecks", "Generator", "GeneratorFamily", "LayoutSlot", "check_config_keys",
           "family_for_config", "family_of", "get_family", "mix_styles", "register_family", "run_layer"]
