"""How valid can the style task's outlines be? The reader's validity of the ideal outline of a generator's own
samples, against the same of true renders and of adapted generators.

The style task (filled -> outline) is judged by the reader's re-render criterion, and an outline is all
boundary: a shape the source generator draws a little wrong (a cross with short arms, a triangle with a
rounded tip) passes as filled but fails once hollowed. :func:`stylenada.toy.tasks.outline_of_ink` draws the
ideal outline of each sample's own ink (what a perfect adaptation would make); its validity bounds the
task's. The same rule on true renders of the reader's reading shows the rule's own error, and those renders'
true outlines (the perfect answer) the reader's own limit on outlines of these shapes. ``--adapted``
adds adapted generators, judged on the same latents; per shape as the reader reads the source sample.
Beside the reader, what each teacher makes of every case against the source samples: the cosine of the
image change with the style task's text direction (what the directional loss rewards) and the zero-shot
probability of the target text against the source text at the teacher's logit scale (the classify term's).

    .venv/bin/python benchmarks/outline_ceiling.py
    .venv/bin/python benchmarks/outline_ceiling.py --seeds 0 --n 128 --adapted runs/style/generator.safetensors
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHAPE_ORDER = ("circle", "square", "triangle", "cross")


def validity_by_shape(reader, images, shapes: list[str]) -> dict:
    """Share of valid images, overall and per source shape (valid, count)."""
    from stylenada.toy.reader import VALID_MAX_ERROR

    err, _ = reader.validity(images)
    ok = (err < VALID_MAX_ERROR).tolist()
    per = {s: [sum(o for o, t in zip(ok, shapes, strict=True) if t == s), shapes.count(s)] for s in SHAPE_ORDER}
    return {"valid": sum(ok) / len(ok), "per_shape": per}


def teacher_scores(clip_models, source, images) -> dict:
    """Per teacher: mean cosine of the CLIP change from ``source`` with the style task's text direction, and
    mean zero-shot P(target text | source or target text) of ``images``."""
    import torch
    import torch.nn.functional as F

    from stylenada.toy.tasks import TASKS, clip_embeddings

    task = TASKS["style"]
    out = {}
    for spec, model in clip_models.items():
        with torch.no_grad():
            text = F.normalize(model.encode_text([task.source, task.target]).float(), dim=-1)
        e0, e = clip_embeddings(model, source).float(), clip_embeddings(model, images).float()
        cos = F.cosine_similarity(e - e0, (text[1] - text[0])[None], dim=-1).nan_to_num(0.0)
        p_target = torch.sigmoid(float(model.logit_scale) * (e @ (text[1] - text[0])))
        out[spec] = {"cos": cos.mean().item(), "p_target": p_target.mean().item()}
    return out


def measure(generator: str, seed: int, n: int, adapted: list[str]) -> list[dict]:
    from stylenada.adapt.trainer import load_clip_models
    from stylenada.formats import load_generator
    from stylenada.models.sampling import sample_images
    from stylenada.toy.demo import TEACHERS
    from stylenada.toy.reader import load_reader
    from stylenada.toy.render import render
    from stylenada.toy.tasks import outline_of_ink

    reader = load_reader()
    teachers = {spec: model for spec, (model, _) in zip(TEACHERS, load_clip_models(TEACHERS, "cpu"), strict=True)}
    source = sample_images(load_generator(generator), n, seed)
    attrs = reader.read(source)
    shapes = [a.shape for a in attrs]
    renders = render([dataclasses.replace(a, style="filled") for a in attrs])
    cases = {"source samples (filled)": source,
             "true outline renders of the reader's reading": render([dataclasses.replace(a, style="outline")
                                                                     for a in attrs]),
             "ideal outline of true renders (the rule's check)": outline_of_ink(renders, shapes),
             "ideal outline of the source samples": outline_of_ink(source, shapes)}
    cases.update({f"adapted: {p}": sample_images(load_generator(p), n, seed) for p in adapted})
    path = Path(generator).resolve()
    base = {"generator": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else generator, "seed": seed, "n": n}
    return [{**base, "case": case, **validity_by_shape(reader, images, shapes),
             "teachers": teacher_scores(teachers, source, images)} for case, images in cases.items()]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generator", default=str(ROOT / "stylenada/toy/weights/shapes_gan.safetensors"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 5, 7], help="latent seeds")
    ap.add_argument("--n", type=int, default=256, help="samples per seed")
    ap.add_argument("--adapted", nargs="*", default=[], help="adapted generators judged on the same latents")
    ap.add_argument("--results", default=str(ROOT / "benchmarks/results/outline_ceiling.json"))
    args = ap.parse_args(argv)
    rows = [r for seed in args.seeds for r in measure(args.generator, seed, args.n, args.adapted)]
    names = " / ".join(rows[0]["teachers"])
    print("| case | seed | n | valid | " + " | ".join(SHAPE_ORDER) + f" | cos ({names}) | P(target) ({names}) |")
    print("| --- | --- | --- | --- | " + " | ".join("---" for _ in SHAPE_ORDER) + " | --- | --- |")
    for r in rows:
        per = " | ".join(f"{v} / {c}" for v, c in (r["per_shape"][s] for s in SHAPE_ORDER))
        cos = " / ".join(f"{t['cos']:.3f}" for t in r["teachers"].values())
        p = " / ".join(f"{t['p_target']:.3f}" for t in r["teachers"].values())
        print(f"| {r['case']} | {r['seed']} | {r['n']} | {r['valid']:.1%} | {per} | {cos} | {p} |")
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text(json.dumps({"command": " ".join(["benchmarks/outline_ceiling.py", *sys.argv[1:]]),
                                              "rows": rows}, indent=1) + "\n")
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
