"""Compact domains on the shapes world (issue #13): can StyleSpace offsets recolour or restyle the red-shapes
generator, and with which settings does CLIP-driven training reach it?

Two parts, judged by the attribute reader on the demo's 128 fixed latents (target success, preservation,
validity, and the attribute read from plain pixel statistics):

- capacity: no CLIP. Supervised targets for the frozen generator's own samples (colour: its images with the
  ink recoloured red -> blue pixel by pixel; style: the reader's reading of each image re-rendered as an
  outline) and Adam on the pixel MSE, training only a --params scope (plus the paper's Affine+, the affine
  layers and the finest block, as a reference scope). What a scope can express at best.
- train: the demo's CLIP-driven run (two tiny teachers, 'all' layers, 100 steps) with ``params`` set, at
  the given lr and lambda_l2, per seed.

Rows go to ``benchmarks/results/stylespace.jsonl`` (resumable: finished rows are skipped); the tables are
printed.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/stylespace.py                # both parts, the study's settings
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/stylespace.py --part train --seeds 0 1 2
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/stylespace.py --part compose --seeds 0 1 2   # blue + outline
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/stylespace.py --part compose --outline-params stylespace_torgb
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/stylespace.py --part compose --outline-lambda classify=3
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/stylespace.py --part capacity --tasks colour --scopes stylespace \
        --steps 1000                                                          # longer fits of one scope
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from rows import ResultRows  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# The paper's Affine+ (StyleDomain): the affine layers and one synthesis block, here the finest (b32).
REFERENCE_SCOPES = {"affine_plus": lambda name: ".affine." in name or name.startswith("b32.")}
# (task, scope, lr) of the capacity fits: each scope at lr 0.05, StyleSpace also at the higher lr it needs.
CAPACITY = [(task, scope, lr) for task in ("colour", "style")
            for scope, lr in (("stylespace", 0.05), ("stylespace", 0.2), ("stylespace_torgb", 0.05),
                              ("affine", 0.05), ("affine_plus", 0.05), ("full", 0.01))]
# (task, params, lr, lambda_l2) of the CLIP-driven runs: the settings, the sweep around them, and the
# demo's full fine-tuning as the reference.
TRAIN = [("colour", "full", 0.0045, 0.1),
         ("colour", "stylespace", 0.05, 0.1), ("colour", "stylespace", 0.1, 1.0), ("colour", "stylespace", 0.2, 0.0),
         ("colour", "stylespace", 0.2, 1.0), ("colour", "affine", 0.01, 0.1), ("colour", "affine", 0.03, 0.1),
         ("colour", "stylespace_torgb", 0.01, 0.1), ("colour", "stylespace_torgb", 0.03, 0.1),
         ("colour", "stylespace_torgb", 0.05, 0.1),
         ("style", "full", 0.0045, 0.1), ("style", "stylespace", 0.05, 0.1), ("style", "stylespace", 0.1, 0.1),
         ("style", "stylespace", 0.2, 0.1), ("style", "affine", 0.01, 0.1), ("style", "stylespace_torgb", 0.03, 0.1)]
SEEDED = [("colour", "stylespace_torgb", 0.03, 0.1), ("style", "stylespace", 0.1, 0.1),
          ("style", "stylespace_torgb", 0.03, 0.1), ("colour", "full", 0.0045, 0.1), ("style", "full", 0.0045, 0.1)]
METRICS = ("target_success", "preservation", "valid_after", "pixel_success")
# (task, params, lr, lambda_l2) of the two domains composed (the settings that met the bars above).
# The outline domain's scope is --outline-params, at its lr from the runs above.
BLUE = ("colour", "stylespace_torgb", 0.03, 0.1)
OUTLINE = {"stylespace": ("style", "stylespace", 0.1, 0.1),
           "stylespace_torgb": ("style", "stylespace_torgb", 0.03, 0.1),
           "stylespace_conv": ("style", "stylespace_conv", 0.1, 0.1)}


def scope_filter(G, scope: str):
    """Which of G's synthesis parameter names a scope trains (a --params scope, or a reference scope)."""
    from stylenada.adapt.domains import scope_members

    if scope in REFERENCE_SCOPES:
        return REFERENCE_SCOPES[scope]
    return scope_members(G, scope).__contains__


def supervised_targets(task: str, images: torch.Tensor, reader) -> torch.Tensor:
    """What the adapted generator should draw for the frozen generator's ``images`` (see the module docstring)."""
    from stylenada.toy.render import COLOURS, render

    if task == "colour":
        red, blue = (torch.tensor(COLOURS[c], dtype=torch.float32).view(1, 3, 1, 1) / 127.5 - 1
                     for c in ("red", "blue"))
        ink = ((1 - images.clamp(-1, 1)) * (1 - red)).sum(1, keepdim=True) / (1 - red).square().sum()
        return 1 + ink.clamp(0, 1) * (blue - 1)  # white where there is no ink, blue where it is red
    if task == "style":
        return render([dataclasses.replace(a, style="outline") for a in reader.read(images)], images.shape[-1])
    raise ValueError(f"no supervised targets for task {task!r}")


