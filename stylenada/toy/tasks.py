"""Known-answer adaptation tasks in the shapes world, and the metrics that judge them.

Every metric is computed on fixed latents and judged by the attribute reader (never by CLIP):

- target success: share of adapted samples whose attribute has the target value;
- preservation: share whose other attributes (categorical ones, and position and size within a
  tolerance) match the frozen generator's sample of the same latent;
- diversity: mean pairwise attribute disagreement of the adapted samples relative to the frozen ones
  (1 = as varied as before, 0 = mode collapse);
- Frechet distance, in the tiny CLIP's image space, to true renders of the target domain (the frozen
  generator's distance is reported beside it).

Two checks that do not trust the reader: ``pixel_success`` reads the changed attribute from plain pixel
statistics (:func:`pixel_attribute`), and ``fooled`` counts, for each teacher, the adapted samples that
the teacher calls the target (zero-shot over the attribute's values) while the reader does not.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import StylenadaError
from ..eval.metrics import frechet_distance
from ..models.family import Generator
from ..models.sampling import sample_images
from .reader import VALID_MAX_ERROR, AttributeReader
from .render import COLOURS, DOMAINS, OUTLINE_STROKE_PX, Domain, ShapeAttributes, ink_coverage, render_batch

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
    source_domain: str = "source"  # the domain of the generator it adapts (see toy.render.DOMAINS)

    def target_domain(self, source: Domain | None = None) -> Domain:
        """The source domain with the changed attribute fixed to its target value."""
        source = DOMAINS[self.source_domain] if source is None else source
        field = {"shape": "shapes", "colour": "colours", "style": "styles", "background": "backgrounds"}[self.attribute]
        return dataclasses.replace(source, **{field: (self.target_value,)})


TASKS: dict[str, ShapeTask] = {
    "colour": ShapeTask("colour", "a red shape", "a blue shape", "colour", "blue"),
    "style": ShapeTask("style", "a filled shape", "an outline of a shape", "style", "outline"),
    # On the circles-only generator, so that the source text is true of every source sample.
    "shape": ShapeTask("shape", "a circle", "a square", "shape", "square", source_domain="circles"),
}


def get_task(name: str) -> ShapeTask:
    if name not in TASKS:
        raise StylenadaError(f"unknown shapes-world task {name!r}; choose one of {', '.join(TASKS)}")
    return TASKS[name]


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


def ink_masks(images: torch.Tensor, background: torch.Tensor | None = None) -> torch.Tensor:
    """[N, H, W] pixels that differ clearly from the background (white unless given [N, 3, 1, 1])."""
    bg = torch.ones(len(images), 3, 1, 1) if background is None else background
    return (images.float().clamp(-1, 1) - bg).abs().amax(dim=1) > 0.4


def outline_of_ink(images: torch.Tensor, shapes: list[str], colour: str = "red", upsample: int = 10
                   ) -> torch.Tensor:
    """The ideal outline of each image's own object: its ink (``colour`` on white) less the ink's erosion
    by the renderer's stroke width, drawn in ``colour`` on white, at the images' size.

    It is what a perfect filled -> outline adaptation would make of a generator's imperfect shapes, so the
    reader's validity of these images bounds the style task's. The ink is thresholded at half coverage on
    an ``upsample``-times finer grid and eroded with a square for squares and crosses (the renderer's
    corners), a disk otherwise (``shapes``: each object's shape, as the reader reads the source). On true
    renders it gives the renderer's own outline to within 0.02 mean absolute difference.
    """
    n, _, h, _ = images.shape
    white = torch.ones(1, 3, 1, 1)
    ink_rgb = torch.tensor(COLOURS[colour], dtype=torch.float32).view(1, 3, 1, 1) / 127.5 - 1
    ink = ink_coverage(images.float().clamp(-1, 1), ink_rgb, white)
    fine = F.interpolate(ink, scale_factor=upsample, mode="bilinear", align_corners=False) > 0.5
    radius = OUTLINE_STROKE_PX * h / 32 * upsample
    k = int(radius) + 1
    yy, xx = torch.meshgrid(torch.arange(-k, k + 1), torch.arange(-k, k + 1), indexing="ij")
    disk = ((yy**2 + xx**2) <= radius**2).float()[None, None]
    square = ((yy.abs() <= radius) & (xx.abs() <= radius)).float()[None, None]
    outside = F.pad((~fine).float(), (k, k, k, k), value=1.0)
    boxy = torch.tensor([s in ("square", "cross") for s in shapes]).view(n, 1, 1, 1)
    near_edge = torch.where(boxy, F.conv2d(outside, square) > 0, F.conv2d(outside, disk) > 0)
    coverage = F.avg_pool2d((fine & near_edge).float(), upsample)
    return white + (ink_rgb - white) * coverage


def pixel_attribute(images: torch.Tensor, attribute: str) -> list[str | None]:
    """The attribute read from plain pixel statistics, no network: a check beside the reader.

    colour: the named colour nearest to the median colour of the ink pixels; style: 'outline' when an
    erosion by one pixel removes most of the ink (a 1.6 px stroke), else 'filled'; shape: from the share
    of the ink's bounding box that the ink covers (square ~1, circle ~0.79, cross and triangle ~0.5),
    'square' above 0.89, 'circle' from 0.7, else 'other'. None where there is no ink.
    """
    from .render import COLOURS

    imgs = images.float().clamp(-1, 1).cpu()
    ink = ink_masks(imgs)
    out: list[str | None] = []
    table = torch.tensor(list(COLOURS.values()), dtype=torch.float32) / 127.5 - 1
    for img, m in zip(imgs, ink, strict=True):
        if m.sum() < 4:
            out.append(None)
            continue
        if attribute == "colour":
            colour = img[:, m].median(dim=1).values
            out.append(list(COLOURS)[int((table - colour).square().sum(1).argmin())])
        elif attribute == "style":
            eroded = -F.max_pool2d(-m.float()[None, None], 3, stride=1, padding=1)[0, 0]
            out.append("outline" if eroded.sum() < 0.35 * m.sum() else "filled")
        elif attribute == "shape":
            ys, xs = torch.nonzero(m, as_tuple=True)
            box = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
            fill = float(m.sum() / box)
            out.append("square" if fill > 0.89 else "circle" if fill > 0.7 else "other")
        else:
            raise ValueError(f"no pixel statistic for {attribute!r}")
    return out


def shape_statistics(images: torch.Tensor) -> dict[str, float]:
    """Two pixel statistics of the ink's outline, medians over the images (no network): ``box_fill``, the
    share of the ink's bounding box it covers (square ~1, circle ~0.79; what :func:`pixel_attribute` reads
    shape from), and ``radial_spread``, the 90th over the 10th percentile of the ink boundary's distance
    from the ink centroid (a disc ~1.15 at 32 px, a square ~1.3, less regular polygons more)."""
    fills, spreads = [], []
    for m in ink_masks(images.float().clamp(-1, 1).cpu()):
        if m.sum() < 8:
            continue
        ys, xs = torch.nonzero(m, as_tuple=True)
        fills.append(float(m.sum() / ((ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1))))
        inner = -F.max_pool2d(-m.float()[None, None], 3, stride=1, padding=1)[0, 0] > 0.5
        ey, ex = torch.nonzero(m & ~inner, as_tuple=True)
        if len(ey) == 0:  # ink over the whole frame (a broken image): no boundary inside it, no spread
            continue
        d = ((ey.float() - ys.float().mean()) ** 2 + (ex.float() - xs.float().mean()) ** 2).sqrt()
        spreads.append(float(d.quantile(0.9) / d.quantile(0.1).clamp_min(0.5)))

    def median(values: list[float]) -> float:
        return float(torch.tensor(values).median()) if values else float("nan")

    return {"box_fill": median(fills), "radial_spread": median(spreads)}


@torch.no_grad()
def zero_shot(clip, images: torch.Tensor, attribute: str) -> list[str]:
    """The teacher's own reading of ``attribute``: the value whose prompt is nearest in its space."""
    from .render import attribute_prompts

    prompts = attribute_prompts(attribute)
    names = list(prompts)
    text = torch.stack([clip.text_embedding(p, "none") for p in prompts.values()]).float().cpu()
    img = clip_embeddings(clip, images)
    return [names[i] for i in (img @ F.normalize(text, dim=-1).T).argmax(dim=1).tolist()]


