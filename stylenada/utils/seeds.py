"""Parsing of seed lists such as ``0-15``, ``1,5,9`` or ``0-3,10``."""

from __future__ import annotations

import torch

from ..errors import StylenadaError


def parse_seeds(text: str) -> list[int]:
    seeds: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part[1:]:
                a, b = part.split("-", 1) if not part.startswith("-") else (part, "")
                lo, hi = int(a), int(b)
                if hi < lo:
                    raise ValueError
                seeds.extend(range(lo, hi + 1))
            else:
                seeds.append(int(part))
        except ValueError:
            raise StylenadaError(f"bad seed list {text!r}: use numbers and ranges like 0-15 or 1,5,9") from None
    if not seeds:
        raise StylenadaError(f"empty seed list {text!r}: give e.g. --seeds 0-15")
    if any(s < 0 or s >= 2**32 for s in seeds):
        raise StylenadaError(f"seeds must be between 0 and 2**32-1, got {text!r}")
    return seeds


def z_from_seeds(seeds: list[int], z_dim: int) -> torch.Tensor:
    """One z per seed, each drawn from its own generator so a seed always gives the same image."""
    return torch.stack([torch.randn(z_dim, generator=torch.Generator().manual_seed(s)) for s in seeds])