def judge(task: str, before: torch.Tensor, after: torch.Tensor, reader) -> dict:
    """task_metrics's reader and pixel figures, for images rather than generators."""
    from stylenada.toy.reader import VALID_MAX_ERROR
    from stylenada.toy.tasks import _preserved, get_task, pixel_attribute

    t, n = get_task(task), len(before)
    _, attrs_b = reader.validity(before)
    err, attrs_a = reader.validity(after)
    return {"target_success": sum(getattr(a, t.attribute) == t.target_value for a in attrs_a) / n,
            "preservation": sum(_preserved(a, b, t.attribute) for a, b in zip(attrs_a, attrs_b, strict=True)) / n,
            "valid_after": float((err < VALID_MAX_ERROR).float().mean()),
            "pixel_success": sum(v == t.target_value for v in pixel_attribute(after, t.attribute)) / n}


def run_capacity(task: str, scope: str, lr: float, steps: int, n_fit: int, batch: int, n_eval: int) -> dict:
    from stylenada.formats import load_generator
    from stylenada.toy.demo import GENERATOR
    from stylenada.toy.reader import load_reader

    reader = load_reader()
    G0 = load_generator(str(GENERATOR)).eval()

    def latents(n: int, seed: int) -> torch.Tensor:  # seed 0: the demo's evaluation latents
        with torch.no_grad():
            return G0.mapping(torch.randn(n, G0.z_dim, generator=torch.Generator().manual_seed(seed)))

    ws_fit, ws_eval = latents(n_fit, 1), latents(n_eval, 0)
    with torch.no_grad():
        img_fit, img_eval = G0.synthesis(ws_fit, noise_mode="const"), G0.synthesis(ws_eval, noise_mode="const")
    target_fit, target_eval = supervised_targets(task, img_fit, reader), supervised_targets(task, img_eval, reader)
    G = copy.deepcopy(G0).requires_grad_(False)
    keep = scope_filter(G, scope)
    params = [p.requires_grad_(True) for name, p in G.synthesis.named_parameters() if keep(name)]
    opt = torch.optim.Adam(params, lr=lr)
    rng = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(n_fit, (batch,), generator=rng)
        loss = F.mse_loss(G.synthesis(ws_fit[idx], noise_mode="const"), target_fit[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        out = G.synthesis(ws_eval, noise_mode="const")
    return {"part": "capacity", "task": task, "params": scope, "lr": lr, "steps": steps,
            "trained_parameters": sum(p.numel() for p in params), "fit_mse": float(loss.detach()),
            "eval_mse": float(F.mse_loss(out, target_eval)), "seconds": time.perf_counter() - t0,
            **judge(task, img_eval, out, reader),
            "target_ceiling": judge(task, img_eval, target_eval, reader)}


def run_train(task: str, params: str, lr: float, lambda_l2: float, seed: int, iters: int, n_eval: int) -> dict:
    from stylenada.toy.demo import DemoConfig, run_demo

    with tempfile.TemporaryDirectory() as tmp:
        m = run_demo(DemoConfig(task=task, params=params, lr=lr, lambda_l2=lambda_l2, iters=iters, seed=seed,
                                n_eval=n_eval, out=str(Path(tmp) / "run")), progress=False)
        run_dir = Path(m.pop("run_dir"))
        recs = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
        domain = run_dir / "domain.safetensors"
        domain_bytes = domain.stat().st_size if domain.exists() else None
    trained = [r["selection"]["trained_parameters"] for r in recs if "selection" in r]
    return {"part": "train", "task": task, "params": params, "lr": lr, "lambda_l2": lambda_l2, "seed": seed,
            "iters": iters, **{k: m[k] for k in METRICS}, "fooled_any": max(m["fooled"].values()),
            "final_clip": recs[-1]["loss/clip"], "final_l2": recs[-1]["loss/l2"],
            "trained_parameters": trained[-1] if trained else 0, "domain_bytes": domain_bytes,
            "train_seconds": m["train_seconds"]}


def outline_domain(outline: str, lambdas: dict | None = None) -> list:
    """The outline domain's settings as a result row names them: (task, params, lr, lambda_l2[, lambdas])."""
    return [*OUTLINE[outline], *([dict(lambdas)] if lambdas else [])]


def run_compose(seed: int, iters: int, n_eval: int, outline: str = "stylespace", lambdas: dict | None = None) -> dict:
    """Two domains trained apart (BLUE, and OUTLINE[outline]) and applied together to the base generator: the
    share of the demo's evaluation samples that are both blue and outlined (reader, and pixel statistics),
    with shape, size and position kept; each domain alone for reference. ``lambdas``: further loss terms of
    the outline domain's run."""
    from stylenada.adapt.domains import apply_domains, load_domain
    from stylenada.formats import load_generator
    from stylenada.toy.demo import GENERATOR, DemoConfig, run_demo
    from stylenada.toy.reader import VALID_MAX_ERROR, load_reader
    from stylenada.toy.tasks import CATEGORICAL, POSITION_TOLERANCE, SIZE_TOLERANCE, pixel_attribute

    reader = load_reader()
    G0 = load_generator(str(GENERATOR)).eval()
    with tempfile.TemporaryDirectory() as tmp:
        domains = []
        for (task, params, lr, l2), terms in ((BLUE, {}), (OUTLINE[outline], lambdas or {})):
            m = run_demo(DemoConfig(task=task, params=params, lr=lr, lambda_l2=l2, iters=iters, seed=seed,
                                    n_eval=n_eval, lambdas=dict(terms), out=str(Path(tmp) / task)), progress=False)
            domains.append(load_domain(Path(m["run_dir"]) / "domain.safetensors"))
    with torch.no_grad():
        ws = G0.mapping(torch.randn(n_eval, G0.z_dim, generator=torch.Generator().manual_seed(0)))
        before = G0.synthesis(ws, noise_mode="const")
        outs = {name: apply_domains(G0, [(d, 1.0) for d in ds]).synthesis(ws, noise_mode="const")
                for name, ds in (("blue", domains[:1]), ("outline", domains[1:]), ("blue+outline", domains))}
    _, attrs_b = reader.validity(before)
    row = {"part": "compose", "seed": seed, "iters": iters, "domains": [list(BLUE), outline_domain(outline, lambdas)]}
    for name, after in outs.items():
        err, attrs_a = reader.validity(after)
        colours, styles = pixel_attribute(after, "colour"), pixel_attribute(after, "style")
        kept = [all(getattr(a, k) == getattr(b, k) for k in CATEGORICAL if k not in ("colour", "style"))
                and abs(a.x - b.x) <= POSITION_TOLERANCE and abs(a.y - b.y) <= POSITION_TOLERANCE
                and abs(a.size - b.size) <= SIZE_TOLERANCE for a, b in zip(attrs_a, attrs_b, strict=True)]
        row[name] = {"blue": sum(a.colour == "blue" for a in attrs_a) / n_eval,
                     "outline": sum(a.style == "outline" for a in attrs_a) / n_eval,
                     "both": sum(a.colour == "blue" and a.style == "outline" for a in attrs_a) / n_eval,
                     "pixel_both": sum(c == "blue" and t == "outline" for c, t in zip(colours, styles,
                                                                                     strict=True)) / n_eval,
                     "kept": sum(kept) / n_eval, "valid_after": float((err < VALID_MAX_ERROR).float().mean())}
    return row


def key(r: dict) -> tuple:
    if r["part"] == "compose":
        return ("compose", r["seed"], r["iters"], outline_label(r))
    if r["part"] == "capacity":
        return ("capacity", r["task"], r["params"], r["lr"], r["steps"])
    return ("train", r["task"], r["params"], r["lr"], r["lambda_l2"], r["seed"], r["iters"])


def outline_label(r: dict) -> str:
    """A compose row's outline domain: its scope, and its further loss terms if any."""
    d = r["domains"][1]
    return d[1] + "".join(f" + {k} {v:g}" for k, v in (d[4] if len(d) > 4 else {}).items())


def summarise(records: list[dict]) -> None:
    cap = [r for r in records if r["part"] == "capacity"]
    if cap:
        print("\ncapacity (supervised, no CLIP; reader on the demo's 128 latents)")
        print("| task | params | trained params | lr | steps | eval MSE | success | preserved | valid | pixel |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for r in sorted(cap, key=lambda r: (r["task"], r["trained_parameters"], r["steps"], r["lr"])):
            print(f"| {r['task']} | {r['params']} | {r['trained_parameters']:,} | {r['lr']} | {r['steps']} | "
                  f"{r['eval_mse']:.4f} | {r['target_success']:.0%} | {r['preservation']:.0%} | "
                  f"{r['valid_after']:.0%} | {r['pixel_success']:.0%} |")
        for task in sorted({r["task"] for r in cap}):
            c = next(r["target_ceiling"] for r in cap if r["task"] == task)
            print(f"({task} targets themselves: success {c['target_success']:.0%}, preserved {c['preservation']:.0%},"
                  f" valid {c['valid_after']:.0%})")
    comps: dict[str, list[dict]] = {}
    for r in sorted((r for r in records if r["part"] == "compose"), key=lambda r: r["seed"]):
        comps.setdefault(outline_label(r), []).append(r)
    if comps:
        print("\ncomposed domains (each trained alone, applied together at strength 1; reader on the demo's "
              "latents)")
        print("| outline domain | generator | seeds | blue | outline | both | both (pixels) "
              "| shape, size, position kept | valid |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for outline, comp in comps.items():
            for name in ("blue", "outline", "blue+outline"):
                def cell(k: str, name=name, comp=comp) -> str:
                    each = " ".join(f"{r[name][k]:.0%}" for r in comp)
                    return f"{statistics.mean(r[name][k] for r in comp):.0%} ({each})"

                print(f"| {outline} | {name} | {len(comp)} | {cell('blue')} | {cell('outline')} | {cell('both')} | "
                      f"{cell('pixel_both')} | {cell('kept')} | {cell('valid_after')} |")
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        if r["part"] == "train":
            groups.setdefault((r["task"], r["params"], r["lr"], r["lambda_l2"], r["iters"]), []).append(r)
    if groups:
        print("\nCLIP-driven training (the demo's run with params set; mean over seeds, per seed in brackets)")
        print("| task | params | lr | lambda_l2 | steps | seeds | success | preserved | valid | pixel | final clip |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for (task, params, lr, l2, iters), rows in sorted(groups.items()):
            rows = sorted(rows, key=lambda r: r["seed"])

            def cell(k: str, rows=rows) -> str:
                mean = statistics.mean(r[k] for r in rows)
                each = " ".join(f"{r[k]:.0%}" for r in rows)
                return f"{mean:.0%}" + (f" ({each})" if len(rows) > 1 else "")

            clip = statistics.mean(r["final_clip"] for r in rows)
            print(f"| {task} | {params} | {lr} | {l2} | {iters} | {len(rows)} | {cell('target_success')} | "
                  f"{cell('preservation')} | {cell('valid_after')} | {cell('pixel_success')} | {clip:.3f} |")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["capacity", "train", "compose", "both"], default="both",
                    help="'both': capacity and train; 'compose' runs alone")
    ap.add_argument("--steps", type=int, default=300, help="Adam steps of each capacity fit")
    ap.add_argument("--tasks", nargs="+", default=["colour", "style"], help="tasks of the capacity fits")
    ap.add_argument("--scopes", nargs="*", default=None, help="only these scopes' capacity fits (default: all)")
    ap.add_argument("--n-fit", type=int, default=256, help="latents the capacity fits train on (seed 1)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--iters", type=int, default=100, help="steps of each CLIP-driven run (the demo's)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                    help="seeds of the chosen settings (SEEDED); the sweep (TRAIN) runs seed 0")
    ap.add_argument("--n-eval", type=int, default=128)
    ap.add_argument("--outline-params", choices=sorted(OUTLINE), default="stylespace",
                    help="scope of the outline domain composed with the blue one (--part compose)")
    ap.add_argument("--outline-lambda", nargs="+", default=[], metavar="NAME=W",
                    help="further loss terms of the outline domain's run in --part compose, e.g. classify=3")
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "stylespace.jsonl"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows = ResultRows(args.results, key)
    if args.part in ("capacity", "both"):
        for task, scope, lr in CAPACITY:
            if task not in args.tasks or (args.scopes and scope not in args.scopes):
                continue
            if {"part": "capacity", "task": task, "params": scope, "lr": lr, "steps": args.steps} not in rows:
                rows.add([run_capacity(task, scope, lr, args.steps, args.n_fit, args.batch, args.n_eval)])
                print(f"capacity {task} {scope} lr {lr}: done", flush=True)
    if args.part in ("train", "both"):
        runs = [(*settings, 0) for settings in TRAIN] + [(*s, seed) for s in SEEDED for seed in args.seeds]
        for task, params, lr, l2, seed in dict.fromkeys(runs):
            row = {"part": "train", "task": task, "params": params, "lr": lr, "lambda_l2": l2, "seed": seed,
                   "iters": args.iters}
            if row not in rows:
                rows.add([run_train(task, params, lr, l2, seed, args.iters, args.n_eval)])
                print(f"train {task} {params} lr {lr} lambda_l2 {l2} seed {seed}: done", flush=True)
    if args.part == "compose":
        from stylenada.cli import parse_lambdas

        for seed in args.seeds:
            lambdas = parse_lambdas(tuple(args.outline_lambda))
            row = {"part": "compose", "seed": seed, "iters": args.iters,
                   "domains": [list(BLUE), outline_domain(args.outline_params, lambdas)]}
            if row not in rows:
                rows.add([run_compose(seed, args.iters, args.n_eval, args.outline_params, lambdas)])
                print(f"compose seed {seed}: done", flush=True)
    summarise(rows.records)


if __name__ == "__main__":
    main()
