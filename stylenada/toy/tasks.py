"""Known-answer adaptation tasks in the shapes world, and the metrics that judge them.

Every metric is computed on fixed latents and judged by the attribute reader (never by CLIP):

- target success: share of adapted samples whose attribute has the target value;
- preservation: share whose other attributes (categorical ones, and position and size within a
  tolerance) match the frozen generator's sample of the same latent;
- diversity: mean pairwise attribute disagreement of the adapted samples relative to the frozen ones
  (1 = as varied as before, 0 = mode collapse);
- Frechet distance, in the tiny CLIP's image space, to true renders of the target domain (the frozen
  generator's distance is reported beside it).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import StylenadaError
from ..eval.metrics import frechet_distance
from ..models.stylegan2 import Generator
from .reader import VALID_MAX_ERROR, AttributeReader
from .render import DOMAINS, Domain, ShapeAttributes, render_batch

POSITION_TOLERANCE = 0.15  # in image half-widths
SIZE_TOLERANCE = 0.1
CATEGORICAL = ("shape", "colour", "style", "background")


@dataclass(frozen=True)
class ShapeTask:
    name: str
    source: str  # source text
    target: str  # target text
    attribute: str  # the attribute that should change
    target_value: str

    def target_domain(self, source: Domain = DOMAINS["source"]) -> Domain:
        """The source domain with the changed attribute fixed to its target value."""
        field = {"shape": "shapes", "colour": "colours", "style": "styles", "background": "backgrounds"}[self.attribute]
        return dataclasses.replace(source, **{field: (self.target_value,)})


TASKS: dict[str, ShapeTask] = {
    "colour": ShapeTask("colour", "a red shape", "a blue shape", "colour", "blue"),
    "style": ShapeTask("style", "a filled shape", "an outline of a shape", "style", "outline"),
    "shape": ShapeTask("shape", "a circle", "a square", "shape", "square"),
}


def get_task(name: str) -> ShapeTask:
    if name not in TASKS:
        raise StylenadaError(f"unknown shapes-world task {name!r}; choose one of {', '.join(TASKS)}")
    return TASKS[name]


@torch.no_grad()
def sample_images(G: Generator, n: int, seed: int = 0, truncation: float = 1.0) -> torch.Tensor:
    z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(seed))
    device = next(G.parameters()).device
    return torch.cat([G(zc.to(device), truncation_psi=truncation, noise_mode="const").cpu() for zc in z.split(64)])


def _preserved(a: ShapeAttributes, b: ShapeAttributes, changed: str) -> bool:
    same = all(getattr(a, k) == getattr(b, k) for k in CATEGORICAL if k != changed)
    return (same and abs(a.x - b.x) <= POSITION_TOLERANCE and abs(a.y - b.y) <= POSITION_TOLERANCE
            and abs(a.size - b.size) <= SIZE_TOLERANCE)


def _disagreement(attrs: list[ShapeAttributes], exclude: str) -> float:
    """Mean over pairs of the share of attributes that differ (categorical, 3x3 position cell, size class)."""
    def key(a: ShapeAttributes) -> tuple:
        cell = (min(int((a.x + 1) / 2 * 3), 2), min(int((a.y + 1) / 2 * 3), 2))
        return (*(getattr(a, k) for k in CATEGORICAL if k != exclude), cell, a.size_class)

    keys = [key(a) for a in attrs]
    n, total, pairs = len(keys), 0.0, 0
    for i in range(n):
        for j in range(i + 1, n):
            total += sum(x != y for x, y in zip(keys[i], keys[j], strict=True)) / len(keys[i])
            pairs += 1
    return total / max(pairs, 1)


def clip_embeddings(clip, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([F.normalize(clip.encode_image(c), dim=-1).cpu() for c in images.split(128)])


def task_metrics(task: ShapeTask, G_frozen: Generator, G_adapted: Generator, reader: AttributeReader,
                 clip=None, n: int = 256, seed: int = 0) -> dict:
    """Known-answer metrics of an adapted generator on ``n`` fixed latents (see the module docstring)."""
    before, after = sample_images(G_frozen, n, seed), sample_images(G_adapted, n, seed)
    err_b, attrs_b = reader.validity(before)
    err_a, attrs_a = reader.validity(after)
    success = sum(getattr(a, task.attribute) == task.target_value for a in attrs_a) / n
    preserved = sum(_preserved(a, b, task.attribute) for a, b in zip(attrs_a, attrs_b, strict=True)) / n
    div_b, div_a = _disagreement(attrs_b, task.attribute), _disagreement(attrs_a, task.attribute)
    out = {
        "task": task.name, "source": task.source, "target": task.target, "n": n,
        "target_success": success,
        "target_success_before": sum(getattr(b, task.attribute) == task.target_value for b in attrs_b) / n,
        "preservation": preserved,
        "diversity_ratio": div_a / div_b if div_b > 0 else float("nan"),
        "valid_before": float((err_b < VALID_MAX_ERROR).float().mean()),
        "valid_after": float((err_a < VALID_MAX_ERROR).float().mean()),
    }
    if clip is not None:
        real, _ = render_batch(n, task.target_domain(), seed + 1, size=before.shape[-1])
        e_real = clip_embeddings(clip, real)
        out["frechet_clip"] = frechet_distance(clip_embeddings(clip, after), e_real)
        out["frechet_clip_before"] = frechet_distance(clip_embeddings(clip, before), e_real)
    return out


@torch.no_grad()
def inversion_metrics(encoder, G_source: Generator, reader: AttributeReader,
                      adapted: dict[str, Generator] | None = None, n: int = 256, seed: int = 1000) -> dict:
    """Invert fresh renders of the source domain (images no generator made) with ``encoder``.

    Judged against the renders' true attributes: per-attribute agreement and the share of images whose
    attributes are all kept by the reconstruction, its PSNR, and for each adapted generator (keyed by
    task name) the target success and preservation of the other attributes when the same codes are
    rendered by it.
    """
    from ..invert.optimize import psnr

    renders, truth = render_batch(n, DOMAINS["source"], seed, size=G_source.resolution)
    ws = torch.cat([encoder(c) for c in renders.split(64)])
    recon = torch.cat([G_source.synthesis(w, noise_mode="const") for w in ws.split(64)])
    got = reader.read(recon)
    agree = {k: sum(getattr(a, k) == getattr(b, k) for a, b in zip(got, truth, strict=True)) / n for k in CATEGORICAL}
    agree["position"] = sum(abs(a.x - b.x) <= POSITION_TOLERANCE and abs(a.y - b.y) <= POSITION_TOLERANCE
                            for a, b in zip(got, truth, strict=True)) / n
    agree["size"] = sum(abs(a.size - b.size) <= SIZE_TOLERANCE for a, b in zip(got, truth, strict=True)) / n
    out = {"n": n, "psnr": float(psnr(recon, renders).mean()), "attribute_agreement": agree,
           "all_attributes_kept": sum(_preserved(a, b, "") for a, b in zip(got, truth, strict=True)) / n,
           "carried": {}}
    for name, G in (adapted or {}).items():
        task = get_task(name)
        imgs = torch.cat([G.synthesis(w, noise_mode="const") for w in ws.split(64)])
        attrs = reader.read(imgs)
        out["carried"][name] = {
            "target_success": sum(getattr(a, task.attribute) == task.target_value for a in attrs) / n,
            "preservation": sum(_preserved(a, b, task.attribute) for a, b in zip(attrs, truth, strict=True)) / n,
        }
    return out
