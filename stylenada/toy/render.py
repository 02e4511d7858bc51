"""The shapes world: a procedural renderer of small images whose every attribute is known.

An image shows one shape (circle, square, triangle, cross) of a named colour, drawn filled, as an
outline (the analogue of photo -> sketch) or striped (a texture), at some size and position, on a
plain background. Rendering is analytic (signed distances on a 4x supersampled grid, then averaged),
so edges are antialiased. Images are float tensors in [-1, 1], NCHW, like a GAN's output.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

SHAPES = ("circle", "square", "triangle", "cross")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (245, 140, 20),
    "yellow": (235, 215, 25),
    "green": (30, 160, 60),
    "blue": (30, 70, 220),
    "purple": (140, 40, 190),
}
STYLES = ("filled", "outline", "striped")
OUTLINE_STROKE_PX = 1.6  # width of an outline's stroke at 32 px
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (255, 255, 255), "grey": (170, 170, 170), "black": (15, 15, 15)}
SIZE_RANGE = (0.32, 0.62)  # object radius in image half-widths
LARGE_FROM = 0.47  # radius from which captions say "large"
SUPERSAMPLE = 4


@dataclass(frozen=True)
class ShapeAttributes:
    shape: str
    colour: str
    style: str
    size: float  # radius in image half-widths
    x: float  # centre in [-1, 1] (left to right)
    y: float  # centre in [-1, 1] (top to bottom)
    background: str = "white"

    @property
    def size_class(self) -> str:
        return "large" if self.size >= LARGE_FROM else "small"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Domain:
    """Which attribute values a domain allows (each is drawn uniformly)."""

    shapes: tuple[str, ...] = SHAPES
    colours: tuple[str, ...] = tuple(COLOURS)
    styles: tuple[str, ...] = STYLES
    backgrounds: tuple[str, ...] = tuple(BACKGROUNDS)
    size_range: tuple[float, float] = SIZE_RANGE

    def __post_init__(self) -> None:
        for name, values, allowed in (("shapes", self.shapes, SHAPES), ("colours", self.colours, COLOURS),
                                      ("styles", self.styles, STYLES), ("backgrounds", self.backgrounds, BACKGROUNDS)):
            bad = [v for v in values if v not in allowed]
            if bad or not values:
                raise ValueError(f"domain {name} {values!r}: unknown {bad}, allowed {tuple(allowed)}")


# The tiny GAN's training domain: red filled shapes on white, of every shape, size and position. The
# other colours, outlines and stripes never appear in it, so they are genuinely new targets for
# adaptation. ("warm": the first shipped generator's domain, red, orange and yellow.)
DOMAINS: dict[str, Domain] = {
    "all": Domain(),
    "source": Domain(colours=("red",), styles=("filled",), backgrounds=("white",)),
    "warm": Domain(colours=("red", "orange", "yellow"), styles=("filled",), backgrounds=("white",)),
    # The shape task's source domain: every sample is a circle, so "a circle" describes all of them.
    "circles": Domain(shapes=("circle",), colours=("red",), styles=("filled",), backgrounds=("white",)),
}


def sample_attributes(n: int, domain: Domain, rng: torch.Generator) -> list[ShapeAttributes]:
    """``n`` attribute records drawn from ``domain`` with the explicit generator ``rng``."""

    def pick(values: Sequence[str]) -> list[str]:
        idx = torch.randint(len(values), (n,), generator=rng)
        return [values[i] for i in idx.tolist()]

    shapes, colours = pick(domain.shapes), pick(domain.colours)
    styles, bgs = pick(domain.styles), pick(domain.backgrounds)
    lo, hi = domain.size_range
    sizes = (lo + (hi - lo) * torch.rand(n, generator=rng)).tolist()
    u = torch.rand(n, 2, generator=rng).tolist()
    return [_placed(shapes[i], colours[i], styles[i], bgs[i], sizes[i], u[i][0], u[i][1]) for i in range(n)]


def _placed(shape: str, colour: str, style: str, background: str, r: float, ux: float, uy: float
            ) -> ShapeAttributes:
    """A record whose centre is ``(ux, uy)`` in [0, 1]^2 of the positions that keep the shape inside."""
    span = 1 - 1.18 * r - 0.04  # keep the whole shape (square corners too) inside the image
    x, y = (2 * ux - 1) * span, (2 * uy - 1) * span
    return ShapeAttributes(shape, colour, style, round(r, 4), round(x, 4), round(y, 4), background)


ATTRIBUTE_COORDINATES = 7  # shape, colour, style, background, size, x, y


def attributes_from_uniform(u: torch.Tensor, domain: Domain) -> list[ShapeAttributes]:
    """Records from ``u`` [N, 7] in [0, 1), one column per attribute, by inverse CDF.

    Uniform ``u`` gives exactly ``domain``'s distribution, as ``sample_attributes`` does; the map is
    deterministic, so a latent can be assigned the render it stands for.
    """
    u = u.clamp(0, 1 - 1e-6)

    def pick(values: Sequence[str], col: int) -> list[str]:
        return [values[i] for i in (u[:, col] * len(values)).long().tolist()]

    shapes, colours = pick(domain.shapes, 0), pick(domain.colours, 1)
    styles, bgs = pick(domain.styles, 2), pick(domain.backgrounds, 3)
    lo, hi = domain.size_range
    sizes = (lo + (hi - lo) * u[:, 4]).tolist()
    ux, uy = u[:, 5].tolist(), u[:, 6].tolist()
    return [_placed(shapes[i], colours[i], styles[i], bgs[i], sizes[i], ux[i], uy[i]) for i in range(len(u))]


def _sdf(shape: str, px: torch.Tensor, py: torch.Tensor, r: float) -> torch.Tensor:
    """Signed distance (negative inside) to a shape of radius ``r`` centred at the origin (y down)."""
    if shape == "circle":
        return torch.sqrt(px**2 + py**2) - r
    if shape == "square":
        h = r * 0.82  # half side: similar area to the circle
        return torch.maximum(px.abs(), py.abs()) - h
    if shape == "triangle":
        # Equilateral, pointing up, centred on its centroid: the max of the three edges' signed distances
        # (exact inside a convex polygon, which is all the outline stroke needs).
        R = r * 1.1  # circumradius; a little larger than r so the area is comparable to the circle's
        yu = -py  # y up
        c = math.sqrt(3.0) / 2
        bottom = -yu - R / 2
        right = c * px + 0.5 * yu - R / 2
        left = -c * px + 0.5 * yu - R / 2
        return torch.maximum(bottom, torch.maximum(left, right))
    if shape == "cross":
        arm, half = r * 0.95, r * 0.33
        a = torch.maximum(px.abs() - arm, py.abs() - half)
        b = torch.maximum(px.abs() - half, py.abs() - arm)
        return torch.minimum(a, b)
    raise ValueError(f"unknown shape {shape!r}")


def _coverage(a: ShapeAttributes, size: int, stroke_px: float = OUTLINE_STROKE_PX) -> torch.Tensor:
    """Share of each pixel covered by the object's ink, [size, size] in [0, 1] (an outline's stroke
    ``stroke_px`` wide at 32 px)."""
    s = size * SUPERSAMPLE
    coords = (torch.arange(s, dtype=torch.float32) + 0.5) / s * 2 - 1
    py, px = torch.meshgrid(coords, coords, indexing="ij")
    d = _sdf(a.shape, px - a.x, py - a.y, a.size)
    inside = d < 0
    if a.style == "outline":
        stroke = 2 * stroke_px / 32  # proportionally thicker strokes at 64 px
        ink = inside & (d > -stroke)
    elif a.style == "striped":
        period = 2 * 5.0 / 32
        stripes = torch.remainder((px + py) / period, 1.0) < 0.5
        ink = inside & stripes
    else:
        ink = inside
    return F.avg_pool2d(ink.float()[None, None], SUPERSAMPLE)[0, 0]


def render(attrs: Sequence[ShapeAttributes], size: int = 32, stroke_px: float = OUTLINE_STROKE_PX) -> torch.Tensor:
    """Images [N, 3, size, size] in [-1, 1] for the attribute records (outlines drawn ``stroke_px`` wide:
    the world's own stroke unless asked)."""
    if size not in (32, 64):
        raise ValueError(f"render size must be 32 or 64, got {size}")
    out = torch.empty(len(attrs), 3, size, size)
    for i, a in enumerate(attrs):
        cov = _coverage(a, size, stroke_px)
        fg = torch.tensor(COLOURS[a.colour], dtype=torch.float32).view(3, 1, 1) / 127.5 - 1
        bg = torch.tensor(BACKGROUNDS[a.background], dtype=torch.float32).view(3, 1, 1) / 127.5 - 1
        out[i] = bg + (fg - bg) * cov
    return out


def render_batch(n: int, domain: Domain | str, seed: int | torch.Generator, size: int = 32
                 ) -> tuple[torch.Tensor, list[ShapeAttributes]]:
    """``n`` fresh renders of ``domain`` and their attribute records."""
    dom = DOMAINS[domain] if isinstance(domain, str) else domain
    rng = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(seed)
    attrs = sample_attributes(n, dom, rng)
    return render(attrs, size), attrs


def background_colours(attrs: list[ShapeAttributes]) -> torch.Tensor:
    """[N, 3, 1, 1] background colour of each record, in [-1, 1]."""
    return torch.tensor([BACKGROUNDS[a.background] for a in attrs], dtype=torch.float32).view(-1, 3, 1, 1) / 127.5 - 1


def object_colours(attrs: list[ShapeAttributes]) -> torch.Tensor:
    """[N, 3, 1, 1]: each object's ink colour in [-1, 1] (the twin of :func:`background_colours`)."""
    return torch.tensor([COLOURS[a.colour] for a in attrs], dtype=torch.float32).view(-1, 3, 1, 1) / 127.5 - 1


def ink_coverage(images: torch.Tensor, ink: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """How far each pixel's colour lies on the way from ``background`` to ``ink`` ([N or 1, 3, 1, 1] each, in
    [-1, 1]), clamped to [0, 1]: [N, 1, H, W], the share of the pixel the object's ink covers."""
    d = ink - background
    share = ((images - background) * d).sum(1, keepdim=True) / d.square().sum(1, keepdim=True).clamp_min(1e-6)
    return share.clamp(0, 1)


def domain_sampler(domain: Domain | str, size: int = 32) -> Callable[[int, torch.Generator], torch.Tensor]:
    """A ``sample(n, rng) -> images`` function, as the GAN trainer takes."""
    return lambda n, rng: render_batch(n, domain, rng, size)[0]


# --- captions -------------------------------------------------------------------------------------

STYLE_WORDS = {"filled": ["filled", "solid"], "outline": ["outlined", "outline of a"], "striped": ["striped"]}


def caption(a: ShapeAttributes, rng: torch.Generator) -> tuple[str, dict[str, str]]:
    """A random caption mentioning a random subset of the attributes, and that subset.

    Returns (text, mentioned) where ``mentioned`` maps attribute name -> value for every attribute the
    text states, so whether a caption is true of another image can be checked exactly.
    """
    u = torch.rand(6, generator=rng).tolist()
    mentioned: dict[str, str] = {}
    if u[0] < 0.7:
        mentioned["colour"] = a.colour
    if u[1] < 0.6:
        mentioned["style"] = a.style
    if u[2] < 0.25:
        mentioned["size"] = a.size_class
    if u[3] < 0.7:
        mentioned["shape"] = a.shape
    if u[4] < 0.2:
        mentioned["background"] = a.background
    noun = mentioned.get("shape", "shape")
    adjectives = [mentioned[k] for k in ("size", "colour") if k in mentioned]
    style = mentioned.get("style")
    outline_phrase = style == "outline" and u[5] < 0.5
    if style and not outline_phrase:
        word = {"filled": "filled" if u[5] < 0.5 else "solid", "outline": "outlined", "striped": "striped"}[style]
        adjectives.insert(1 if "size" in mentioned else 0, word)
    core = " ".join([*adjectives, noun])
    text = f"an outline of a {core}" if outline_phrase else f"{'an' if core[0] in 'aeiou' else 'a'} {core}"
    if "background" in mentioned:
        text += f" on a {a.background} background"
    return text, mentioned


def caption_matches(mentioned: dict[str, str], a: ShapeAttributes) -> bool:
    """Is a caption that states ``mentioned`` true of an image with attributes ``a``?"""
    values = {"colour": a.colour, "style": a.style, "size": a.size_class, "shape": a.shape,
              "background": a.background}
    return all(values[k] == v for k, v in mentioned.items())


def attribute_prompts(attribute: str) -> dict[str, str]:
    """Zero-shot prompts for one attribute: value -> prompt."""
    if attribute == "colour":
        return {c: f"a {c} shape" for c in COLOURS}
    if attribute == "shape":
        return {s: f"a {s}" for s in SHAPES}
    if attribute == "style":
        return {"filled": "a filled shape", "outline": "an outline of a shape", "striped": "a striped shape"}
    if attribute == "background":
        return {b: f"a shape on a {b} background" for b in BACKGROUNDS}
    raise ValueError(f"no prompts for attribute {attribute!r}")


__all__ = ["BACKGROUNDS", "COLOURS", "DOMAINS", "OUTLINE_STROKE_PX", "Domain", "SHAPES", "STYLES", "ShapeAttributes",
           "attribute_prompts", "attributes_from_uniform", "caption", "caption_matches", "domain_sampler",
           "ink_coverage", "object_colours", "render", "render_batch", "sample_attributes"]
