"""Videos (H.264 mp4 through imageio-ffmpeg): a latent walk rendered by the frozen and adapted generators
side by side, and a walk through weight space from the source generator to each adapted one."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import StylenadaError
from ..utils.images import make_grid, to_uint8
from ..utils.io import atomic_write

MIN_HEIGHT = 256  # small generators are upscaled (nearest) so that players show them at a useful size


def ease(t: float) -> float:
    """Cosine ease-in-out on [0, 1], so a walk slows down at each keyframe."""
    return (1 - math.cos(math.pi * t)) / 2


def to_frame(images: torch.Tensor, min_height: int = MIN_HEIGHT) -> np.ndarray:
    """[k, 3, H, W] in [-1, 1] -> one HxWx3 uint8 frame: side by side, upscaled by an integer factor to at
    least ``min_height`` rows, padded white to multiples of 16 (H.264 with yuv420p needs even sides)."""
    strip = make_grid(images.float().cpu(), ncols=len(images), pad=2)[None]
    scale = max(1, math.ceil(min_height / strip.shape[-2]))
    if scale > 1:
        strip = F.interpolate(strip, scale_factor=scale, mode="nearest")
    h, w = strip.shape[-2:]
    strip = F.pad(strip, (0, -w % 16, 0, -h % 16), value=1.0)
    return to_uint8(strip)[0]


def write_mp4(frames: Iterable[np.ndarray], out: str | Path, fps: float = 24) -> int:
    """Encode same-sized HxWx3 uint8 frames as H.264/yuv420p mp4, atomically; returns the number of frames."""
    import imageio_ffmpeg

    if fps <= 0:
        raise StylenadaError(f"fps must be positive, got {fps}")
    count = 0

    def encode(path: Path) -> None:
        nonlocal count
        writer = None
        try:
            for frame in frames:
                if writer is None:  # the size comes from the first frame
                    writer = imageio_ffmpeg.write_frames(
                        str(path), (frame.shape[1], frame.shape[0]), fps=fps, codec="libx264", pix_fmt_in="rgb24",
                        pix_fmt_out="yuv420p", macro_block_size=16,
                        output_params=["-f", "mp4", "-movflags", "+faststart"])
                    writer.send(None)
                writer.send(np.ascontiguousarray(frame))
                count += 1
        finally:
            if writer is not None:
                writer.close()
        if writer is None:
            raise StylenadaError("no frames to write")

    atomic_write(out, encode)
    return count


def _device(G) -> torch.device:
    return next(G.parameters()).device


def keyframe_ws(G, n: int, seed: int, truncation: float) -> torch.Tensor:
    """[n, num_ws, w_dim] W+ codes of ``n`` random latents (same seed -> same codes)."""
    z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(seed)).to(_device(G))
    return G.mapping(z, truncation_psi=truncation)


@torch.no_grad()
def latent_walk_video(G_frozen, G_adapted_list: Sequence, out_mp4: str | Path, n_keyframes: int = 4,
                      frames_per_transition: int = 16, seed: int = 0, truncation: float = 0.7, fps: float = 24,
                      min_height: int = MIN_HEIGHT) -> int:
    """A closed loop through ``n_keyframes`` random w's (eased lerp in W), each frame showing the frozen
    generator and every adapted one side by side. Returns the frame count, n_keyframes * frames_per_transition."""
    if n_keyframes < 2 or frames_per_transition < 1:
        raise StylenadaError("a latent walk needs at least 2 keyframes and 1 frame per transition")
    ws = keyframe_ws(G_frozen, n_keyframes, seed, truncation)
    generators = [G_frozen, *G_adapted_list]

    def frames() -> Iterator[np.ndarray]:
        for k in range(n_keyframes):
            a, b = ws[k : k + 1], ws[(k + 1) % n_keyframes :][:1]
            for i in range(frames_per_transition):
                w = torch.lerp(a, b, ease(i / frames_per_transition))
                yield to_frame(torch.cat([G.synthesis(w, noise_mode="const") for G in generators]), min_height)

    return write_mp4(frames(), out_mp4, fps)


def lerp_state(src: dict[str, torch.Tensor], dst: dict[str, torch.Tensor], t: float) -> dict[str, torch.Tensor]:
    """Weights ``t`` of the way from ``src`` to ``dst``: floating tensors interpolated, the rest from ``src``."""
    missing = sorted(set(src) ^ set(dst))
    if missing:
        raise StylenadaError(f"the generators differ in architecture (e.g. {missing[0]!r}): interpolate only "
                             "between a source generator and generators adapted from it")
    return {k: torch.lerp(v, dst[k].to(v), t) if v.is_floating_point() else v for k, v in src.items()}


@torch.no_grad()
def cross_model_video(G_source, G_adapted_list: Sequence, out_mp4: str | Path, frames: int = 24, seed: int = 0,
                      n_latents: int = 4, truncation: float = 0.7, fps: float = 24,
                      min_height: int = MIN_HEIGHT) -> int:
    """Fixed latents rendered while the weights move from the source generator to each adapted one in turn
    (``frames`` per adapted generator, from t=0 to t=1). Returns the frame count, frames * len(G_adapted_list)."""
    if not G_adapted_list or frames < 2:
        raise StylenadaError("a cross-model video needs at least one adapted generator and 2 frames per model")
    ws = keyframe_ws(G_source, n_latents, seed, truncation)
    src = {k: v.clone() for k, v in G_source.state_dict().items()}
    G_mix = copy.deepcopy(G_source).eval()

    def all_frames() -> Iterator[np.ndarray]:
        for G in G_adapted_list:
            dst = G.state_dict()
            for i in range(frames):
                G_mix.load_state_dict(lerp_state(src, dst, i / (frames - 1)))
                yield to_frame(G_mix.synthesis(ws, noise_mode="const"), min_height)

    return write_mp4(all_frames(), out_mp4, fps)
