"""Optimisation-based inversion (projection) into W or W+, after StyleGAN2's projector.

Adam on the latent (and optionally the per-layer noise maps) from the mean w, or from an encoder's
output as a refinement. The loss is pixel MSE, plus an optional CLIP image-feature distance (a
perceptual term that needs no extra weights besides a CLIP model), plus, when noise is optimised, the
projector's noise regulariser (squared autocorrelation at one-pixel shifts, over a pyramid of
2x-downsampled maps; the maps are renormalised to zero mean and unit variance after every step). The
learning rate ramps up over the first 5% of steps and down (cosine) over the last 25%; Gaussian noise
added to w decays to zero over the first 75%.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..errors import StylenadaError
from ..models.family import Generator
from .encoders import Encoder, load_encoder, resize_images

SPACES = ("w", "w+")


@dataclass(frozen=True)
class ProjectConfig:
    """Projection hyper-parameters (defaults follow StyleGAN2's projector where it has them)."""

    steps: int = 500
    space: str = "w+"  # "w": one code for every layer; "w+": one per layer
    optimize_noise: bool = False  # also fit the noise maps (more detail, less editable)
    lr: float = 0.1
    lr_rampup: float = 0.05  # fraction of steps
    lr_rampdown: float = 0.25
    w_noise_factor: float = 0.05  # initial std of the noise added to w, relative to the spread of w
    w_noise_ramp: float = 0.75
    mse_weight: float = 1.0
    clip_weight: float = 1.0  # used only when a CLIP model is given
    noise_reg_weight: float = 1e5  # used only with optimize_noise
    w_avg_samples: int = 10000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.space not in SPACES:
            raise StylenadaError(f"space must be one of {SPACES}, got {self.space!r}")
        if self.steps < 0:
            raise StylenadaError(f"steps must be >= 0, got {self.steps}")


@dataclass
class Inversion:
    """Result of an inversion: codes, noise maps (when fitted), reconstruction and its PSNR (dB) per image."""

    ws: torch.Tensor  # [N, num_ws, w_dim]
    reconstruction: torch.Tensor  # [N, C, R, R] in [-1, 1] (clamped)
    psnr: torch.Tensor  # [N]
    noise: list[torch.Tensor] | None = None  # one [N, 1, r, r] map per synthesis conv, or None (const noise)
    initial_psnr: torch.Tensor | None = None  # PSNR at the starting point (optimisation only)
    losses: list[float] = field(default_factory=list)


def psnr(images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of images in [-1, 1] (peak-to-peak 2, i.e. the usual PSNR on [0, 1] images)."""
    assert images.shape == target.shape, (tuple(images.shape), tuple(target.shape))
    mse = (images.clamp(-1, 1) - target.clamp(-1, 1)).square().flatten(1).mean(1) / 4
    return -10 * torch.log10(mse.clamp_min(1e-12))


def noise_regularizer(noise: list[torch.Tensor]) -> torch.Tensor:
    """Sum over maps and pyramid levels (down to 8x8) of the squared mean one-pixel autocorrelations."""
    reg = noise[0].new_zeros(())
    for n in noise:
        while True:
            reg = reg + (n * torch.roll(n, 1, dims=3)).mean().square() + (n * torch.roll(n, 1, dims=2)).mean().square()
            if n.shape[2] <= 8:
                break
            n = F.avg_pool2d(n, 2)
    return reg


def lr_schedule(t: float, cfg: ProjectConfig) -> float:
    """Learning rate at progress ``t`` in [0, 1): linear ramp-up, cosine ramp-down."""
    ramp = min(1.0, (1.0 - t) / cfg.lr_rampdown)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return cfg.lr * ramp * min(1.0, t / cfg.lr_rampup) if cfg.lr_rampup > 0 else cfg.lr * ramp


def _noise_shapes(G: Generator) -> list[int]:
    return G.synthesis.noise_resolutions()


@torch.no_grad()
def w_statistics(G: Generator, n: int, seed: int) -> tuple[torch.Tensor, float]:
    """Mean w (the generator's stored average) and the scalar spread sqrt(E|w - w_avg|^2) of ``n`` samples."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, G.z_dim, generator=gen).to(G.w_avg.device)
    w = G.mapping(z)[:, 0]
    return G.w_avg.detach().clone(), float((w - G.w_avg).square().sum(1).mean().sqrt())


def project(images: torch.Tensor, G: Generator, cfg: ProjectConfig = ProjectConfig(), clip=None,
            init_ws: torch.Tensor | None = None, progress: bool = True) -> Inversion:
    """Fit W/W+ codes (and optionally noise) so that ``G`` reproduces ``images`` (NCHW in [-1, 1])."""
    assert images.ndim == 4 and images.shape[1] == G.img_channels, f"images must be [N, {G.img_channels}, H, W]"
    device = G.w_avg.device
    target = resize_images(images.to(device=device, dtype=torch.float32), G.resolution)
    n = target.shape[0]
    w_avg, w_std = w_statistics(G, cfg.w_avg_samples, cfg.seed)
    if init_ws is None:
        start = w_avg.expand(n, 1 if cfg.space == "w" else G.num_ws, -1)
    else:
        assert init_ws.shape == (n, G.num_ws, G.w_dim), f"init_ws must be [{n}, {G.num_ws}, {G.w_dim}]"
        start = init_ws.to(device).mean(1, keepdim=True) if cfg.space == "w" else init_ws.to(device)
    w_opt = start.detach().clone().requires_grad_(True)
    gen = torch.Generator().manual_seed(cfg.seed)
    noise = None
    params = [w_opt]
    if cfg.optimize_noise and _noise_shapes(G):  # a generator without noise inputs (StyleGAN3) fits codes only
        noise = [torch.randn(n, 1, r, r, generator=gen).to(device).requires_grad_(True) for r in _noise_shapes(G)]
        params += noise
    opt = torch.optim.Adam(params, betas=(0.9, 0.999), lr=cfg.lr)
    target_feats = None
    if clip is not None:
        with torch.no_grad():
            target_feats = clip.encode_image(target, normalize=True)

    def synth(w: torch.Tensor) -> torch.Tensor:
        ws = w.expand(-1, G.num_ws, -1) if cfg.space == "w" else w
        return G.synthesis(ws, noise_mode="const", noise=noise)

    requires = [p.requires_grad for p in G.parameters()]
    G.requires_grad_(False)
    losses: list[float] = []
    try:
        with torch.no_grad():
            initial = psnr(synth(w_opt), target).cpu()
        bar = tqdm(range(cfg.steps), desc="invert", unit="step", disable=not progress)
        for step in bar:
            t = step / cfg.steps
            for group in opt.param_groups:
                group["lr"] = lr_schedule(t, cfg)
            w_noise_scale = w_std * cfg.w_noise_factor * max(0.0, 1.0 - t / cfg.w_noise_ramp) ** 2
            w_noise = torch.randn(w_opt.shape, generator=gen).to(device) * w_noise_scale
            img = synth(w_opt + w_noise)
            per_image = cfg.mse_weight * (img - target).square().flatten(1).mean(1)
            if target_feats is not None:
                per_image = per_image + cfg.clip_weight * (1 - (clip.encode_image(img, normalize=True)
                                                                * target_feats).sum(-1))
            loss = per_image.sum()
            if noise is not None:
                loss = loss + cfg.noise_reg_weight * noise_regularizer(noise)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            if noise is not None:
                with torch.no_grad():
                    for m in noise:
                        m -= m.mean(dim=(1, 2, 3), keepdim=True)
                        m *= m.square().mean(dim=(1, 2, 3), keepdim=True).rsqrt()
            if step % 10 == 0 or step == cfg.steps - 1:
                bar.set_postfix(loss=f"{losses[-1]:.4f}")
        with torch.no_grad():
            final_w = w_opt.detach().expand(-1, G.num_ws, -1).clone() if cfg.space == "w" else w_opt.detach().clone()
            recon = G.synthesis(final_w, noise_mode="const", noise=noise).clamp(-1, 1)
    finally:
        for p, r in zip(G.parameters(), requires, strict=True):
            p.requires_grad_(r)
    kept = [m.detach() for m in noise] if noise is not None else None
    return Inversion(final_w, recon, psnr(recon, target).cpu(), kept, initial, losses)


def invert(images: torch.Tensor, G: Generator, method: str | os.PathLike | Encoder = "optimize",
           steps: int | None = None, *, config: ProjectConfig | None = None, clip=None, iterations: int = 1,
           progress: bool = True) -> Inversion:
    """Invert ``images`` (NCHW in [-1, 1]) into ``G``'s W+ space.

    ``method``: ``"optimize"`` (projection from the mean w, ``steps`` default 500), an :class:`Encoder` or the
    path of a pSp/e4e checkpoint (single pass, or ``iterations`` ReStyle steps for iterative encoders); with
    an encoder, ``steps`` > 0 adds an optimisation refinement starting from its output.
    """
    cfg = config or ProjectConfig()
    if isinstance(method, str) and method == "optimize":
        if steps is not None:
            cfg = replace(cfg, steps=steps)
        return project(images, G, cfg, clip, progress=progress)
    E = method if isinstance(method, Encoder) else load_encoder(method, device=G.w_avg.device)
    E.check_generator(G)
    with torch.no_grad():
        ws = E.invert(images, G, iterations=iterations).to(G.w_avg.device)
    if steps:
        cfg = replace(cfg, steps=steps)
        return project(images, G, cfg, clip, init_ws=ws, progress=progress)
    with torch.no_grad():
        recon = G.synthesis(ws, noise_mode="const").clamp(-1, 1)
        target = resize_images(images.to(recon), G.resolution)
    return Inversion(ws, recon, psnr(recon, target).cpu())
