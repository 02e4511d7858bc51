"""Generator checkpoint formats: native safetensors, rosinality ``.pt``, NVIDIA ``.pkl``.

``load_generator`` detects the format from the file's content, infers the architecture (family and
config) from the file and returns a ready generator of that family.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import CheckpointError, first_line
from ..models.family import Generator
from . import native, nvidia, rosinality  # noqa: F401  (registers the formats)
from .registry import FORMATS, CheckpointFormat, build_generator, check_file, describe, detect_format

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckpointInfo:
    path: str
    format: str
    config: object  # the family's config
    num_params: int
    has_w_avg: bool
    family: str = "stylegan2"


def _guarded(path: str | os.PathLike, fn):
    """Run ``fn`` on an untrusted file: any failure that is not already ours becomes one CheckpointError
    line naming the file (corrupt files raise whatever the parser meets: deep nesting, absurd sizes, ...)."""
    try:
        return fn()
    except CheckpointError as e:
        if len(str(e)) >= 300 or "\n" in str(e):
            raise type(e)(first_line(e, 299)) from None
        raise
    except Exception as e:  # RecursionError and MemoryError included
        raise CheckpointError(f"{path}: cannot load ({type(e).__name__}: {first_line(e, 120)}); the file is "
                              "corrupt or not a supported generator checkpoint") from None


def _read(path: str | os.PathLike) -> tuple[CheckpointFormat, object, dict[str, torch.Tensor]]:
    fmt = detect_format(path)
    cfg, state = fmt.load(Path(path))
    return fmt, cfg, state


def load_generator(path: str | os.PathLike, device: str | torch.device = "cpu",
                   dtype: torch.dtype = torch.float32) -> Generator:
    """Load a generator from any supported checkpoint; returned in eval mode on ``device`` in ``dtype``.
    Every problem with the file is a one-line :class:`CheckpointError` naming it."""

    def load() -> Generator:
        fmt, cfg, state = _read(path)
        has_avg = "mapping.w_avg" in state
        if not has_avg:
            state["mapping.w_avg"] = torch.zeros(cfg.w_dim)
        G = build_generator(cfg, state, str(path))
        if not has_avg:
            log.warning("%s stores no average w: estimating it from 4096 seeded samples for truncation", path)
            G.mapping.w_avg.copy_(G.estimate_w_avg())
        G.source_format = fmt.name  # type: ignore[attr-defined]
        return G

    return _guarded(path, load).eval().to(device=device, dtype=dtype)


def inspect_checkpoint(path: str | os.PathLike) -> CheckpointInfo:
    def inspect() -> CheckpointInfo:
        fmt, cfg, state = _read(path)
        G = build_generator(cfg, {**{"mapping.w_avg": torch.zeros(cfg.w_dim)}, **state}, str(path))
        n = sum(p.numel() for p in G.parameters())
        return CheckpointInfo(str(path), fmt.name, cfg, n, "mapping.w_avg" in state, G.family)

    return _guarded(path, inspect)


def writable_formats() -> list[str]:
    return [name for name, f in FORMATS.items() if f.save is not None]


def format_for_output(path: str | os.PathLike, fmt: str | None = None) -> CheckpointFormat:
    """The format to write ``path`` in: named explicitly, or from its suffix."""
    if fmt is None:
        suffix = Path(path).suffix
        matches = [f for f in FORMATS.values() if f.save is not None and f.suffix == suffix]
        if not matches:
            raise CheckpointError(
                f"cannot tell the output format from {Path(path).name!r}: use a .safetensors (native) or "
                ".pt (rosinality) name, or --format {" + ",".join(writable_formats()) + "}")
        return matches[0]
    if fmt not in FORMATS:
        raise CheckpointError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if FORMATS[fmt].save is None:
        raise CheckpointError(f"writing the {fmt} format is not supported; choose one of "
                              f"{', '.join(writable_formats())}")
    return FORMATS[fmt]


def save_generator(G: Generator, path: str | os.PathLike, fmt: str | None = None) -> Path:
    """Write ``G`` atomically in ``fmt`` (default: from the suffix; native for ``.safetensors``)."""
    out = format_for_output(path, fmt)
    out.save(G, Path(path))
    return Path(path)


__all__ = ["FORMATS", "CheckpointInfo", "check_file", "describe", "detect_format", "inspect_checkpoint",
           "load_generator", "save_generator", "writable_formats"]
