"""Losses of StyleGAN-NADA, as pure functions of tensors, and the registry of training loss terms.

Embeddings passed in are raw CLIP features; each function normalises what the paper normalises. A loss
term (``LOSS_TERMS``) is a function of one step's :class:`TermInputs` (both generators' images, their
CLIP embeddings per teacher, the text directions and target embeddings) returning a scalar; the trainer
evaluates the terms that have a weight (``lambda_clip``, ``lambda_l2``, ``lambda_global``, or
``lambdas: {name: weight}`` for any other registered term) and the weighting combines them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import StylenadaError

# Below this norm the image-change direction is treated as undefined (identical images at step 0):
# the difference is divided by EPS instead of its norm, which keeps the loss finite (value about 1 at a
# zero change) with a bounded gradient that points along the text direction. Above the numerical noise
# of a CLIP pass with and without autograd on the same images (~1e-7), far below any trained change.
ZERO_CHANGE_EPS = 1e-4
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


def target_classification_loss(emb_image: torch.Tensor, source_embedding: torch.Tensor,
                               target_embedding: torch.Tensor, logit_scale: float) -> torch.Tensor:
    """Cross-entropy of the teacher's zero-shot choice between the source and the target text, toward the
    target: ``-log softmax(s * [cos(e, source), cos(e, target)])[target]``, averaged over the batch.

    Unlike the directional loss, which any step along the text direction satisfies however short, it keeps
    falling until the teacher is sure: with a teacher that grades partial changes (an interior half filled
    is half "filled"), it asks for the whole change. ``logit_scale``: the teacher's own (CLIP's 100).
    target_embedding: [D] or per sample [N, D].
    """
    e = F.normalize(emb_image, dim=-1)
    s = F.normalize(source_embedding.to(e.dtype), dim=-1)
    t = F.normalize(target_embedding.to(e.dtype), dim=-1)
    margin = (e * t).sum(-1) - e @ s.reshape(-1) if t.ndim == 2 else e @ (t - s).reshape(-1)
    return F.softplus(-logit_scale * margin).mean()


def l2_loss(img_train: torch.Tensor, img_frozen: torch.Tensor) -> torch.Tensor:
    """Mean squared pixel difference between the two generators' images (both in [-1, 1])."""
    assert img_train.shape == img_frozen.shape
    return F.mse_loss(img_train, img_frozen)


def angle_consistency_loss(emb_train: torch.Tensor, emb_frozen: torch.Tensor) -> torch.Tensor:
    """In-domain angle consistency (HyperDomainNet): the batch's pairwise cosine matrix of the adapted images
    should stay that of the frozen images of the same latents, ``mean_{i != j} (cos_ij(train) - cos_ij(frozen))^2``.
    Samples that collapse onto one look raise their mutual cosines toward 1 and pay for it; a change shared
    by every sample (the domain shift) leaves the angles between them nearly as they were."""
    n = emb_train.shape[0]
    if n < 2:
        return emb_train.new_zeros(())
    a, b = F.normalize(emb_train, dim=-1), F.normalize(emb_frozen, dim=-1)
    off = ~torch.eye(n, dtype=torch.bool, device=a.device)
    return ((a @ a.T - b @ b.T)[off]).square().mean()


def spread_loss(emb_train: torch.Tensor, emb_frozen: torch.Tensor) -> torch.Tensor:
    """Moment matching of the batch's spread: ``|std(a) - std(b)|^2 / |std(b)|^2`` over the unit adapted (a)
    and frozen (b) embeddings of the same latents, ``std`` per dimension over the batch. 0 for a change shared
    by every sample (a translation of the batch); up to 1 when the samples collapse onto one look."""
    assert emb_train.shape == emb_frozen.shape and emb_train.ndim == 2
    if len(emb_train) < 2:
        return emb_train.new_zeros(())
    a, b = F.normalize(emb_train, dim=-1), F.normalize(emb_frozen, dim=-1)
    std_a = (a.var(dim=0, unbiased=False) + 1e-12).sqrt()
    std_b = (b.var(dim=0, unbiased=False) + 1e-12).sqrt()
    return (std_a - std_b).square().sum() / std_b.square().sum().clamp_min(1e-12)


def moment_directional_loss(emb_train: torch.Tensor, emb_frozen: torch.Tensor, text_direction: torch.Tensor,
                            spread_weight: float = 1.0) -> torch.Tensor:
    """Per-image directions with moment matching (SVL-style): the batch's image changes need only agree
    with the text direction on average (first moment), while the adapted batch keeps the frozen batch's
    spread (second moment, :func:`spread_loss`).

    ``1 - cos(mean_i d_i, t) + spread_weight * spread_loss``, where ``d_i`` is image i's normalised change
    (as in :func:`directional_loss`). Unlike the directional loss, one image may move off the text direction
    if others make up for it (an image-specific direction); a batch whose samples collapse onto one look
    loses its spread and pays up to ``spread_weight``.
    """
    assert emb_train.shape == emb_frozen.shape and emb_train.ndim == 2
    if text_direction.ndim != 1:
        raise StylenadaError("the moments term needs one text direction for the whole batch, not one per sample "
                             "(a multi-domain run): use the spread term beside the clip term instead")
    a, b = F.normalize(emb_train, dim=-1), F.normalize(emb_frozen, dim=-1)
    d_img = F.normalize(a - b, dim=-1, eps=ZERO_CHANGE_EPS).mean(dim=0)
    d_txt = F.normalize(text_direction.to(a.dtype), dim=-1)
    mean_term = 1 - (F.normalize(d_img, dim=-1, eps=ZERO_CHANGE_EPS) * d_txt).sum()
    return mean_term + spread_weight * spread_loss(emb_train, emb_frozen) if spread_weight else mean_term


