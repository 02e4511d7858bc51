"""Evaluation metrics of an adapted generator, in CLIP space, on a fixed set of latents.

Pure functions on embeddings (rows L2-normalised, one row per sample) plus a registry of named metrics
that :func:`stylenada.eval.evaluate` runs on an :class:`EvalContext`:

- ``clip_target``: mean cosine between adapted samples and the template-averaged target text
  (the "quality" score of HyperDomainNet and StyleDomain);
- ``direction``: mean cosine between the image-change directions (adapted minus frozen, same latent) and
  the text direction, the quantity the directional loss maximises;
- ``diversity``: mean pairwise (1 - cosine) of adapted and of frozen samples, and their ratio
  (mode collapse shows as a ratio near 0);
- ``preservation``: CLIP image similarity between frozen and adapted samples of the same latent;
- ``reference``: Frechet distance and KID to a folder of reference images, in CLIP image space.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..errors import StylenadaError


# --- pure metrics on embeddings -------------------------------------------------------------------
def mean_cosine(x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean cosine between matching rows of ``x`` and ``y`` (``y`` may be one row, broadcast)."""
    return float(F.cosine_similarity(x.double(), y.double().expand_as(x), dim=-1).mean())


def directional_agreement(e_adapted: torch.Tensor, e_frozen: torch.Tensor, direction: torch.Tensor,
                          eps: float = 1e-8) -> float:
    """Mean cosine between ``e_adapted - e_frozen`` and ``direction``; 0 for samples that did not change."""
    change = (e_adapted - e_frozen).double()
    norm = change.norm(dim=-1)
    cos = (change @ F.normalize(direction.double(), dim=-1)) / norm.clamp_min(eps)
    return float(torch.where(norm > eps, cos, torch.zeros_like(cos)).mean())


def pairwise_diversity(e: torch.Tensor) -> float:
    """Mean over pairs i < j of ``1 - cos(e_i, e_j)``."""
    e = F.normalize(e.double(), dim=-1)
    n = len(e)
    if n < 2:
        raise StylenadaError("diversity needs at least 2 samples: raise --n")
    sim = e @ e.T
    off_diagonal = sim.sum() - sim.diagonal().sum()
    return float(1 - off_diagonal / (n * (n - 1)))


