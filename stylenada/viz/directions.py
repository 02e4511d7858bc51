"""CLIP directions (the StyleGAN-NADA paper's figure): how images moved in CLIP space, against the text.

Frozen and adapted image embeddings of the same latents, and the source and target text embeddings,
projected to 2-D by PCA of the pooled points; an arrow per sample from its frozen to its adapted
embedding, and the text direction from the source to the target text.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure


@dataclass
class DirectionData:
    frozen: torch.Tensor  # [n, D] image embeddings of the frozen generator
    adapted: torch.Tensor  # [n, D] of the adapted generator, same latents
    source_text: torch.Tensor  # [D]
    target_text: torch.Tensor  # [D]
    cosine: torch.Tensor  # [n] cos(adapted - frozen, target_text - source_text); 0 where nothing changed
    source: str = ""
    target: str = ""


@torch.no_grad()
def direction_data(G_frozen, G_adapted, clip_model, source: str, target: str, templates: str = "imagenet",
                   n: int = 16, seed: int = 0, truncation: float = 1.0) -> DirectionData:
    from ..toy.tasks import sample_images

    frozen = clip_model.encode_image(sample_images(G_frozen, n, seed, truncation)).float().cpu()
    adapted = clip_model.encode_image(sample_images(G_adapted, n, seed, truncation)).float().cpu()
    s = clip_model.text_embedding(source, templates).float().cpu()
    t = clip_model.text_embedding(target, templates).float().cpu()
    change = adapted - frozen
    norm = change.norm(dim=-1)
    cos = torch.where(norm > 1e-8, F.cosine_similarity(change, (t - s).expand_as(change), dim=-1),
                      torch.zeros_like(norm))
    return DirectionData(frozen, adapted, s, t, cos, source, target)


def project_2d(points: torch.Tensor) -> torch.Tensor:
    """PCA of the rows to 2-D (centred; deterministic sign: the largest loading of each axis is positive)."""
    x = points.double() - points.double().mean(0)
    _, _, vh = torch.linalg.svd(x, full_matrices=False)
    axes = vh[:2]
    axes = axes * torch.sign(axes.gather(1, axes.abs().argmax(1, keepdim=True)))
    out = x @ axes.T
    if out.shape[1] < 2:
        out = torch.cat([out, torch.zeros(len(out), 2 - out.shape[1], dtype=out.dtype)], 1)
    return out.float()


def plot_directions(data: DirectionData, out: str | Path) -> Path:
    n = len(data.frozen)
    pts = project_2d(torch.cat([data.frozen, data.adapted, data.source_text[None], data.target_text[None]]))
    f, a, s, t = pts[:n], pts[n:2 * n], pts[2 * n], pts[2 * n + 1]
    fig = Figure(figsize=(6.4, 5.6))
    ax = fig.subplots()
    for i in range(n):
        ax.annotate("", xy=a[i].tolist(), xytext=f[i].tolist(),
                    arrowprops={"arrowstyle": "->", "color": "0.55", "lw": 0.8})
    ax.scatter(f[:, 0], f[:, 1], c="C0", s=18, label="frozen generator")
    ax.scatter(a[:, 0], a[:, 1], c="C3", s=18, label="adapted generator")
    ax.annotate("", xy=t.tolist(), xytext=s.tolist(), arrowprops={"arrowstyle": "-|>", "color": "k", "lw": 2})
    ax.scatter([s[0], t[0]], [s[1], t[1]], c="k", marker="*", s=90, label="text")
    ax.annotate(repr(data.source or "source"), s.tolist(), textcoords="offset points", xytext=(4, -12), fontsize=8)
    ax.annotate(repr(data.target or "target"), t.tolist(), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_title(f"CLIP space (PCA): mean cos(image change, text direction) = {float(data.cosine.mean()):.3f}",
                 fontsize=9)
    ax.legend(fontsize=8, loc="best")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    return out
