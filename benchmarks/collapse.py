"""Mode collapse on the shapes world, and the angle consistency term against it.

A long, strong adaptation (high learning rate, no L2 anchor) is run with and without the in-domain angle
consistency term (``--lambda angle=W``), over seeds, and judged by the reader on fixed latents: target
success, preservation, and the diversity ratio (how much the adapted samples still differ from each other
in the attributes the task does not ask to change, relative to the frozen generator's samples; 1 = as
diverse as before). Results go to ``benchmarks/results/collapse.jsonl`` (resumable) and a summary table.

    .venv/bin/python benchmarks/collapse.py --jobs 2
    .venv/bin/python benchmarks/collapse.py --task colour --lr 0.02 --iters 400 --angle 0 4 --seeds 0 1 2

``--moments W ...`` runs the per-image direction term with moment matching (``--lambda moments=W``, see
``stylenada.adapt.losses.moment_directional_loss``) at each weight W > 0, and ``--spread W ...`` its moment
matching part alone (``--lambda spread=W``, ``spread_loss``), beside the angle weights. ``--target TEXT``
trains toward another text than the task's (judged as the task: e.g. colour toward 'a large blue shape',
the collapse setting of issue #13: the plain trainer makes every shape large; see the last command below).

    .venv/bin/python benchmarks/collapse.py --target 'a large blue shape' --lr 0.0045 --iters 200 \
        --lambda-l2 0.1 --angle 0 20 40 --spread 1 2 4 8 --moments 1 --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from rows import ResultRows  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def run_one(task: str, layers: str, lr: float, iters: int, lambda_l2: float, angle: float, seed: int,
            n_eval: int, moments: float = 0.0, target: str = "", spread: float = 0.0) -> dict:
    import dataclasses

    import torch

    torch.set_num_threads(1)
    from stylenada.toy.demo import DemoConfig, run_demo
    from stylenada.toy.tasks import TASKS, get_task

    name = task
    if target:  # the task judged as before (same attribute and value), trained toward another text
        name = f"{task}:{target}"
        TASKS[name] = dataclasses.replace(get_task(task), name=name, target=target)

    lambdas = {k: v for k, v in (("angle", angle), ("moments", moments), ("spread", spread)) if v > 0}
    with tempfile.TemporaryDirectory() as tmp:
        cfg = DemoConfig(task=name, layers=layers, lr=lr, iters=iters, lambda_l2=lambda_l2, seed=seed,
                         lambdas=lambdas, n_eval=n_eval, out=str(Path(tmp) / "r"))
        m = run_demo(cfg, progress=False)
    keep = ("target_success", "preservation", "valid_after", "pixel_success", "diversity_ratio", "train_seconds")
    return {"task": task, "layers": layers, "lr": lr, "iters": iters, "lambda_l2": lambda_l2, "angle": angle,
            **({"moments": moments} if moments > 0 else {}), **({"spread": spread} if spread > 0 else {}),
            **({"target": target} if target else {}), "seed": seed, **{k: m[k] for k in keep}}


def key(r: dict) -> tuple:
    return (r["task"], r["layers"], r["lr"], r["iters"], r["lambda_l2"], r["angle"], r.get("moments", 0.0),
            r.get("target", ""), r.get("spread", 0.0), r["seed"])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="colour")
    ap.add_argument("--target", default="", help="train toward this text instead of the task's target "
                    "(judged by the task's attribute and value), e.g. 'a large blue shape'")
    ap.add_argument("--layers", default="all")
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--iters", type=int, default=400)
    ap.add_argument("--lambda-l2", type=float, default=0.0)
    ap.add_argument("--angle", type=float, nargs="+", default=[0.0, 4.0], help="weights of the angle term (0: off)")
    ap.add_argument("--moments", type=float, nargs="*", default=[],
                    help="weights of the per-image direction / moment matching term (each run without angle)")
    ap.add_argument("--spread", type=float, nargs="*", default=[],
                    help="weights of the moment matching of the batch's spread alone (each run without angle)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--n-eval", type=int, default=128)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "collapse.jsonl"))
    args = ap.parse_args(argv)
    rows = ResultRows(args.results, key)
    records, done = rows.records, rows.done
    combos = ([(a, 0.0, 0.0) for a in args.angle] + [(0.0, m, 0.0) for m in args.moments if m > 0]
              + [(0.0, 0.0, v) for v in args.spread if v > 0])
    todo = [(args.task, args.layers, args.lr, args.iters, args.lambda_l2, a, s, args.n_eval, m, args.target, v)
            for a, m, v in combos for s in args.seeds]
    fields = ("task", "layers", "lr", "iters", "lambda_l2", "angle", "seed", "n_eval", "moments", "target", "spread")
    todo = [c for c in todo if key(dict(zip(fields, c, strict=True))) not in done]
    with ProcessPoolExecutor(max_workers=max(args.jobs, 1)) as pool:
        for r in pool.map(run_one, *zip(*todo, strict=True)) if todo else []:
            rows.add([r])
            print(json.dumps(r), flush=True)
    toward = f" toward {args.target!r}" if args.target else ""
    print(f"\n{args.task}{toward}, {args.layers} layers, lr {args.lr}, {args.iters} steps, lambda_l2 {args.lambda_l2} "
          f"(mean over seeds {args.seeds})")
    print("| term | success | preserved | valid | pixel success | diversity ratio | n |")
    print("|---|---|---|---|---|---|---|")
    for a, mo, v in combos:
        rs = [r for r in records if key(r)[:9] == (args.task, args.layers, args.lr, args.iters, args.lambda_l2, a, mo,
                                                args.target, v)
              and r["seed"] in args.seeds]
        name = f"moments {mo:g}" if mo > 0 else f"spread {v:g}" if v > 0 else f"angle {a:g}" if a > 0 else "plain"
        if rs:
            m = {k: statistics.fmean(r[k] for r in rs) for k in ("target_success", "preservation", "valid_after",
                                                                 "pixel_success", "diversity_ratio")}
            print(f"| {name} | {m['target_success']:.0%} | {m['preservation']:.0%} | {m['valid_after']:.0%} | "
                  f"{m['pixel_success']:.0%} | {m['diversity_ratio']:.2f} | {len(rs)} |")


if __name__ == "__main__":
    main()
