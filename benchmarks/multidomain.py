"""Many colours in one model on the shapes world: a multi-domain model against single-domain runs.

One multi-domain model (``stylenada train --targets``) is trained on the red-shapes generator for several
target colours and judged per target by the attribute reader on fixed latents (target success,
preservation, validity, and the colour read from plain pixel statistics beside the reader); held-out
colours, never trained, are rendered zero-shot from their text. Single-domain runs with the demo's
settings, one per target, are the reference. Rows go to ``benchmarks/results/multidomain.jsonl``
(resumable: finished rows are skipped) and a summary table is printed.

    .venv/bin/python benchmarks/multidomain.py
    .venv/bin/python benchmarks/multidomain.py --train orange yellow green blue --held-out purple --seeds 0 1 2
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


def colour_task(colour: str):
    from stylenada.toy.tasks import ShapeTask

    return ShapeTask(f"colour-{colour}", "a red shape", f"a {colour} shape", "colour", colour)


def judge(task, G_frozen, G, reader, n_eval: int) -> dict:
    from stylenada.toy.tasks import task_metrics

    m = task_metrics(task, G_frozen, G, reader, n=n_eval)
    return {k: m[k] for k in ("target_success", "preservation", "valid_after", "pixel_success")}


def base_config(out: str, seed: int, iters: int):
    from stylenada.toy.demo import DemoConfig, train_config

    return train_config(DemoConfig(task="colour", seed=seed, iters=iters), out)


def run_multi(train: list[str], held_out: list[str], seed: int, iters: int, mixing: float, rank: int,
              n_eval: int) -> list[dict]:
    from stylenada.adapt.multidomain import load_multidomain
    from stylenada.adapt.trainer import adapt, load_clip_models
    from stylenada.formats import load_generator
    from stylenada.toy.reader import load_reader

    reader = load_reader()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = base_config(str(Path(tmp) / "multi"), seed, iters)
        cfg = dataclasses.replace(cfg, target="", targets=[f"a {c} shape" for c in train], target_mixing=mixing,
                                  multi_rank=rank, tensorboard=False)
        t0 = time.perf_counter()
        result = adapt(cfg, progress=False)
        seconds = time.perf_counter() - t0
        size = result.generator_path.stat().st_size
        model = load_multidomain(result.generator_path)
        G_frozen = load_generator(cfg.generator)
        clip_models = load_clip_models(model.clip, "cpu")
        rows = []
        for colour in train + held_out:
            for new_text in ("direct", "blend") if colour in held_out else ("direct",):
                G = model.generator_for(G_frozen, f"a {colour} shape", clip_models, new_text=new_text)
                rows.append({"kind": "multi", "target": colour, "held_out": colour in held_out, "seed": seed,
                             "iters": iters, "mixing": mixing, "rank": rank, "train": train, "model_bytes": size,
                             "new_text": new_text if colour in held_out else None, "train_seconds": seconds,
                             **judge(colour_task(colour), G_frozen, G, reader, n_eval)})
    return rows


def run_single(colour: str, seed: int, iters: int, n_eval: int) -> dict:
    from stylenada.adapt.trainer import adapt
    from stylenada.formats import load_generator
    from stylenada.toy.reader import load_reader

    with tempfile.TemporaryDirectory() as tmp:
        cfg = dataclasses.replace(base_config(str(Path(tmp) / "single"), seed, iters), target=f"a {colour} shape",
                                  tensorboard=False)
        t0 = time.perf_counter()
        result = adapt(cfg, progress=False)
        seconds = time.perf_counter() - t0
        G_frozen, G = load_generator(cfg.generator), load_generator(result.generator_path)
        return {"kind": "single", "target": colour, "held_out": False, "seed": seed, "iters": iters,
                "model_bytes": result.generator_path.stat().st_size, "train_seconds": seconds,
                **judge(colour_task(colour), G_frozen, G, load_reader(), n_eval)}


def key(r: dict) -> tuple:
    return (r["kind"], r["target"], r["seed"], r["iters"], r.get("mixing"), r.get("rank"), tuple(r.get("train", ())))


def summarise(records: list[dict]) -> None:
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        label = "single" if r["kind"] == "single" else \
            f"multi on {', '.join(r['train'])} (mixing {r['mixing']}, rank {r['rank']})"
        held = f"held out, {r.get('new_text') or 'direct'}" if r["held_out"] else ""
        groups.setdefault((label, r["iters"], r["target"], held), []).append(r)
    print("| model | steps | target | seeds | success | pixel success | preservation | valid | model KB |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for (label, iters, target, held), rows in sorted(groups.items()):
        mean = lambda k, rows=rows: statistics.mean(r[k] for r in rows)  # noqa: E731
        name = f"{target} ({held})" if held else target
        print(f"| {label} | {iters} | {name} | {len(rows)} | {mean('target_success'):.0%} | "
              f"{mean('pixel_success'):.0%} | {mean('preservation'):.0%} | {mean('valid_after'):.0%} | "
              f"{mean('model_bytes') / 1024:.0f} |")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", nargs="+", default=["orange", "yellow", "green", "blue"])
    ap.add_argument("--held-out", nargs="*", default=["purple"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--iters", type=int, default=200, help="steps of the multi-domain run")
    ap.add_argument("--single-iters", type=int, default=100, help="steps of each single-domain run (the demo's)")
    ap.add_argument("--mixing", type=float, nargs="*", default=[0.0, 0.5], help="target_mixing values to run")
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--no-single", action="store_true", help="skip the single-domain reference runs")
    ap.add_argument("--n-eval", type=int, default=128)
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "multidomain.jsonl"))
    args = ap.parse_args(argv)
    rows = ResultRows(args.results, key)
    for seed in args.seeds:
        for mixing in args.mixing:
            probe = {"kind": "multi", "target": args.train[0], "seed": seed, "iters": args.iters, "mixing": mixing,
                     "rank": args.rank, "train": args.train}
            if probe not in rows:
                rows.add(run_multi(args.train, args.held_out, seed, args.iters, mixing, args.rank, args.n_eval))
                print(f"multi seed {seed} mixing {mixing}: done", flush=True)
        if not args.no_single:
            for colour in args.train + args.held_out:
                probe = {"kind": "single", "target": colour, "seed": seed, "iters": args.single_iters}
                if probe not in rows:
                    rows.add([run_single(colour, seed, args.single_iters, args.n_eval)])
                    print(f"single {colour} seed {seed}: done", flush=True)
    summarise([r for r in rows.records if r["seed"] in args.seeds])


if __name__ == "__main__":
    main()
