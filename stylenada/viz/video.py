"""Videos: a latent walk rendered by the frozen and adapted generators side by side, and a walk through
weight space from the source generator to each adapted one (imageio with ffmpeg, H.264 mp4)."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import StylenadaError
from ..utils.images import to_uint8

MIN_SIDE = 256  # small generators are upscaled (nearest) so that players show them at a useful size


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation of rows (for z); falls back to lerp for nearly parallel vectors."""
    an, bn = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    omega = torch.acos((an * bn).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    out = (torch.sin((1 - t) * omega) / so) * a + (torch.sin(t * omega) / so) * b
    return torch.where(so.abs() < 1e-6, (1 - t) * a + t * b, out)


def frame_from_images(images: torch.Tensor) -> np.ndarray:
    """[k, 3, H, W] in [-1, 1] -> one HxWx3 uint8 frame, side by side, sized for H.264 (multiples of 16)."""
    strip = torch.cat(list(images), dim=-1)[None]
    h, w = strip.shape[-2:]
    scale = max(1, -(-MIN_SIDE // h))
    if scale > 1:
        strip = F.interpolate(strip, scale_factor=scale, mode="nearest")
    h, w = strip.shape[-2:]
    strip = F.pad(strip, (0, (-w) % 16, 0, (-h) % 16), value=1.0)
    return to_uint8(strip)[0]


def write_video(frames: Iterator[np.ndarray], out: str | Path, fps: int) -> int:
    import imageio.v2 as imageio

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with imageio.get_writer(out, fps=fps, codec="libx264", pixelformat="yuv420p", macro_block_size=16) as writer:
        for frame in frames:
            writer.append_data(frame)
            count += 1
    return count


@torch.no_grad()
def latent_walk_video(G_frozen, G_adapted: Sequence, out: str | Path, n_keyframes: int = 4,
                      frames_per_transition: int = 16, seed: int = 0, truncation: float = 0.7, fps: int = 24) -> int:
    """A loop through ``n_keyframes`` random latents (slerp in z), each frame showing the frozen generator
    and every adapted one side by side. Returns the number of frames."""
    if n_keyframes < 2 or frames_per_transition < 1:
        raise StylenadaError("a latent walk needs at least 2 keyframes and 1 frame per transition")
    z = torch.randn(n_keyframes, G_frozen.z_dim, generator=torch.Generator().manual_seed(seed))
    device = next(G_frozen.parameters()).device

    def frames():
        for k in range(n_keyframes):
            a, b = z[k:k + 1], z[(k + 1) % n_keyframes:(k + 1) % n_keyframes + 1]
            for i in range(frames_per_transition):
                zi = slerp(a, b, i / frames_per_transition).to(device)
                ws = G_frozen.mapping(zi, truncation_psi=truncation)
                imgs = [G.synthesis(ws, noise_mode="const") for G in (G_frozen, *G_adapted)]
                yield frame_from_images(torch.cat(imgs).cpu())

    return write_video(frames(), out, fps)


@torch.no_grad()
def cross_model_video(G_source, G_adapted: Sequence, out: str | Path, frames_per_model: int = 24, n_latents: int = 4,
                      seed: int = 0, truncation: float = 0.7, fps: int = 24) -> int:
    """Fixed latents rendered while the weights move from the source generator to each adapted one in turn
    (linear interpolation of every floating tensor). Returns the number of frames."""
    if not G_adapted or frames_per_model < 2:
        raise StylenadaError("a cross-model video needs at least one adapted generator and 2 frames per model")
    device = next(G_source.parameters()).device
    z = torch.randn(n_latents, G_source.z_dim, generator=torch.Generator().manual_seed(seed)).to(device)
    ws = G_source.mapping(z, truncation_psi=truncation)
    src = G_source.state_dict()
    G_mix = copy.deepcopy(G_source).eval()

    def frames():
        for G in G_adapted:
            dst = G.state_dict()
            for i in range(frames_per_model):
                t = i / (frames_per_model - 1)
                G_mix.load_state_dict({k: torch.lerp(v, dst[k], t) if v.is_floating_point() else v
                                       for k, v in src.items()})
                yield frame_from_images(G_mix.synthesis(ws, noise_mode="const").cpu())

    return write_video(frames(), out, fps)
