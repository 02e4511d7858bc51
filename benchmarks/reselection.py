"""How often should adaptive layer selection re-select? Quality and stability against the interval.

The adaptive strategies run a W+ optimisation (a forward and backward pass of ``w_batch`` latents through
the generator and CLIP) each time they re-select; at 256 px that costs more than the training step itself.
This study runs the adaptive strategy on the shapes world (the demo's generator, teachers and settings)
with re-selection every 1, 2, 4, 8 steps and only once, over tasks and seeds, and judges each run with the
reader (target success, preservation, validity; the pixel statistics beside the reader). It also reads
how much the choice moves between consecutive selections (the mean Jaccard overlap of the chosen layer
sets, from each run's metrics.jsonl). Rows go to ``benchmarks/results/reselection.jsonl`` (resumable).

    .venv/bin/python benchmarks/reselection.py
    .venv/bin/python benchmarks/reselection.py --tasks colour --intervals 1 4 --seeds 0
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from rows import ResultRows  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ONCE = 0  # --intervals value meaning: select at step 0 only


def jaccard(a: list[str], b: list[str]) -> float:
    sa, sb = set(a), set(b)
    return len(sa & sb) / max(len(sa | sb), 1)


def run_one(task: str, interval: int, seed: int, k: int, iters: int, n_eval: int) -> dict:
    from stylenada.adapt.trainer import adapt
    from stylenada.formats import load_generator
    from stylenada.toy.demo import DemoConfig, train_config
    from stylenada.toy.reader import load_reader
    from stylenada.toy.tasks import get_task, task_metrics
    from stylenada.utils.rundir import RunDir

    with tempfile.TemporaryDirectory() as tmp:
        demo = DemoConfig(task=task, layers="adaptive", k=k, seed=seed, iters=iters)
        cfg = train_config(demo, Path(tmp) / "r")
        every = iters + 1 if interval == ONCE else interval
        cfg = dataclasses.replace(cfg, tensorboard=False, selection=dataclasses.replace(cfg.selection, interval=every))
        t0 = time.perf_counter()
        result = adapt(cfg, progress=False)
        seconds = time.perf_counter() - t0
        chosen = [r["selection"]["layers"] for r in RunDir(result.run_dir).records() if "selection" in r]
        m = task_metrics(get_task(task), load_generator(cfg.generator), load_generator(result.generator_path),
                         load_reader(), n=n_eval)
    overlap = [jaccard(a, b) for a, b in zip(chosen, chosen[1:], strict=False)]
    return {"task": task, "interval": interval, "seed": seed, "k": k, "iters": iters, "train_seconds": seconds,
            "selections": len(chosen), "overlap": statistics.mean(overlap) if overlap else 1.0,
            **{key: m[key] for key in ("target_success", "preservation", "valid_after", "pixel_success")}}


def key(r: dict) -> tuple:
    return (r["task"], r["interval"], r["seed"], r["k"], r["iters"])


def summarise(records: list[dict]) -> None:
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["task"], r["k"], r["iters"], r["interval"]), []).append(r)
    print("| task | k | steps | re-select every | seeds | success | pixel | preservation | valid | overlap of "
          "consecutive choices | train s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for (task, k, iters, interval), rows in sorted(groups.items(), key=lambda kv: (kv[0][:3], kv[0][3] or 10**9)):
        def mean(name: str, rows=rows) -> float:
            return statistics.mean(r[name] for r in rows)

        every = "once" if interval == ONCE else f"{interval} steps"
        print(f"| {task} | {k} | {iters} | {every} | {len(rows)} | {mean('target_success'):.0%} | "
              f"{mean('pixel_success'):.0%} | {mean('preservation'):.0%} | {mean('valid_after'):.0%} | "
              f"{mean('overlap'):.2f} | {mean('train_seconds'):.1f} |")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", default=["colour", "style"])
    ap.add_argument("--intervals", type=int, nargs="+", default=[1, 2, 4, 8, ONCE], help="0: once, at step 0")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--k", type=int, default=6, help="W+ entries chosen (of the tiny generator's 8; the study's 6)")
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--n-eval", type=int, default=128)
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "reselection.jsonl"))
    args = ap.parse_args(argv)
    rows = ResultRows(args.results, key)
    for task in args.tasks:
        for seed in args.seeds:
            for interval in args.intervals:
                if {"task": task, "interval": interval, "seed": seed, "k": args.k, "iters": args.iters} in rows:
                    continue
                r = run_one(task, interval, seed, args.k, args.iters, args.n_eval)
                rows.add([r])
                print(f"{task} every {interval} seed {seed}: success {r['target_success']:.0%}", flush=True)
    summarise([r for r in rows.records if r["task"] in args.tasks and r["seed"] in args.seeds and r["k"] == args.k
               and r["iters"] == args.iters])


if __name__ == "__main__":
    main()
