"""Losses of StyleGAN-NADA, as pure functions of tensors.

Embeddings passed in are raw CLIP features; each function normalises what the paper normalises.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Below this norm the image-change direction is treated as undefined (identical images at step 0):
# the difference is divided by EPS instead of its norm, which keeps the loss finite (value 1 at an
# exactly zero change) with a bounded gradient that points along the text direction.
ZERO_CHANGE_EPS = 1e-6
# Below this mean norm of the image change (unit embeddings), the directional loss's gradient, which grows
# as 1 / |change|, says nothing about how far to go: the trainer keeps such a step out of the optimiser's
# moment estimates (see Trainer.train_step).
MIN_IMAGE_CHANGE = 1e-3


def directional_loss(emb_train: torch.Tensor, emb_frozen: torch.Tensor, text_direction: torch.Tensor) -> torch.Tensor:
    """``1 - cos(E_I(G_train(w)) - E_I(G_frozen(w)), E_T(target) - E_T(source))``, averaged over the batch.

    emb_*: [N, D] image features; text_direction: [D] (or [N, D]), normalised here.
    """
    assert emb_train.shape == emb_frozen.shape and emb_train.ndim == 2
    d_img = F.normalize(emb_train, dim=-1) - F.normalize(emb_frozen, dim=-1)
    d_img = F.normalize(d_img, dim=-1, eps=ZERO_CHANGE_EPS)
    d_txt = F.normalize(text_direction.to(d_img.dtype).expand_as(d_img), dim=-1)
    return (1 - (d_img * d_txt).sum(dim=-1)).mean()


def image_change(emb_train: torch.Tensor, emb_frozen: torch.Tensor) -> torch.Tensor:
    """Mean norm of the change between unit image embeddings: 0 when the two generators agree."""
    return (F.normalize(emb_train, dim=-1) - F.normalize(emb_frozen, dim=-1)).norm(dim=-1).mean()


def global_clip_loss(emb_image: torch.Tensor, text_embedding: torch.Tensor) -> torch.Tensor:
    """``1 - cos(E_I(image), E_T(target))``, averaged over the batch (the StyleCLIP-style loss)."""
    e = F.normalize(emb_image, dim=-1)
    t = F.normalize(text_embedding.to(e.dtype), dim=-1)
    return (1 - e @ t.reshape(-1)).mean() if t.ndim == 1 or t.shape[0] == 1 else (1 - (e * t).sum(-1)).mean()


def l2_loss(img_train: torch.Tensor, img_frozen: torch.Tensor) -> torch.Tensor:
    """Mean squared pixel difference between the two generators' images (both in [-1, 1])."""
    assert img_train.shape == img_frozen.shape
    return F.mse_loss(img_train, img_frozen)


def image_direction(emb_source: torch.Tensor, emb_target: torch.Tensor) -> torch.Tensor:
    """Image-guided direction: normalise(mean normalised target embedding - mean normalised source)."""
    src = F.normalize(emb_source, dim=-1).mean(dim=0)
    tgt = F.normalize(emb_target, dim=-1).mean(dim=0)
    return F.normalize(tgt - src, dim=-1)
