"""Differentiable CLIP image preprocessing, equal to open_clip's inference transform on tensors.

open_clip's validation transform (``open_clip.transform.image_transform(..., is_train=False)``) is, per
``resize_mode``:

- ``shortest``: resize the shorter side to the model's size (torchvision ``Resize(int)``), centre crop;
- ``squash``: resize both sides to the model's size (``Resize((h, w))``);
- ``longest``: resize the longer side to the size (keeping the aspect ratio), centre crop or pad with
  ``fill_color``;

then normalise with ``mean``/``std``. torchvision resizes tensors with
``F.interpolate(mode, align_corners=False, antialias=True)`` and skips the resize when the size already
matches; the functions below do exactly that, so gradients flow back to the input image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class PreprocessConfig:
    """A CLIP model's image preprocessing, as open_clip's ``preprocess_cfg`` describes it."""

    image_size: tuple[int, int]  # (height, width)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"  # 'bicubic' or 'bilinear' ('random' means bicubic at inference)
    resize_mode: str = "shortest"  # 'shortest', 'squash' or 'longest'
    fill_color: int = 0  # padding value in 0..255, only for 'longest'

    @classmethod
    def from_open_clip(cls, cfg: dict) -> PreprocessConfig:
        """From an open_clip ``preprocess_cfg`` dict (keys size, mean, std, interpolation, resize_mode, fill_color)."""
        size = cfg.get("size", 224)
        size = (int(size), int(size)) if isinstance(size, int | float) else (int(size[-2]), int(size[-1]))

        def triple(v) -> tuple[float, float, float]:
            v = tuple(float(x) for x in v) if isinstance(v, list | tuple) else (float(v),) * 3
            if len(v) != 3:
                raise ValueError(f"expected 3 channel values in a CLIP preprocess config, got {v}")
            return v

        interpolation = cfg.get("interpolation") or "bicubic"
        resize_mode = cfg.get("resize_mode") or "shortest"
        if interpolation not in ("bicubic", "bilinear", "random"):
            raise ValueError(f"unsupported CLIP interpolation {interpolation!r}")
        if resize_mode not in ("shortest", "squash", "longest"):
            raise ValueError(f"unsupported CLIP resize_mode {resize_mode!r}")
        return cls(
            image_size=size,
            mean=triple(cfg["mean"]),
            std=triple(cfg["std"]),
            interpolation="bicubic" if interpolation == "random" else interpolation,
            resize_mode=resize_mode,
            fill_color=int(cfg.get("fill_color", 0) or 0),
        )

    def to_open_clip(self) -> dict:
        """The open_clip ``preprocess_cfg`` dict for this config."""
        return {
            "size": self.image_size,
            "mode": "RGB",
            "mean": self.mean,
            "std": self.std,
            "interpolation": self.interpolation,
            "resize_mode": self.resize_mode,
            "fill_color": self.fill_color,
        }


def _resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """torchvision ``F.resize`` on a float tensor: a no-op at equal size, else antialiased interpolation."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=list(size), mode=mode, align_corners=False, antialias=True)


def _center_crop_or_pad(x: torch.Tensor, size: tuple[int, int], fill: float) -> torch.Tensor:
    """torchvision ``center_crop`` (pads evenly with ``fill`` first when the image is smaller)."""
    ch, cw = size
    h, w = x.shape[-2:]
    if ch > h or cw > w:
        pad_l = (cw - w) // 2 if cw > w else 0
        pad_t = (ch - h) // 2 if ch > h else 0
        pad_r = (cw - w + 1) // 2 if cw > w else 0
        pad_b = (ch - h + 1) // 2 if ch > h else 0
        x = F.pad(x, (pad_l, pad_r, pad_t, pad_b), value=fill)
        h, w = x.shape[-2:]
        if (h, w) == (ch, cw):
            return x
    top = int(round((h - ch) / 2.0))
    left = int(round((w - cw) / 2.0))
    return x[..., top : top + ch, left : left + cw]


def _keep_ratio_size(h: int, w: int, size: tuple[int, int], longest: bool) -> tuple[int, int]:
    """open_clip's ``ResizeKeepRatio`` output size."""
    rh, rw = h / size[0], w / size[1]
    ratio = max(rh, rw) if longest else min(rh, rw)
    return round(h / ratio), round(w / ratio)


def resize_for_clip(images01: torch.Tensor, cfg: PreprocessConfig) -> torch.Tensor:
    """Resize and crop NCHW images in [0, 1] to ``cfg.image_size`` the way open_clip's transform does."""
    size = cfg.image_size
    mode = cfg.interpolation
    h, w = images01.shape[-2:]
    if cfg.resize_mode == "squash":
        return _resize(images01, size, mode)
    if cfg.resize_mode == "longest":
        x = _resize(images01, _keep_ratio_size(h, w, size, longest=True), mode)
        return _center_crop_or_pad(x, size, cfg.fill_color / 255.0)
    # 'shortest'
    if size[0] == size[1]:
        # torchvision Resize(int): shorter side -> size, longer side -> int(size * long / short)
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = size[0], int(size[0] * long / short)
        new_hw = (new_long, new_short) if w <= h else (new_short, new_long)
        x = _resize(images01, new_hw, mode)
    else:
        # open_clip uses ResizeKeepRatio with its default (bicubic) interpolation here
        x = _resize(images01, _keep_ratio_size(h, w, size, longest=False), "bicubic")
    return _center_crop_or_pad(x, size, 0.0)


def preprocess_for_clip(images: torch.Tensor, cfg: PreprocessConfig, mean: torch.Tensor | None = None,
                        std: torch.Tensor | None = None) -> torch.Tensor:
    """Generator output (NCHW in [-1, 1], any size) -> normalised CLIP input at ``cfg.image_size``.

    clamp to [-1, 1] -> ``(x + 1) / 2`` -> resize/crop as open_clip -> ``(x - mean) / std``.

    The clamp makes CLIP judge the image that will be saved: without it a generator trained against CLIP
    can push pixels past white or black, where no viewer sees them but CLIP does (the shapes world's
    colour task found exactly that: a background at B = 2.5 read as "blue"). In-range pixels are
    untouched. ``mean``/``std`` may be given as [1, 3, 1, 1] tensors to skip rebuilding them.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images of shape [N, 3, H, W], got {list(images.shape)}")
    if not math.prod(images.shape[-2:]):
        raise ValueError(f"empty image of shape {list(images.shape)}")
    x = (images.clamp(-1, 1) + 1) * 0.5
    x = resize_for_clip(x, cfg)
    if mean is None:
        mean = torch.tensor(cfg.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    if std is None:
        std = torch.tensor(cfg.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean.to(x.dtype)) / std.to(x.dtype)