def image_direction(emb_source: torch.Tensor, emb_target: torch.Tensor) -> torch.Tensor:
    """Image-guided direction: normalise(mean normalised target embedding - mean normalised source)."""
    src = F.normalize(emb_source, dim=-1).mean(dim=0)
    tgt = F.normalize(emb_target, dim=-1).mean(dim=0)
    return F.normalize(tgt - src, dim=-1)


# --- the registry of training loss terms -----------------------------------------------------------------


@dataclass
class TermInputs:
    """What a loss term may use, computed once per step (embeddings are raw CLIP features, one per teacher)."""

    img_train: torch.Tensor  # [N, C, H, W] trainable generator
    img_frozen: torch.Tensor  # [N, C, H, W] frozen generator, same latents and noise
    emb_train: list[torch.Tensor]  # [N, D] per teacher (with gradient)
    emb_frozen: list[torch.Tensor]  # [N, D] per teacher (no gradient)
    directions: list[torch.Tensor]  # [D] text (or image-guided) direction per teacher
    target_embeddings: list[torch.Tensor | None]  # [D] target text embedding per teacher (None: image-guided)
    weights: list[float]  # each teacher's ensemble weight
    source_embeddings: list[torch.Tensor | None] | None = None  # [D] source text embedding per teacher
    logit_scales: list[float] | None = None  # each teacher's inverse temperature


LossTerm = Callable[[TermInputs], torch.Tensor]
LOSS_TERMS: dict[str, LossTerm] = {}
TEXT_TERMS: set[str] = set()  # terms that compare images with the texts (image-guided mode has none)


def register_loss_term(name: str, needs_text: bool = False) -> Callable[[LossTerm], LossTerm]:
    """Decorator: a new loss term, weighted with ``lambdas: {name: weight}`` in the training config.
    ``needs_text``: the term reads the source or target text embeddings (a configuration that weights it in
    image-guided mode is refused, not silently trained without it)."""

    def deco(fn: LossTerm) -> LossTerm:
        LOSS_TERMS[name] = fn
        if needs_text:
            TEXT_TERMS.add(name)
        return fn

    return deco


@register_loss_term("clip")
def clip_term(x: TermInputs) -> torch.Tensor:
    """The directional CLIP loss, summed over the teachers with their weights."""
    return torch.stack([w * directional_loss(et, ef, d) for et, ef, d, w in
                        zip(x.emb_train, x.emb_frozen, x.directions, x.weights, strict=True)]).sum()


@register_loss_term("l2")
def l2_term(x: TermInputs) -> torch.Tensor:
    return l2_loss(x.img_train.float(), x.img_frozen.float())


@register_loss_term("global", needs_text=True)
def global_term(x: TermInputs) -> torch.Tensor:
    """The global CLIP loss toward the target text (0 in image-guided mode, which has no target text)."""
    terms = [w * global_clip_loss(et, t) for et, t, w in zip(x.emb_train, x.target_embeddings, x.weights,
                                                              strict=True) if t is not None]
    return torch.stack(terms).sum() if terms else x.img_train.new_zeros(())


@register_loss_term("classify", needs_text=True)
def classify_term(x: TermInputs) -> torch.Tensor:
    """The teacher's zero-shot classification of the adapted images as target rather than source
    (:func:`target_classification_loss`), summed over the teachers with their weights (0 in image-guided
    mode, which has no texts)."""
    sources = x.source_embeddings or [None] * len(x.weights)
    scales = x.logit_scales or [100.0] * len(x.weights)
    terms = [w * target_classification_loss(et, s, t, scale) for et, s, t, scale, w in
             zip(x.emb_train, sources, x.target_embeddings, scales, x.weights, strict=True)
             if s is not None and t is not None]
    return torch.stack(terms).sum() if terms else x.img_train.new_zeros(())


@register_loss_term("angle")
def angle_term(x: TermInputs) -> torch.Tensor:
    """The in-domain angle consistency loss against mode collapse, summed over the teachers with their weights."""
    return torch.stack([w * angle_consistency_loss(et, ef) for et, ef, w in
                        zip(x.emb_train, x.emb_frozen, x.weights, strict=True)]).sum()


@register_loss_term("moments")
def moments_term(x: TermInputs) -> torch.Tensor:
    """Per-image directions with moment matching (:func:`moment_directional_loss`), summed over the teachers
    with their weights: a mean-direction CLIP loss that keeps the batch's spread, against mode collapse."""
    return torch.stack([w * moment_directional_loss(et, ef, d) for et, ef, d, w in
                        zip(x.emb_train, x.emb_frozen, x.directions, x.weights, strict=True)]).sum()


@register_loss_term("spread")
def spread_term(x: TermInputs) -> torch.Tensor:
    """The moment matching of the batch's spread alone (:func:`spread_loss`), summed over the teachers with
    their weights: beside the per-image directional loss (``clip``), against mode collapse."""
    return torch.stack([w * spread_loss(et, ef) for et, ef, w in
                        zip(x.emb_train, x.emb_frozen, x.weights, strict=True)]).sum()
