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
    """Instantiate the generator of ``cfg``'s family and load ``state``, naming any missing or mis-shaped
    tensor."""
    G = family_for_config(cfg).build(cfg)
    expected = G.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{source}: weights do not match a {G.family} generator of {describe(cfg)}: "
            f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
            f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}")
    for k, v in expected.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise CheckpointError(
                f"{source}: tensor {k} has shape {tuple(state[k].shape)} but the architecture inferred "
                f"({describe(cfg)}) needs {tuple(v.shape)}; the file is corrupt or not a standard {G.family}")
        if not torch.isfinite(state[k]).all():
            raise CheckpointError(f"{source}: tensor {k} contains NaN or infinite values; the file is corrupt")
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
