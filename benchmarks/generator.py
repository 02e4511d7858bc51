"""Generator speed and memory: forward and forward+backward time per image, and peak memory.

Random-weight generators (StyleGAN2 config F, channel multiplier 2; StyleGAN3 T or R with ``--family``)
at the given resolutions and batch sizes, on CPU (and CUDA when available). Each configuration runs in
its own subprocess so that its peak memory is its own. Results: printed, and written to
benchmarks/results/generator-[<family>-]<device>-<precision>.json (...-modconv.json / -upconv.json for a
comparison of the modulated-conv forms / of the upsampling conv's forms).

    .venv/bin/python benchmarks/generator.py                      # 256 and 1024 px, batch 1, 2, 4
    .venv/bin/python benchmarks/generator.py --res 256 --batch 2 --repeats 3
    .venv/bin/python benchmarks/generator.py --res 32 256 --batch 8 2 --modconv grouped scaled   # both forms
    .venv/bin/python benchmarks/generator.py --res 256 --batch 2 --upconv transposed phases        # upsampling
    .venv/bin/python benchmarks/generator.py --family stylegan3 --res 256 --batch 1 --repeats 1   # StyleGAN3 T
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def measure(res: int, batch: int, device: str, repeats: int, precision: str, modconv: str | None = None,
            family: str = "stylegan2", upconv: str | None = None) -> dict:
    import torch

    from stylenada.models import ops
    from stylenada.utils.runtime import keep_freed_memory

    if modconv is not None:
        ops.MODCONV_FORM[torch.device(device).type] = modconv
    if upconv is not None:
        ops.UPCONV_FORM[torch.device(device).type] = upconv

    if device == "cpu":
        keep_freed_memory()
    torch.manual_seed(0)
    G = random_generator(family, res).to(device)
    z = torch.randn(batch, G.z_dim, device=device)
    ctx = (torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
           if precision == "bf16" else torch.autocast(device_type="cpu", enabled=False))

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def fwd():
        with torch.no_grad(), ctx:
            G(z, noise_mode="random")
        sync()

    def fwd_bwd():
        with ctx:
            img = G(z, noise_mode="random")
        img.float().square().mean().backward()
        G.zero_grad(set_to_none=True)
        sync()

    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    out = {"family": family, "resolution": res, "batch": batch, "device": device, "precision": precision,
           "modconv": ops.MODCONV_FORM[torch.device(device).type],
           "upconv": ops.UPCONV_FORM.get(torch.device(device).type, "transposed")}
    for name, fn in (("forward", fwd), ("forward_backward", fwd_bwd)):
        fn()  # warm-up
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        best = min(times)
        out[f"{name}_s"] = best
        out[f"{name}_s_per_image"] = best / batch
    if device.startswith("cuda"):
        out["peak_mem_mb"] = torch.cuda.max_memory_allocated() / 2**20
    else:
        # ru_maxrss is in KiB on Linux: the growth over the process's footprint after building G.
        out["peak_mem_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_rss) / 1024
    out["params_m"] = sum(p.numel() for p in G.parameters()) / 1e6
    return out


def random_generator(family: str, res: int):
    """A random generator of the family at full size: StyleGAN2 config F, StyleGAN3 config T or R (NVIDIA's
    channel counts); ``stylegan3-r`` names config R."""
    from stylenada.models import FAMILIES

    name, _, config = family.partition("-")
    preset = FAMILIES[name].preset
    cfg = preset(res, 2, config=config.upper()) if config else preset(res, 2)
    return FAMILIES[name].build(cfg)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--res", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available, else cpu)")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--modconv", nargs="+", choices=["grouped", "scaled"], default=[None],
                    help="modulated-conv forms to compare (default: the device's choice in models/ops.py)")
    ap.add_argument("--upconv", nargs="+", choices=["transposed", "phases"], default=[None],
                    help="forms of the upsampling layers' stride-2 transposed conv to compare (default: the device's)")
    ap.add_argument("--family", default="stylegan2", choices=["stylegan2", "stylegan3", "stylegan3-r"],
                    help="generator family (stylegan3: config T; stylegan3-r: config R)")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # internal: run one configuration
    args = ap.parse_args(argv)

    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.one:
        print(json.dumps(measure(args.res[0], args.batch[0], device, args.repeats, args.precision, args.modconv[0],
                                 args.family, args.upconv[0])))
        return
    rows = []
    print(f"{'res':>5} {'batch':>5} {'modconv':>8} {'upconv':>10} {'fwd s/img':>10} {'fwd+bwd s/img':>14} "
          f"{'peak MB':>9}")
    for res in args.res:
        for batch in args.batch:
            for form in args.modconv:
                for upconv in args.upconv:
                    cmd = [sys.executable, __file__, "--one", "--res", str(res), "--batch", str(batch), "--device",
                           device, "--repeats", str(args.repeats), "--precision", args.precision,
                           "--family", args.family]
                    cmd += ["--modconv", form] if form else []
                    cmd += ["--upconv", upconv] if upconv else []
                    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1]
                    r = json.loads(out)
                    rows.append(r)
                    print(f"{res:>5} {batch:>5} {r['modconv']:>8} {r['upconv']:>10} {r['forward_s_per_image']:>10.3f} "
                          f"{r['forward_backward_s_per_image']:>14.3f} {r['peak_mem_mb']:>9.0f}", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    tag = "cpu" if device == "cpu" else torch.cuda.get_device_name().replace(" ", "_")
    # a comparison of the forms keeps its own file
    forms = "-modconv" if args.modconv != [None] else "-upconv" if args.upconv != [None] else ""
    family = "" if args.family == "stylegan2" else f"{args.family}-"
    path = RESULTS / f"generator-{family}{tag}-{args.precision}{forms}.json"
    from stylenada.utils.runtime import cpu_description

    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
            **cpu_description(),
            "processor": platform.processor(),
            "command": " ".join(["benchmarks/generator.py", *(argv or sys.argv[1:])])}
    path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
