"""Mode collapse on the shapes world, and the angle consistency term against it.

A long, strong adaptation (high learning rate, no L2 anchor) is run with and without the in-domain angle
consistency term (``--lambda angle=W``), over seeds, and judged by the reader on fixed latents: target
success, preservation, and the diversity ratio (how much the adapted samples still differ from each other
in the attributes the task does not ask to change, relative to the frozen generator's samples; 1 = as
diverse as before). Results go to ``benchmarks/results/collapse.jsonl`` (resumable) and a summary table.

    .venv/bin/python benchmarks/collapse.py --jobs 2
    .venv/bin/python benchmarks/collapse.py --task colour --lr 0.02 --iters 400 --angle 0 4 --seeds 0 1 2
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
            n_eval: int) -> dict:
    import torch

    torch.set_num_threads(1)
    from stylenada.toy.demo import DemoConfig, run_demo

    with tempfile.TemporaryDirectory() as tmp:
        cfg = DemoConfig(task=task, layers=layers, lr=lr, iters=iters, lambda_l2=lambda_l2, seed=seed,
                         lambdas={"angle": angle} if angle > 0 else {}, n_eval=n_eval, out=str(Path(tmp) / "r"))
        m = run_demo(cfg, progress=False)
    keep = ("target_success", "preservation", "valid_after", "pixel_success", "diversity_ratio", "train_seconds")
    return {"task": task, "layers": layers, "lr": lr, "iters": iters, "lambda_l2": lambda_l2, "angle": angle,
            "seed": seed, **{k: m[k] for k in keep}}


def key(r: dict) -> tuple:
    return (r["task"], r["layers"], r["lr"], r["iters"], r["lambda_l2"], r["angle"], r["seed"])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="colour")
    ap.add_argument("--layers", default="all")
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--iters", type=int, default=400)
    ap.add_argument("--lambda-l2", type=float, default=0.0)
    ap.add_argument("--angle", type=float, nargs="+", default=[0.0, 4.0], help="weights of the angle term (0: off)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--n-eval", type=int, default=128)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "collapse.jsonl"))
    args = ap.parse_args(argv)
    rows = ResultRows(args.results, key)
    records, done = rows.records, rows.done
    todo = [(args.task, args.layers, args.lr, args.iters, args.lambda_l2, a, s, args.n_eval)
            for a in args.angle for s in args.seeds]
    todo = [c for c in todo if key(dict(zip(("task", "layers", "lr", "iters", "lambda_l2", "angle", "seed"), c,
                                            strict=False))) not in done]
    with ProcessPoolExecutor(max_workers=max(args.jobs, 1)) as pool:
        for r in pool.map(run_one, *zip(*todo, strict=True)) if todo else []:
            rows.add([r])
            print(json.dumps(r), flush=True)
    print(f"\n{args.task}, {args.layers} layers, lr {args.lr}, {args.iters} steps, lambda_l2 {args.lambda_l2} "
          f"(mean over seeds {args.seeds})")
    print("| angle weight | success | preserved | valid | pixel success | diversity ratio | n |")
    print("|---|---|---|---|---|---|---|")
    for a in args.angle:
        rs = [r for r in records if key(r)[:6] == (args.task, args.layers, args.lr, args.iters, args.lambda_l2, a)
              and r["seed"] in args.seeds]
        if rs:
            m = {k: statistics.fmean(r[k] for r in rs) for k in ("target_success", "preservation", "valid_after",
                                                                 "pixel_success", "diversity_ratio")}
            print(f"| {a:g} | {m['target_success']:.0%} | {m['preservation']:.0%} | {m['valid_after']:.0%} | "
                  f"{m['pixel_success']:.0%} | {m['diversity_ratio']:.2f} | {len(rs)} |")


if __name__ == "__main__":
    main()
