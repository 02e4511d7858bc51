"""Shapes-world inversion: train an e4e encoder for the shipped tiny generator, invert fresh renders (images
no generator made), and carry them across generators adapted by the demo's three tasks.

Prints and writes ``benchmarks/results/shapes_inversion.json`` and ``docs/figures/shapes-inversion.png``
(rows: renders, reconstructions, then each adapted generator's rendering of the same codes).

    .venv/bin/python benchmarks/shapes_inversion.py                  # about 10 CPU minutes
    .venv/bin/python benchmarks/shapes_inversion.py --encoder runs/shapes_e4e.pt   # reuse an encoder
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> None:
    from stylenada.formats import load_generator
    from stylenada.invert import load_encoder
    from stylenada.invert.train_encoder import EncoderTrainConfig, train_encoder
    from stylenada.toy.demo import GENERATOR, DemoConfig, run_demo
    from stylenada.toy.reader import load_reader
    from stylenada.toy.render import DOMAINS, domain_sampler, render_batch
    from stylenada.toy.tasks import inversion_metrics
    from stylenada.utils.images import make_grid, save_image
    from stylenada.utils.runtime import keep_freed_memory

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoder", default=None, help="an encoder to reuse (else one is trained and saved)")
    ap.add_argument("--encoder-out", default=str(ROOT / "runs" / "shapes_e4e.pt"))
    ap.add_argument("--iters", type=int, default=2000)
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--tasks", nargs="+", default=["colour", "style", "shape"])
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "shapes_inversion.json"))
    ap.add_argument("--figure", default=str(ROOT / "docs" / "figures" / "shapes-inversion.png"))
    args = ap.parse_args(argv)
    keep_freed_memory()

    G = load_generator(GENERATOR)
    t0 = time.perf_counter()
    if args.encoder:
        E = load_encoder(args.encoder)
        train_seconds = None
    else:
        E, _ = train_encoder(G, EncoderTrainConfig(iters=args.iters), sample_real=domain_sampler("source", 32),
                             out=args.encoder_out)
        train_seconds = time.perf_counter() - t0
    adapted = {}
    for task in args.tasks:
        m = run_demo(DemoConfig(task=task, out=str(ROOT / "runs" / f"inversion-{task}")), progress=False)
        adapted[task] = load_generator(Path(m["run_dir"]) / "generator.safetensors")
    reader = load_reader()
    result = inversion_metrics(E, G, reader, adapted, n=args.n)
    result["encoder_train_seconds"] = train_seconds
    result["encoder_iters"] = None if args.encoder else args.iters
    print(json.dumps(result, indent=2))
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text(json.dumps(result, indent=2))

    renders, _ = render_batch(12, DOMAINS["source"], 4242, size=G.resolution)
    with torch.no_grad():
        ws = E(renders)
        rows = [renders, G.synthesis(ws, noise_mode="const")]
        rows += [g.synthesis(ws, noise_mode="const") for g in adapted.values()]
    save_image(make_grid(torch.cat(rows), ncols=12), args.figure)
    print(f"wrote {args.results} and {args.figure} (rows: renders, reconstructions, {', '.join(adapted)})")


if __name__ == "__main__":
    main()