def clip_embeddings(clip, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([F.normalize(clip.encode_image(c), dim=-1).cpu() for c in images.split(128)])


def task_metrics(task: ShapeTask, G_frozen: Generator, G_adapted: Generator, reader: AttributeReader,
                 clip=None, n: int = 256, seed: int = 0) -> dict:
    """Known-answer metrics of an adapted generator on ``n`` fixed latents (see the module docstring).

    ``clip``: a teacher or a list of teachers (ClipModel); each gets a ``fooled`` rate, and the first
    gives the Frechet distances."""
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
    pixel = pixel_attribute(after, task.attribute)
    out["pixel_success"] = sum(v == task.target_value for v in pixel) / n
    out["pixel_success_before"] = sum(v == task.target_value for v in pixel_attribute(before, task.attribute)) / n
    if task.attribute == "shape":
        out.update({f"pixel_{k}": v for k, v in shape_statistics(after).items()})
        out.update({f"pixel_{k}_before": v for k, v in shape_statistics(before).items()})
    reader_says = [getattr(a, task.attribute) == task.target_value for a in attrs_a]
    teachers = [] if clip is None else (list(clip) if isinstance(clip, (list, tuple)) else [clip])
    out["fooled"] = {}
    for teacher in teachers:
        says = [v == task.target_value for v in zero_shot(teacher, after, task.attribute)]
        out["fooled"][teacher.name] = sum(c and not r for c, r in zip(says, reader_says, strict=True)) / n
    if teachers:
        clip = teachers[0]
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
