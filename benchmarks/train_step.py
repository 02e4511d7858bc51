"""Seconds per NADA training step and peak memory, per layer strategy.

Random-weight StyleGAN2 (config F, channel multiplier 2) at 256 and 1024 px and a random-weight
open_clip ViT-B-32 (the architecture of the paper's teacher; ``--clip`` names others, e.g. the paper's pair
ViT-B-32 ViT-B-16), batch 2, the full step of the trainer
(frozen forward, trainable forward+backward, CLIP on both, Adam step, layer selection when the
strategy re-selects). Each configuration runs in its own subprocess. Results are printed and written
to benchmarks/results/train_step-<device>-<precision>.json.

    .venv/bin/python benchmarks/train_step.py --res 256 --layers all adaptive --precision fp32 bf16
    .venv/bin/python benchmarks/train_step.py --res 1024 --layers all --steps 2
    .venv/bin/python benchmarks/train_step.py --res 1024 --layers adaptive --k 17 --interval 4 --steps 4 --checkpointing
    .venv/bin/python benchmarks/train_step.py --res 256 --layers all --upconv transposed phases   # upsampling forms

The official implementation's step, side by side on the same machine: benchmarks/official_step.py (it
calls ``measure`` below for our side).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def measure(res: int, layers: str, precision: str, steps: int, k: int | None, device: str, warmup: int,
            family: str = "stylegan2", interval: int = 1, chunk: int = 2, checkpointing: bool = False,
            keep_freed: bool = True, clips: tuple[str, ...] = ("ViT-B-32",), upconv: str | None = None) -> dict:
    import open_clip
    import torch

    from stylenada.models import ops

    if upconv is not None:
        ops.UPCONV_FORM[torch.device(device).type] = upconv

    from stylenada.adapt.config import TrainConfig
    from stylenada.adapt.layers import SelectionConfig
    from stylenada.adapt.trainer import Trainer
    from stylenada.clip import ClipModel
    from stylenada.formats import save_generator

    sys.path.insert(0, str(Path(__file__).parent))
    from generator import random_generator  # the sibling benchmark's full-size random generators

    torch.manual_seed(0)
    tmp = Path(tempfile.mkdtemp())
    gen = save_generator(random_generator(family, res), tmp / "g.safetensors")
    teachers = [(ClipModel(open_clip.create_model(name), open_clip.get_tokenizer(name), name=name).to(device), 1.0)
                for name in clips]
    cfg = TrainConfig(generator=str(gen), source="photo", target="sketch", out=str(tmp / "run"),
                      iters=steps + warmup,
                      batch=2, layers=layers, precision=precision, activation_checkpointing=checkpointing,
                      templates="single", sample_every=0,
                      checkpoint_every=0, tensorboard=False, device=device,
                      selection=SelectionConfig(k=k, w_batch=8, w_steps=1, interval=interval, chunk=chunk))
    trainer = Trainer(cfg, clip_models=teachers)
    trainer.run_dir.mkdir(parents=True, exist_ok=True)

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(warmup):  # text embeddings, allocator growth, oneDNN kernel set-up for each shape
        trainer.train_step()
    sync()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        trainer.train_step()
        sync()
        times.append(time.perf_counter() - t)
    # With re-selection every `interval` steps the steps differ: the mean over whole intervals is the cost.
    per_step = statistics.median(times) if interval == 1 else statistics.mean(times)
    out = {"family": family, "resolution": res, "layers": layers, "k": k, "interval": interval, "chunk": chunk,
           "activation_checkpointing": checkpointing, "keep_freed_memory": keep_freed, "clip": list(clips),
           "precision": precision, "batch": 2, "device": device,
           "upconv": ops.UPCONV_FORM.get(torch.device(device).type, "transposed"),
           "seconds_per_step": per_step, "seconds_min": min(times), "seconds_all": times}
    if device.startswith("cuda"):
        out["peak_mem_mb"] = torch.cuda.max_memory_allocated() / 2**20
    else:
        out["peak_mem_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        out["peak_mem_growth_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_rss) / 1024
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--res", type=int, nargs="+", default=[256])
    ap.add_argument("--layers", nargs="+", default=["all", "late", "adaptive", "adaptive_fine_grained",
                                                      "adaptive_param"])
    ap.add_argument("--precision", nargs="+", default=["fp32"])
    ap.add_argument("--steps", type=int, default=3, help="measured steps (the median is reported)")
    ap.add_argument("--warmup", type=int, default=2, help="unmeasured steps first")
    ap.add_argument("--k", type=int, default=None, help="layers chosen by adaptive strategies (default: num_ws)")
    ap.add_argument("--interval", type=int, default=1,
                    help="re-select every this many steps; give --steps as a multiple (the mean is reported then)")
    ap.add_argument("--chunk", type=int, default=2, help="latents per selection pass (SelectionConfig.chunk)")
    ap.add_argument("--checkpointing", action="store_true",
                    help="activation checkpointing of the trainable generator (TrainConfig.activation_checkpointing)")
    ap.add_argument("--release-memory", action="store_true",
                    help="return freed memory to the OS (TrainConfig.release_memory; the default recycles it: faster)")
    ap.add_argument("--clip", nargs="+", default=["ViT-B-32"],
                    help="open_clip architectures of the teachers, random weights (the paper: ViT-B-32 ViT-B-16)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--family", default="stylegan2", choices=["stylegan2", "stylegan3", "stylegan3-r"])
    ap.add_argument("--upconv", nargs="+", choices=["transposed", "phases"], default=[None],
                    help="forms of the upsampling conv to compare (default: the device's, models/ops.py)")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    import torch

    from stylenada.utils.runtime import set_allocator

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    keep_freed = device == "cpu" and set_allocator(args.release_memory)  # as `stylenada train` does
    if args.one:
        r = measure(args.res[0], args.layers[0], args.precision[0], args.steps, args.k, device, args.warmup,
                    args.family, args.interval, args.chunk, args.checkpointing,
                    keep_freed, tuple(args.clip), args.upconv[0])
        print(json.dumps(r))
        return
    rows = []
    print(f"{'res':>5} {'layers':>22} {'prec':>5} {'s/step':>8} {'peak MB':>8}", flush=True)
    for res in args.res:
        for precision in args.precision:
            for layers, upconv in ((la, u) for la in args.layers for u in args.upconv):
                cmd = [sys.executable, __file__, "--one", "--res", str(res), "--layers", layers, "--precision",
                       precision, "--steps", str(args.steps), "--warmup", str(args.warmup), "--device", device,
                       "--family", args.family, "--interval", str(args.interval), "--chunk", str(args.chunk)]
                if args.k is not None:
                    cmd += ["--k", str(args.k)]
                cmd += ["--checkpointing"] * args.checkpointing + ["--release-memory"] * args.release_memory
                cmd += ["--clip", *args.clip] + (["--upconv", upconv] if upconv else [])
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0:
                    print(proc.stderr[-2000:], file=sys.stderr)
                    raise SystemExit(f"benchmark failed for {res}px {layers} {precision}")
                r = json.loads(proc.stdout.splitlines()[-1])
                rows.append(r)
                print(f"{res:>5} {layers:>22} {precision:>5} {r['seconds_per_step']:>8.2f} {r['peak_mem_mb']:>8.0f}"
                      f"{'  ' + r['upconv'] if upconv else ''}", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    tag = "cpu" if device == "cpu" else torch.cuda.get_device_name().replace(" ", "_")
    family = "" if args.family == "stylegan2" else f"{args.family}-"
    every = "" if args.interval == 1 else f"-interval{args.interval}"
    every += "" if args.chunk == 2 else f"-chunk{args.chunk}"
    every += "-checkpointing" * args.checkpointing + "-release" * args.release_memory
    every += "" if args.clip == ["ViT-B-32"] else "-" + "+".join(args.clip)
    every += "" if args.upconv == [None] else "-upconv"
    path = RESULTS / f"train_step-{family}{tag}-{'-'.join(args.precision)}-{'-'.join(map(str, args.res))}{every}.json"
    from stylenada.utils.runtime import cpu_description

    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
            **cpu_description(),
            "command": " ".join(["benchmarks/train_step.py", *(argv if argv is not None else sys.argv[1:])])}
    path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
