"""Image conversions and grids: generator output ([-1, 1] NCHW tensors) to and from files."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import StylenadaError
from .io import atomic_write


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[-1, 1] NCHW float -> NHWC uint8."""
    x = (images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5
    return x.round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def make_grid(images: torch.Tensor, ncols: int | None = None, pad: int = 2, pad_value: float = 1.0) -> torch.Tensor:
    """Tile NCHW images into one CHW image, row-major, ``ncols`` per row (default: about square)."""
    n, c, h, w = images.shape
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    grid = torch.full((c, nrows * (h + pad) + pad, ncols * (w + pad) + pad), pad_value, dtype=images.dtype)
    for i in range(n):
        r, q = divmod(i, ncols)
        top, left = pad + r * (h + pad), pad + q * (w + pad)
        grid[:, top : top + h, left : left + w] = images[i]
    return grid


def save_image(image: torch.Tensor, path: str | os.PathLike) -> Path:
    """Save one CHW (or 1CHW) image in [-1, 1] atomically; the format follows the suffix."""
    if image.ndim == 4:
        assert image.shape[0] == 1
        image = image[0]
    arr = to_uint8(image[None])[0]
    img = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise StylenadaError(f"cannot tell the image format from {path.name!r}: use a .png or .jpg name")
    atomic_write(path, lambda p: img.save(p, format=fmt))
    return path


def save_grid(images: torch.Tensor, path: str | os.PathLike, ncols: int | None = None) -> Path:
    return save_image(make_grid(images.detach().cpu().float(), ncols), path)


def load_image(path: str | os.PathLike, size: int | None = None) -> torch.Tensor:
    """Read an RGB image file as a 1x3xHxW tensor in [-1, 1], optionally resized to size x size."""
    path = Path(path)
    if not path.exists():
        raise StylenadaError(f"image not found: {path} (check the path)")
    try:
        img = Image.open(path).convert("RGB")
    except (UnidentifiedImageError, OSError) as e:
        raise StylenadaError(f"{path} is not a readable image ({e}); pass a PNG or JPEG file") from e
    if size is not None and img.size != (size, size):
        img = img.resize((size, size), Image.LANCZOS)
    x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float() / 127.5 - 1
    return x[None]
