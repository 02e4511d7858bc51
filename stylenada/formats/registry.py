"""The registry of generator checkpoint formats, and the shared loading helpers."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import CheckpointError
from ..models.family import Generator, family_for_config


@dataclass(frozen=True)
class CheckpointFormat:
    """One on-disk format: how to recognise it, read it and (optionally) write it."""

    name: str
    description: str
    sniff: Callable[[Path, bytes], bool]  # (path, first bytes) -> is this format?
    load: Callable[[Path], tuple[object, dict[str, torch.Tensor]]]  # (family config, native state dict)
    save: Callable[[Generator, Path], None] | None = None
    suffix: str = ""


FORMATS: dict[str, CheckpointFormat] = {}
# Trained StyleGAN2 weights (equalised learning rate: stored ~N(0, 1)), biases, constants and w_avg stay
# far below this; a flipped exponent bit in a float does not.
MAX_ABS_WEIGHT = 1e5


def register_format(fmt: CheckpointFormat) -> CheckpointFormat:
    assert fmt.name not in FORMATS, fmt.name
    FORMATS[fmt.name] = fmt
    return fmt


def check_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path} (check the path)")
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file (pass the file inside it)")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): the file is truncated; download or save it again")
    return path


def detect_format(path: str | os.PathLike) -> CheckpointFormat:
    path = check_file(path)
    with open(path, "rb") as f:
        head = f.read(64)
    for fmt in FORMATS.values():
        if fmt.sniff(path, head):
            return fmt
    known = ", ".join(f"{f.name} ({f.description})" for f in FORMATS.values())
    raise CheckpointError(f"{path}: unrecognised checkpoint format; supported: {known}")


def build_generator(cfg, state: dict[str, torch.Tensor], source: str):
    """Instantiate the generator of ``cfg``'s family and load ``state``, checking the tensors' names,
    shapes, dtypes and values; every mismatch is one CheckpointError line naming the tensor. A config that
    declares more weights than the file holds is refused before anything is built (a corrupt config must
    not allocate a network of absurd size)."""
    family = family_for_config(cfg)
    held = sum(v.numel() for v in state.values() if isinstance(v, torch.Tensor))
    needed = cfg.min_weight_count() if hasattr(cfg, "min_weight_count") else 0
    if needed > held:
        raise CheckpointError(f"{source}: the architecture ({describe(cfg)}) needs at least {needed:,} weights "
                              f"but the file holds {held:,}; the file is corrupt")
    G = family.build(cfg)
    expected = {k: tuple(v.shape) for k, v in G.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected), key=str)
    if missing or unexpected:
        raise CheckpointError(
            f"{source}: weights do not match a {family.name} generator of {describe(cfg)}: "
            f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
            f"unexpected {[str(k)[:40] for k in unexpected[:3]]}{'...' if len(unexpected) > 3 else ''}")
    for k, shape in expected.items():
        v = state[k]
        if not isinstance(v, torch.Tensor) or v.layout != torch.strided or v.is_meta:
            raise CheckpointError(f"{source}: {k} is not a dense tensor ({type(v).__name__}); the file is corrupt")
        if tuple(v.shape) != shape:
            raise CheckpointError(
                f"{source}: tensor {k} has shape {tuple(v.shape)} but the architecture inferred "
                f"({describe(cfg)}) needs {shape}; the file is corrupt or not a standard {family.name}")
        if not v.dtype.is_floating_point:
            raise CheckpointError(f"{source}: tensor {k} holds {str(v.dtype).removeprefix('torch.')}, not floating "
                                  "point weights; the file is corrupt")
        if not torch.isfinite(v).all():
            raise CheckpointError(f"{source}: tensor {k} contains NaN or infinite values; the file is corrupt")
        if v.numel() and v.abs().max() > MAX_ABS_WEIGHT:
            raise CheckpointError(f"{source}: tensor {k} holds values up to {v.abs().max().item():.3g}, far beyond "
                                  "any trained generator's; the file is corrupt")
    G.load_state_dict({k: v.float() for k, v in state.items()})
    return G


def describe(cfg) -> str:
    """A one-line summary of a generator config (any family)."""
    d = cfg.to_dict()
    keys = ("z_dim", "w_dim", "mapping_layers", "channel_base", "channel_max")
    return f"{d.get('resolution')}px, " + ", ".join(f"{k} {d[k]}" for k in keys if k in d)


def infer_channels(channels: dict[int, int], source: str) -> tuple[int, int]:
    """Find (channel_base, channel_max) such that min(base // res, max) gives ``channels`` at every res."""
    top = max(channels)
    channel_max = max(channels.values())
    base = channels[top] * top
    for res, c in channels.items():
        if min(base // res, channel_max) != c:
            raise CheckpointError(
                f"{source}: channel counts {dict(sorted(channels.items()))} do not follow the StyleGAN2 "
                f"rule min(channel_base / resolution, channel_max); this architecture is not supported")
    return base, channel_max
