"""Sampling a generator on fixed latents: the images every metric and figure compares."""

from __future__ import annotations

import torch


@torch.no_grad()
def sample_images(G, n: int, seed: int = 0, truncation: float = 1.0, batch: int = 64) -> torch.Tensor:
    """``G``'s images [n, C, H, W] (CPU) of the ``n`` latents drawn from ``seed``, const noise, in batches."""
    z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(seed))
    device = next(G.parameters()).device
    return torch.cat([G(zc.to(device), truncation_psi=truncation, noise_mode="const").cpu() for zc in z.split(batch)])


__all__ = ["sample_images"]
