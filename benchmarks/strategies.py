"""The strategy study: every layer strategy x loss weighting x source text on the shapes world's tasks.

Each configuration adapts the shipped tiny generator with the demo's settings (CPU) for several seeds
and is judged by the attribute reader (target success, preservation, diversity ratio) and by the
Frechet distance to true target renders in the tiny CLIP's space. Results are appended to a JSONL file
as they come (an interrupted study resumes where it stopped); the summary is written as
``docs/strategy-study.md`` with one figure per task.

    .venv/bin/python benchmarks/strategies.py                      # the full study (about 35 CPU minutes)
    .venv/bin/python benchmarks/strategies.py --layers adaptive all --seeds 0   # a slice
    .venv/bin/python benchmarks/strategies.py --report-only        # rewrite the summary from the JSONL
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ["all", "late", "adaptive", "adaptive_fine_grained", "adaptive_param"]
WEIGHTINGS = ["fixed", "learned"]
SOURCES = ["static", "dynamic"]
TASKS = ["colour", "style", "shape"]
METRICS = [("target_success", "success", "{:.0%}"), ("preservation", "preserved", "{:.0%}"),
           ("diversity_ratio", "diversity", "{:.2f}"), ("frechet_clip", "Frechet", "{:.3f}"),
           ("train_seconds", "seconds", "{:.1f}")]


def key(r: dict) -> tuple:
    return (r["task"], r["layers"], r["weighting"], r["source_text"], r["seed"])


def run_one(task: str, layers: str, weighting: str, source_text: str, seed: int, iters: int, n_eval: int,
            lambda_l2: float) -> dict:
    from stylenada.toy.demo import DemoConfig, run_demo

    with tempfile.TemporaryDirectory() as tmp:
        m = run_demo(DemoConfig(task=task, layers=layers, weighting=weighting, source_text=source_text,
                                seed=seed, iters=iters, n_eval=n_eval, lambda_l2=lambda_l2,
                                out=str(Path(tmp) / "run")), progress=False)
    m.pop("run_dir", None)
    return {"task": task, "layers": layers, "weighting": weighting, "source_text": source_text, "seed": seed,
            "iters": iters, "lambda_l2": lambda_l2, **m}


def summarise(records: list[dict]) -> dict[tuple, dict[str, tuple[float, float, int]]]:
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault(key(r)[:4], []).append(r)
    out = {}
    for g, rs in groups.items():
        out[g] = {}
        for m, _, _ in METRICS:
            vals = [r[m] for r in rs if m in r and r[m] == r[m]]
            if vals:
                out[g][m] = (statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0, len(vals))
    return out


def plot_task(summary: dict, task: str, out: Path) -> Path:
    from matplotlib.figure import Figure

    rows = sorted(g for g in summary if g[0] == task)
    labels = [f"{g[1]}\n{g[2]}/{g[3]}" for g in rows]
    fig = Figure(figsize=(max(8, 0.55 * len(rows)), 4.2))
    ax = fig.subplots()
    width = 0.38
    for j, (m, name, _) in enumerate(METRICS[:2]):
        means = [summary[g].get(m, (float("nan"), 0, 0))[0] for g in rows]
        errs = [summary[g].get(m, (0, 0.0, 0))[1] for g in rows]
        ax.bar([i + (j - 0.5) * width for i in range(len(rows))], means, width, yerr=errs, label=name, capsize=2)
    ax.set_xticks(range(len(rows)), labels, rotation=90, fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.set_title(f"shapes world, {task} task: mean and std over seeds")
    ax.legend(loc="lower right")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return out


def write_report(records: list[dict], doc: Path, command: str) -> None:
    summary = summarise(records)
    lines = ["# Strategy study (shapes world)", "",
             "Every layer strategy x loss weighting x source text on the shapes world's three known-answer tasks, "
             "with the demo's settings (the shipped tiny StyleGAN2 and tiny CLIP, CPU). Judged by the attribute "
             "reader on fixed latents: target success, preservation of the other attributes, diversity relative "
             "to the frozen generator, and the Frechet distance to true renders of the target domain in the tiny "
             "CLIP's image space. Mean ± standard deviation over seeds; n = number of seeds.", "",
             f"Made by: `{command}` (results in `benchmarks/results/strategies.jsonl`).", ""]
    seeds = {key(r)[:4]: set() for r in records}
    for r in records:
        seeds[key(r)[:4]].add(r["seed"])
    if not seeds or min(len(v) for v in seeds.values()) < 3 or len(seeds) < len(LAYERS) * len(WEIGHTINGS) * \
            len(SOURCES) * len(TASKS):
        lines += ["**Partial study**: fewer configurations or seeds than the full grid (5 strategies x 2 "
                  "weightings x 2 source texts x 3 tasks x 3 seeds); the spread of a single seed is shown as 0.", ""]
    iters = sorted({r["iters"] for r in records})
    from stylenada.toy.demo import DemoConfig

    d = DemoConfig()
    lines += [f"Training steps per run: {', '.join(map(str, iters))}; initial lambda_clip 1, lambda_l2 "
              f"{', '.join(sorted({str(r.get('lambda_l2', '?')) for r in records}))}; otherwise the demo's "
              f"settings: batch {d.batch}, lr {d.lr}, k {d.k} W+ entries for the adaptive strategies, ToRGB "
              f"layers {'trained' if d.train_torgb else 'frozen'}.", ""]
    for task in TASKS:
        rows = sorted(g for g in summary if g[0] == task)
        if not rows:
            continue
        fig = plot_task(summary, task, doc.parent / "figures" / f"strategy-{task}.png")
        lines += [f"## {task}", "", f"![{task}](figures/{fig.name})", "",
                  "| layers | weighting | source text | n | " + " | ".join(n for _, n, _ in METRICS) + " |",
                  "|---|---|---|---|" + "---|" * len(METRICS)]
        for g in rows:
            s = summary[g]
            n = max(v[2] for v in s.values())
            cells = [f"{fmt.format(s[m][0])} ± {fmt.format(s[m][1])}" if m in s else "-" for m, _, fmt in METRICS]
            lines.append(f"| {g[1]} | {g[2]} | {g[3]} | {n} | " + " | ".join(cells) + " |")
        lines.append("")
    doc.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", default=TASKS)
    ap.add_argument("--layers", nargs="+", default=LAYERS)
    ap.add_argument("--weightings", nargs="+", default=WEIGHTINGS)
    ap.add_argument("--sources", nargs="+", default=SOURCES)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--iters", type=int, default=60)
    ap.add_argument("--n-eval", type=int, default=128)
    ap.add_argument("--lambda-l2", type=float, default=0.5,
                    help="initial L2 weight for every configuration (learned weighting needs it > 0)")
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "strategies.jsonl"))
    ap.add_argument("--doc", default=str(ROOT / "docs" / "strategy-study.md"))
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args(argv)

    import torch

    from stylenada.utils.runtime import keep_freed_memory

    keep_freed_memory()
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    results = Path(args.results)
    results.parent.mkdir(parents=True, exist_ok=True)
    records = [json.loads(x) for x in results.read_text().splitlines() if x.strip()] if results.exists() else []
    done = {key(r) for r in records if r["iters"] == args.iters}
    if not args.report_only:
        todo = [c for c in itertools.product(args.tasks, args.layers, args.weightings, args.sources, args.seeds)
                if c not in done]
        print(f"{len(todo)} runs to do ({len(done)} done)", flush=True)
        for i, (task, layers, weighting, source, seed) in enumerate(todo):
            t0 = time.perf_counter()
            r = run_one(task, layers, weighting, source, seed, args.iters, args.n_eval, args.lambda_l2)
            with open(results, "a") as f:
                f.write(json.dumps(r) + "\n")
            records.append(r)
            print(f"[{i + 1}/{len(todo)}] {task:6s} {layers:22s} {weighting:7s} {source:7s} seed {seed}: "
                  f"success {r['target_success']:.0%} preserved {r['preservation']:.0%} "
                  f"diversity {r['diversity_ratio']:.2f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    command = "python benchmarks/strategies.py " + " ".join(argv if argv is not None else sys.argv[1:])
    write_report([r for r in records if r["iters"] == args.iters], Path(args.doc), command.strip())
    print(f"wrote {args.doc}")


if __name__ == "__main__":
    main()
