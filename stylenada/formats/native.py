"""Our own format: safetensors weights with the architecture as JSON in the file's metadata."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError, first_line
from ..models.family import get_family
from ..utils.io import atomic_write
from .registry import CheckpointFormat, register_format

META_KEY = "stylenada"
FORMAT_VERSION = 2  # 2: the generator family is recorded ("family"); 1: StyleGAN2 implied


def _sniff(path: Path, head: bytes) -> bool:
    if len(head) < 10:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 0 < n < 100_000_000 and head[8:9] == b"{"


def read_metadata(path: Path) -> dict:
    """The JSON that stylenada stores in a safetensors file's metadata."""
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
    except (struct.error, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: corrupt safetensors header ({e}); save or download the file again") from e
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: corrupt safetensors header (not a JSON object); save or download the file "
                              "again")
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: corrupt safetensors metadata (not a JSON object); save the file again")
    if META_KEY not in meta:
        keys = [k for k in (header if isinstance(header, dict) else {}) if k != "__metadata__"]
        if keys and not any(k.startswith(("synthesis.", "mapping.")) for k in keys):
            what = "a CLIP model" if any(k.startswith(("visual.", "transformer.")) for k in keys) else "another network"
            raise CheckpointError(f"{path}: not a generator checkpoint (its tensors are {what}'s, e.g. {keys[0]!r}); "
                                  "give a StyleGAN2 generator (.safetensors written by stylenada, .pt or .pkl)")
        raise CheckpointError(
            f"{path}: a generator's tensors without stylenada metadata; write it with `stylenada convert` "
            "or `save_generator`, which record the architecture")
    try:
        return json.loads(meta[META_KEY])
    except (TypeError, json.JSONDecodeError, RecursionError) as e:
        raise CheckpointError(f"{path}: the stylenada metadata is not valid JSON ({first_line(e, 80)}); "
                              "save the file again") from None


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 of the tensors' names, dtypes, shapes and bytes, in name order."""
    h = hashlib.sha256()
    for k in sorted(tensors):
        t = tensors[k].detach().contiguous().cpu()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Atomically write ``tensors`` with ``meta`` (JSON-serialisable) and the tensors' sha256 into a
    safetensors file."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    meta = {**meta, "sha256": tensors_digest(tensors)}
    atomic_write(path, lambda p: save_file(tensors, str(p), metadata={META_KEY: json.dumps(meta)}))


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, RuntimeError) as e:
        raise CheckpointError(f"{path}: cannot read safetensors data ({first_line(e, 120)}); the file is truncated "
                              "or corrupt") from None


def load_checked_tensors(path: Path, meta: dict) -> dict[str, torch.Tensor]:
    """The file's tensors, verified against the sha256 in its metadata when there is one (files written
    before checksums existed have none)."""
    tensors = load_tensors(path)
    if "sha256" in meta and meta["sha256"] != tensors_digest(tensors):
        raise CheckpointError(f"{path}: the tensors do not match the checksum written with them (changed bytes); "
                              "save or download the file again")
    return tensors


def _load(path: Path):
    meta = read_metadata(path)
    if not isinstance(meta, dict) or meta.get("kind") != "generator":
        kind = meta.get("kind") if isinstance(meta, dict) else type(meta).__name__
        raise CheckpointError(f"{path}: holds a {kind!r}, not a generator")
    version = meta.get("version", 1)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{path}: written by a newer stylenada (format version {version!r}; this one reads "
                              f"up to {FORMAT_VERSION}): upgrade stylenada")
    # Files written before families existed are StyleGAN2's.
    family = get_family(meta.get("family", "stylegan2"), str(path))
    cfg = family.config_from_dict(meta.get("config"), str(path))
    return cfg, load_checked_tensors(path, meta)


def _save(G, path: Path) -> None:
    from .. import __version__

    meta = {"kind": "generator", "family": G.family, "version": FORMAT_VERSION, "stylenada": __version__,
            "config": G.cfg.to_dict()}
    save_tensors(path, G.state_dict(), meta)


NATIVE = register_format(CheckpointFormat(
    name="native", description="stylenada safetensors", sniff=_sniff, load=_load, save=_save,
    suffix=".safetensors"))