def frechet_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to the rows of ``x`` and ``y`` ([N, D] each)."""
    x, y = x.double(), y.double()
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = torch.cov(x.T), torch.cov(y.T)
    evals, evecs = torch.linalg.eigh(s1)
    sqrt_s1 = evecs @ torch.diag(evals.clamp_min(0).sqrt()) @ evecs.T
    cross = torch.linalg.eigvalsh(sqrt_s1 @ s2 @ sqrt_s1).clamp_min(0).sqrt().sum()
    return float((mu1 - mu2).square().sum() + s1.trace() + s2.trace() - 2 * cross)


def kernel_distance(x: torch.Tensor, y: torch.Tensor, subsets: int = 50, subset_size: int = 1000,
                    seed: int = 0) -> float:
    """KID: unbiased MMD^2 with the cubic polynomial kernel ``(x.y / d + 1)^3``, averaged over subsets."""
    x, y = x.double(), y.double()
    d = x.shape[1]
    m = min(len(x), len(y), subset_size)
    if m < 2:
        raise StylenadaError("KID needs at least 2 samples on each side")
    g = torch.Generator().manual_seed(seed)
    total = 0.0
    for _ in range(subsets):
        a = x[torch.randperm(len(x), generator=g)[:m]]
        b = y[torch.randperm(len(y), generator=g)[:m]]
        k_aa, k_bb, k_ab = ((a @ a.T / d + 1) ** 3, (b @ b.T / d + 1) ** 3, (a @ b.T / d + 1) ** 3)
        same = (k_aa.sum() - k_aa.diagonal().sum() + k_bb.sum() - k_bb.diagonal().sum()) / (m * (m - 1))
        total += float(same - 2 * k_ab.mean())
    return total / subsets


# --- the evaluation context and the metric registry -----------------------------------------------
@dataclass
class EvalContext:
    """What every metric may use; image embeddings are computed once per CLIP model and cached."""

    images_frozen: torch.Tensor  # [N, 3, H, W] in [-1, 1], same latents as images_adapted
    images_adapted: torch.Tensor
    clip_models: list  # [(ClipModel, weight)]
    source: str | None
    target: str | None
    templates: str = "imagenet"
    reference: torch.Tensor | list[torch.Tensor] | None = None  # reference-domain images (any sizes): Frechet, KID
    face_identity: object | None = None  # a FaceIdentity (faces only): adds identity similarity
    _cache: dict = field(default_factory=dict, repr=False)

    def embed(self, which: str, index: int) -> torch.Tensor:
        key = (which, index)
        if key not in self._cache:
            model = self.clip_models[index][0]
            images = {"frozen": self.images_frozen, "adapted": self.images_adapted,
                      "reference": self.reference}[which]
            chunks = images.split(32) if isinstance(images, torch.Tensor) else images  # a list: one image each
            with torch.no_grad():
                self._cache[key] = torch.cat([model.encode_image(c).float().cpu() for c in chunks])
        return self._cache[key]

    def model_names(self) -> list[str]:
        return [getattr(m, "name", f"clip{i}") for i, (m, _) in enumerate(self.clip_models)]


MetricFn = Callable[[EvalContext], dict]
METRICS: dict[str, MetricFn] = {}


def register_metric(name: str) -> Callable[[MetricFn], MetricFn]:
    def deco(fn: MetricFn) -> MetricFn:
        METRICS[name] = fn
        return fn

    return deco


def _per_model(ctx: EvalContext, fn: Callable[[int], float]) -> dict:
    return {name: fn(i) for i, name in enumerate(ctx.model_names())}


@register_metric("clip_target")
def clip_target_metric(ctx: EvalContext) -> dict:
    if not ctx.target:
        return {}

    def score(i: int) -> float:
        text = ctx.clip_models[i][0].text_embedding(ctx.target, ctx.templates).float().cpu()
        return mean_cosine(ctx.embed("adapted", i), text)

    return {"adapted": _per_model(ctx, score)}


@register_metric("direction")
def direction_metric(ctx: EvalContext) -> dict:
    if not (ctx.source and ctx.target):
        return {}

    def agree(i: int) -> float:
        direction = ctx.clip_models[i][0].text_direction(ctx.source, ctx.target, ctx.templates).float().cpu()
        return directional_agreement(ctx.embed("adapted", i), ctx.embed("frozen", i), direction)

    return _per_model(ctx, agree)


@register_metric("diversity")
def diversity_metric(ctx: EvalContext) -> dict:
    out = {}
    for i, name in enumerate(ctx.model_names()):
        a, f = pairwise_diversity(ctx.embed("adapted", i)), pairwise_diversity(ctx.embed("frozen", i))
        out[name] = {"adapted": a, "frozen": f, "ratio": a / f if f > 0 else float("nan")}
    return out


@register_metric("preservation")
def preservation_metric(ctx: EvalContext) -> dict:
    return _per_model(ctx, lambda i: mean_cosine(ctx.embed("adapted", i), ctx.embed("frozen", i)))


@register_metric("reference")
def reference_metric(ctx: EvalContext) -> dict:
    if ctx.reference is None:
        return {}
    out = {}
    for i, name in enumerate(ctx.model_names()):
        ref = ctx.embed("reference", i)
        a, f = ctx.embed("adapted", i), ctx.embed("frozen", i)
        out[name] = {"frechet_adapted": frechet_distance(a, ref), "frechet_frozen": frechet_distance(f, ref),
                     "kid_adapted": kernel_distance(a, ref, subsets=20),
                     "kid_frozen": kernel_distance(f, ref, subsets=20)}
    return out


@register_metric("identity")
def identity_metric(ctx: EvalContext) -> dict:
    if ctx.face_identity is None:
        return {}
    from .identity import identity_similarity

    fid = ctx.face_identity
    return identity_similarity(fid.descriptors(ctx.images_adapted), fid.descriptors(ctx.images_frozen))


__all__ = ["METRICS", "EvalContext", "directional_agreement", "frechet_distance", "kernel_distance",
           "mean_cosine", "pairwise_diversity", "register_metric"]
