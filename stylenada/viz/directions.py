"""CLIP directions (the StyleGAN-NADA paper's figure): how the images moved in CLIP space, against the text.

Frozen and adapted image embeddings of the same latents and the source and target text embeddings are
projected to 2-D by PCA of the pooled points; each sample gets an arrow from its frozen to its adapted
embedding, and the text gets one from the source to the target text.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from .curves import save_figure


@dataclass
class DirectionData:
    """Unit CLIP embeddings of ``n`` latents rendered by both generators, and of the two texts."""

    frozen: torch.Tensor  # [n, D] images of the frozen generator
    adapted: torch.Tensor  # [n, D] images of the adapted generator, same latents
    source_text: torch.Tensor  # [D]
    target_text: torch.Tensor  # [D]
    cosine: torch.Tensor  # [n] cos(adapted - frozen, text direction); 0 where an image did not move
    source: str = "source"
    target: str = "target"

    @property
    def mean_cosine(self) -> float:
        return float(self.cosine.mean())


@torch.no_grad()
def render(G, n: int, seed: int = 0, truncation: float = 1.0, batch: int = 16) -> torch.Tensor:
    """``n`` images of ``G`` (CPU, [-1, 1]) for latents drawn from ``seed``: the same latents for any G."""
    z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(seed))
    device = next(G.parameters()).device
    return torch.cat([G(zb.to(device), truncation_psi=truncation, noise_mode="const").cpu() for zb in z.split(batch)])


@torch.no_grad()
def direction_data(G_frozen, G_adapted, clip_model, source: str, target: str, templates: str = "imagenet",
                   n: int = 16, seed: int = 0, truncation: float = 1.0) -> DirectionData:
    """Embed ``n`` latents rendered by both generators, and the texts, with one ClipModel."""

    def embed(G) -> torch.Tensor:
        return clip_model.encode_image(render(G, n, seed, truncation), normalize=True).float().cpu()

    frozen, adapted = embed(G_frozen), embed(G_adapted)
    s = clip_model.text_embedding(source, templates).float().cpu()
    t = clip_model.text_embedding(target, templates).float().cpu()
    direction = clip_model.text_direction(source, target, templates).float().cpu()  # the one training used
    change = adapted - frozen
    moved = change.norm(dim=-1) > 1e-8
    cos = torch.where(moved, F.cosine_similarity(change, direction.expand_as(change), dim=-1), torch.zeros(n))
    return DirectionData(frozen, adapted, s, t, cos, source, target)


def cosine_over_training(records: list[dict]) -> tuple[list[int], list[float]]:
    """(steps, 1 - loss/clip): the logged agreement of image change and text direction per step."""
    kept = [r for r in records if "loss/clip" in r]
    return [r["step"] for r in kept], [1.0 - r["loss/clip"] for r in kept]


def project_2d(points: torch.Tensor) -> torch.Tensor:
    """PCA of the rows to 2-D: centred, top two right singular vectors, sign fixed (largest loading > 0)."""
    x = points.double() - points.double().mean(0)
    _, _, vh = torch.linalg.svd(x, full_matrices=False)
    axes = vh[:2]
    axes = axes * torch.sign(axes.gather(1, axes.abs().argmax(1, keepdim=True)))
    out = x @ axes.T
    return F.pad(out, (0, 2 - out.shape[1])).float()  # fewer than two components: pad with zeros


def plot_directions(data: DirectionData, out_png: str | Path) -> Path:
    """The directions figure: frozen and adapted points, a grey arrow per sample, the black text arrow."""
    n = len(data.frozen)
    pts = project_2d(torch.cat([data.frozen, data.adapted, data.source_text[None], data.target_text[None]]))
    f, a, s, t = pts[:n], pts[n : 2 * n], pts[2 * n], pts[2 * n + 1]
    fig = Figure(figsize=(6.4, 5.4))
    ax = fig.subplots()
    for i in range(n):
        if not torch.equal(f[i], a[i]):
            ax.annotate("", xy=a[i].tolist(), xytext=f[i].tolist(),
                        arrowprops={"arrowstyle": "->", "color": "0.6", "lw": 0.8})
    ax.scatter(f[:, 0], f[:, 1], c="C0", s=20, label="frozen generator", zorder=3)
    ax.scatter(a[:, 0], a[:, 1], c="C3", s=20, label="adapted generator", zorder=3)
    ax.annotate("", xy=t.tolist(), xytext=s.tolist(), arrowprops={"arrowstyle": "-|>", "color": "k", "lw": 2})
    ax.scatter([s[0], t[0]], [s[1], t[1]], c="k", marker="*", s=110, label="text", zorder=4)
    ax.annotate(data.source, s.tolist(), textcoords="offset points", xytext=(6, -12), fontsize=9)
    ax.annotate(data.target, t.tolist(), textcoords="offset points", xytext=(6, 4), fontsize=9, weight="bold")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("PC 1"), ax.set_ylabel("PC 2")
    ax.set_title(f"CLIP space, {n} latents: mean cos(image change, text direction) = {data.mean_cosine:.3f}",
                 fontsize=9)
    ax.legend(fontsize=8, loc="best")
    return save_figure(fig, out_png)

