"""How a teacher scores edits that are not the asked change: a measure of how easily it is fooled.

For a task's text direction (e.g. "a red shape" -> "a blue shape"), every edit of the same source renders
gets the directional score the trainer maximises, ``cos(E(edited) - E(original), text direction)``, and
the size of its image change ``|E(edited) - E(original)|`` (unit embeddings). A teacher is harder to fool
when the true change scores far above the cheap edits a generator can make instead (a darker object, a
tinted background, another shape), which should score near zero.

    .venv/bin/python -m stylenada.toy.fooling --clip tiny-shapes --clip tiny-shapes-rn
"""

from __future__ import annotations

import argparse
import dataclasses

import torch
import torch.nn.functional as F

from .render import COLOURS, DOMAINS, ShapeAttributes, background_colours, render, sample_attributes
from .tasks import TASKS


def _colour(name_or_rgb) -> torch.Tensor:
    rgb = COLOURS[name_or_rgb] if isinstance(name_or_rgb, str) else name_or_rgb
    return torch.tensor(rgb, dtype=torch.float32).view(1, 3, 1, 1) / 127.5 - 1


def edits(attrs: list[ShapeAttributes], task: str) -> dict[str, torch.Tensor]:
    """The true change of ``task`` and the decoys, as images of the same records."""
    base = render(attrs)
    bg = background_colours(attrs)
    obj = ((base - bg).abs().amax(1, keepdim=True) > 0.05).float()
    change = {"colour": {"colour": "blue"}, "style": {"style": "outline"}, "shape": {"shape": "square"}}[task]
    out = {"the asked change": render([dataclasses.replace(a, **change) for a in attrs])}
    outline = render([dataclasses.replace(a, style="outline") for a in attrs])
    interior = obj * ((outline - bg).abs().amax(1, keepdim=True) < 0.05).float()
    out.update({
        "object 30% toward blue": base + obj * 0.3 * (_colour("blue") - _colour("red")),
        "object 30% darker": base + obj * 0.3 * (-1 - base),
        "object purple": render([dataclasses.replace(a, colour="purple") for a in attrs]),
        "outline, interior half filled": outline + interior * 0.5 * (base - outline),
        "background 15% blue": base + (1 - obj) * 0.15 * (_colour("blue") - bg),
        "background 15% pink": base + (1 - obj) * 0.15 * (_colour((255, 60, 150)) - bg),
        "background 15% cyan": base + (1 - obj) * 0.15 * (_colour((60, 255, 255)) - bg),
        "background grey": render([dataclasses.replace(a, background="grey") for a in attrs]),
        "another shape (cross)": render([dataclasses.replace(a, shape="cross") for a in attrs]),
        "larger object": render([dataclasses.replace(a, size=min(a.size * 1.3, 0.62)) for a in attrs]),
        "blur": F.avg_pool2d(F.pad(base, (1, 1, 1, 1), mode="replicate"), 3, 1),
    })
    return {k: v.clamp(-1, 1) for k, v in out.items()}


@torch.no_grad()
def edit_scores(clip, task: str, n: int = 64, seed: int = 0) -> dict[str, tuple[float, float]]:
    """{edit: (mean directional cosine, mean |image change|)} of ``clip`` for ``task`` on ``n`` renders of
    the task's source domain."""
    t = TASKS[task]
    attrs = sample_attributes(n, DOMAINS[t.source_domain], torch.Generator().manual_seed(seed))
    direction = F.normalize(clip.text_direction(t.source, t.target, "none").float(), dim=-1)
    e0 = F.normalize(clip.encode_image(render(attrs)).float(), dim=-1)
    out = {}
    for name, images in edits(attrs, task).items():
        d = F.normalize(clip.encode_image(images).float(), dim=-1) - e0
        out[name] = (float(F.cosine_similarity(d, direction[None], dim=-1).mean()), float(d.norm(dim=-1).mean()))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", action="append", default=None, help="CLIP spec (repeatable; default: the teachers)")
    ap.add_argument("--tasks", nargs="+", default=list(TASKS))
    args = ap.parse_args(argv)
    from ..clip import load_clip

    specs = args.clip or ["tiny-shapes", "tiny-shapes-rn"]
    models = [load_clip(s) for s in specs]
    for task in args.tasks:
        scores = [edit_scores(m, task) for m in models]
        print(f"\n{task}: {TASKS[task].source!r} -> {TASKS[task].target!r}; cos (|change|)")
        print("| edit | " + " | ".join(specs) + " |\n|---|" + "---|" * len(specs))
        for name in scores[0]:
            print(f"| {name} | " + " | ".join(f"{s[name][0]:+.2f} ({s[name][1]:.2f})" for s in scores) + " |")


if __name__ == "__main__":
    main()
