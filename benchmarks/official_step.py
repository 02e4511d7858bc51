"""Seconds per training step of the OFFICIAL StyleGAN-NADA (rinongal/StyleGAN-nada) next to ours, on CPU.

The official step is the one of its ``ZSSGAN/train.py``: ``mixing_noise`` -> ``net(sample_z)`` (ZSSGAN:
adaptive layer choice when ``auto_layer_iters > 0``, frozen and trainable rosinality generators, CLIP
directional loss) -> ``net.zero_grad()`` -> ``loss.backward()`` -> Adam step. It runs the official code
itself, from a checkout that you make; this file contains none of it. What cannot run here is replaced
at run time, before the official modules are imported:

* ``op`` (rosinality's fused CUDA ops, compiled at import): a pure-PyTorch ``op`` module written here
  (``FusedLeakyReLU`` / ``fused_leaky_relu``: bias, leaky ReLU 0.2, gain sqrt(2); ``upfirdn2d``: zero
  insertion upsampling, pad, FIR filter, downsampling; ``conv2d_gradfix``: plain ``F.conv2d`` /
  ``F.conv_transpose2d``, which is what the official ``conv2d_gradfix`` itself calls off CUDA).
* ``clip.load`` (downloads OpenAI's weights): replaced in the real ``clip`` package (OpenAI's model and
  tokenizer code) by a ``load`` that does what clip's own does with a state dict (``build_model``,
  ``.float()`` on CPU, the same preprocessing) on a random one of the requested architecture
  (``clip.model.CLIP``'s own random init, in fp16 as OpenAI's files). ``clip.tokenize`` is untouched.
* The device: ZSSGAN hard-codes ``'cuda:0'`` (``self.device`` and SG2Generator's default argument). Both
  are redirected to ``'cpu'`` (a ``device`` property on a subclass, and the default argument's value);
  nothing else of ZSSGAN is changed.

Both sides use the same random StyleGAN2 (config F, channel multiplier 2, seed 0; written for the official
side as a rosinality ``.pt`` by stylenada), batch 2, fp32, a random ViT-B/32 teacher, directional loss
only, source "photo" and target "sketch". Cases:

(a) no layer selection: official ``--auto_layer_iters 0 --phase None`` (trains the constant input and
    every modulated conv; not mapping or ToRGB); ours ``--layers all`` (every synthesis layer, ToRGB too).
(b) adaptive: official ``--auto_layer_iters 1 --auto_layer_batch 8 --auto_layer_k K`` (the selection runs
    on every training step; K defaults to the W+ size, 14 at 256 px, as the paper's k=18 at 1024);
    ours ``--layers adaptive`` with k = K-1 and K, re-selecting every step (interval 1) and every 4 steps
    (our default). With k = K ours never runs the selection (it could not change anything), so that row is
    the same for every interval and is timed once.

Our steps are timed by ``benchmarks/train_step.py``'s ``measure``. Every configuration runs in its own
subprocess (peak RSS is per process). Official steps report the median; ours as train_step.py does (the
mean over whole re-selection intervals when interval > 1). Results: printed, and written to
benchmarks/results/official_step-cpu-fp32-<res>.json.

Setup (once; keep the official code outside this repository; any recent commit; written against
rinongal/StyleGAN-nada dc8406a and openai/CLIP d05afc4):

    git clone https://github.com/rinongal/StyleGAN-nada /work/official/StyleGAN-nada
    git clone https://github.com/openai/CLIP /work/official/CLIP
    .venv/bin/pip install --no-deps /work/official/CLIP     # OpenAI's clip package; no weights are fetched
    .venv/bin/pip install ftfy regex                         # clip's tokenizer (already there with open_clip)

The official modules also import torchvision, numpy, PIL, click and requests (stylenada's dependencies
bring them) and ``distutils`` (Python <= 3.11, or setuptools' shim). Then, on otherwise idle cores:

    .venv/bin/python benchmarks/official_step.py --official /work/official/StyleGAN-nada
    .venv/bin/python benchmarks/official_step.py --official DIR --res 64 --steps 1 --warmup 0 --threads 1 \\
        --out /tmp/official_step-smoke.json                  # a quick check that everything runs

Reference figures measured before, on the same kind of 2-core machine: official 12.6 s/step (a), 64 s (b).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import platform
import resource
import statistics
import subprocess
import sys
import time
import types
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DEFAULT_CACHE = Path("/tmp/stylenada-official-step")
SOURCE, TARGET, BATCH = "photo", "sketch", 2

# OpenAI CLIP architectures (clip.model.CLIP arguments) of the models the official CLIPLoss loads:
# its teacher (ViT-B/32 here) and the RN50 it always loads for its (unused here) texture loss.
CLIP_ARCHS: dict[str, dict[str, Any]] = {
    "ViT-B/32": dict(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768, vision_patch_size=32),
    "ViT-B/16": dict(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768, vision_patch_size=16),
    "RN50": dict(embed_dim=1024, image_resolution=224, vision_layers=(3, 4, 6, 3), vision_width=64,
                 vision_patch_size=None),
}
CLIP_TEXT = dict(context_length=77, vocab_size=49408, transformer_width=512, transformer_heads=8,
                 transformer_layers=12)


# --------------------------------------------------------------------------------------------------------
# Pure-PyTorch stand-ins for the official `op` package (rosinality's CUDA extensions).
# --------------------------------------------------------------------------------------------------------

def fused_leaky_relu(input, bias=None, negative_slope: float = 0.2, scale: float = 2 ** 0.5):
    """``leaky_relu(input + bias, negative_slope) * scale``, the bias broadcast along dim 1."""
    import torch.nn.functional as F

    if bias is not None:
        input = input + bias.reshape(1, -1, *([1] * (input.ndim - 2)))
    return F.leaky_relu(input, negative_slope) * scale


def upfirdn2d(input, kernel, up: int | Sequence[int] = 1, down: int | Sequence[int] = 1,
              pad: Sequence[int] = (0, 0)):
    """Upsample by zero insertion, pad (negative values crop), convolve with the 2-D FIR ``kernel`` (a true
    convolution: the kernel is flipped), keep every ``down``-th sample. ``up``/``down`` are ints or (x, y);
    ``pad`` is (p0, p1) for both axes or (x0, x1, y0, y1). Each channel is filtered on its own, as a batch
    of one-channel images (the form of rosinality's CPU path)."""
    import torch
    import torch.nn.functional as F

    upx, upy = (up, up) if isinstance(up, int) else tuple(up)
    downx, downy = (down, down) if isinstance(down, int) else tuple(down)
    x0, x1, y0, y1 = (*pad, *pad) if len(pad) == 2 else tuple(pad)
    n, c, h, w = input.shape
    x = input.reshape(n * c, 1, h, 1, w, 1)
    if upx > 1 or upy > 1:  # each sample followed by up-1 zeros along each axis
        x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1])
    x = x.reshape(n * c, 1, h * upy, w * upx)
    x = F.pad(x, [x0, x1, y0, y1])
    x = F.conv2d(x, torch.flip(kernel, [0, 1]).to(x.dtype)[None, None])
    x = x[:, :, ::downy, ::downx]
    return x.reshape(n, c, x.shape[2], x.shape[3])


def make_op_module() -> types.ModuleType:
    """The ``op`` package as the official sg2_model imports it (FusedLeakyReLU, fused_leaky_relu,
    upfirdn2d, conv2d_gradfix), in pure PyTorch."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class FusedLeakyReLU(nn.Module):
        """Learned per-channel bias, then leaky ReLU with gain (parameter ``bias``, as in the checkpoints)."""

        def __init__(self, channel: int, bias: bool = True, negative_slope: float = 0.2, scale: float = 2 ** 0.5):
            super().__init__()
            self.bias = nn.Parameter(torch.zeros(channel)) if bias else None
            self.negative_slope = negative_slope
            self.scale = scale

        def forward(self, input):
            return fused_leaky_relu(input, self.bias, self.negative_slope, self.scale)

    gradfix = types.ModuleType("op.conv2d_gradfix")
    gradfix.enabled = True
    gradfix.weight_gradients_disabled = False
    gradfix.no_weight_gradients = contextlib.nullcontext  # only a training-speed trick of the discriminator
    gradfix.conv2d = F.conv2d
    gradfix.conv_transpose2d = F.conv_transpose2d

    op = types.ModuleType("op")
    op.__path__ = []  # a package, so that `import op.conv2d_gradfix` resolves through sys.modules
    op.FusedLeakyReLU = FusedLeakyReLU
    op.fused_leaky_relu = fused_leaky_relu
    op.upfirdn2d = upfirdn2d
    op.conv2d_gradfix = gradfix
    return op


# --------------------------------------------------------------------------------------------------------
# Random-weight OpenAI CLIP models behind clip.load.
# --------------------------------------------------------------------------------------------------------

def import_clip() -> types.ModuleType:
    try:
        import clip
        import clip.model
    except ImportError as e:
        raise SystemExit(f"OpenAI's clip package is needed ({e}): git clone https://github.com/openai/CLIP "
                         "/work/official/CLIP && .venv/bin/pip install --no-deps /work/official/CLIP") from None
    return clip


def random_clip_state(name: str) -> dict:
    """A state dict of the named OpenAI CLIP architecture with clip.model.CLIP's own random initialisation
    (seeded by the name), in fp16 as OpenAI's checkpoints are."""
    import torch

    if name not in CLIP_ARCHS:
        raise SystemExit(f"no random CLIP recipe for {name!r}; known: {sorted(CLIP_ARCHS)}")
    clip = import_clip()
    with torch.random.fork_rng():
        torch.manual_seed(zlib.crc32(name.encode()))
        model = clip.model.CLIP(**CLIP_ARCHS[name], **CLIP_TEXT)
    return {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}


def patch_clip_load() -> None:
    """Make ``clip.load(name, device)`` build ``name``'s architecture from a random state dict instead of
    downloading OpenAI's weights: what clip's own ``load`` does with a state dict (``build_model``, move,
    ``.float()`` on CPU, the preprocessing for the model's resolution), with nothing read from disk."""
    clip = import_clip()

    def load(name: str, device: Any = "cpu", jit: bool = False, download_root: str | None = None):
        model = clip.model.build_model(random_clip_state(name)).to(device)
        if str(device) == "cpu":
            model.float()
        return model, clip.clip._transform(model.visual.input_resolution)

    clip.load = load
    clip.clip.load = load


# --------------------------------------------------------------------------------------------------------
# The official step.
# --------------------------------------------------------------------------------------------------------

def official_root(path: str | Path) -> Path:
    """The checkout's root (the folder holding ZSSGAN/); the ZSSGAN folder itself is accepted too."""
    p = Path(path).expanduser().resolve()
    if (p / "model" / "ZSSGAN.py").is_file():
        p = p.parent
    if not (p / "ZSSGAN" / "model" / "ZSSGAN.py").is_file():
        raise SystemExit(f"{path}: not a checkout of rinongal/StyleGAN-nada (no ZSSGAN/model/ZSSGAN.py)")
    return p


def import_official(root: Path) -> types.ModuleType:
    """Install the stand-ins, then import the official ZSSGAN module from ``root``."""
    sys.modules["op"] = op = make_op_module()
    sys.modules["op.conv2d_gradfix"] = op.conv2d_gradfix
    patch_clip_load()
    sys.path.insert(0, str(root))  # `ZSSGAN.model...`, `ZSSGAN.criteria...` (as train.py's sys.path hack)
    sys.path.append(str(root / "ZSSGAN"))  # `dnnlib`, `torch_utils` (imported by ZSSGAN/legacy.py)
    import ZSSGAN.model.ZSSGAN as zssgan

    return zssgan


def official_args(gen: Path, res: int, layers: str, k: int, w_batch: int) -> argparse.Namespace:
    """What ZSSGAN and train.py read from TrainOptions, set as train.py's command line would set them
    (options/train_options.py imports cv2, so its parser is not used)."""
    adaptive = layers == "adaptive"
    return argparse.Namespace(
        frozen_gen_ckpt=str(gen), train_gen_ckpt=str(gen), size=res, sg3=False, sgxl=False, phase=None,
        lambda_direction=1.0, lambda_patch=0.0, lambda_global=0.0, lambda_manifold=0.0, lambda_texture=0.0,
        source_class=SOURCE, target_class=TARGET, clip_models=["ViT-B/32"], clip_model_weights=[1.0],
        auto_layer_iters=1 if adaptive else 0, auto_layer_k=k if adaptive else 0, auto_layer_batch=w_batch,
        target_img_list=None, batch=BATCH, lr=0.002, g_reg_every=4, mixing=0.0)


def measure_official(root: Path, gen: Path, res: int, layers: str, k: int, steps: int,
                     warmup: int, keep_freed: bool) -> dict:
    import numpy as np
    import torch

    from stylenada.utils.runtime import keep_freed_memory

    keep_freed = keep_freed and keep_freed_memory()
    zssgan = import_official(root)
    from ZSSGAN.utils.training_utils import mixing_noise

    # ZSSGAN pins everything to 'cuda:0': its own `self.device`, and SG2Generator's default argument.
    init = zssgan.SG2Generator.__init__
    init.__defaults__ = tuple("cpu" if d == "cuda:0" else d for d in init.__defaults__)

    class CpuZSSGAN(zssgan.ZSSGAN):
        device = property(lambda self: "cpu", lambda self, value: None)  # ZSSGAN.__init__ assigns 'cuda:0'

    args = official_args(gen, res, layers, k, w_batch=8)
    net = CpuZSSGAN(args)
    g_reg_ratio = args.g_reg_every / (args.g_reg_every + 1)  # as train.py
    g_optim = torch.optim.Adam(net.generator_trainable.parameters(), lr=args.lr * g_reg_ratio,
                               betas=(0 ** g_reg_ratio, 0.99 ** g_reg_ratio))
    torch.manual_seed(2)
    np.random.seed(2)

    def step() -> float:  # the body of train.py's loop, less its logging and sampling
        net.train()
        sample_z = mixing_noise(args.batch, 512, args.mixing, "cpu")
        _, loss = net(sample_z)
        net.zero_grad()
        loss.backward()
        g_optim.step()
        return float(loss)

    return timed(step, steps, warmup) | {
        "side": "official", "layers": layers, "k": k if layers == "adaptive" else None,
        "interval": 1 if layers == "adaptive" else None, "w_batch": 8, "keep_freed_memory": keep_freed,
        "trained_params": sum(p.numel() for p in net.generator_trainable.parameters() if p.requires_grad)}


def timed(step: Callable[[], float], steps: int, warmup: int) -> dict:
    """Warm-up steps, then ``steps`` timed ones: the median and all times, and peak RSS (and its growth over
    the set-up) in MiB."""
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(warmup):
        step()
    times, losses = [], []
    for _ in range(steps):
        t = time.perf_counter()
        losses.append(step())
        times.append(time.perf_counter() - t)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds_per_step": statistics.median(times), "seconds_min": min(times), "seconds_all": times,
            "losses": losses, "peak_mem_mb": peak / 1024, "peak_mem_growth_mb": (peak - base) / 1024}


# --------------------------------------------------------------------------------------------------------
# Our step: benchmarks/train_step.py.
# --------------------------------------------------------------------------------------------------------

def measure_ours(res: int, layers: str, k: int | None, interval: int, steps: int, warmup: int) -> dict:
    from stylenada.utils.runtime import set_allocator

    sys.path.insert(0, str(HERE))
    import train_step

    keep_freed = set_allocator(release_memory=False)  # as train_step.py's main and `stylenada train` do on CPU
    r = train_step.measure(res, layers, "fp32", steps, k, "cpu", warmup, family="stylegan2", interval=interval,
                           chunk=2, keep_freed=keep_freed)
    return r | {"side": "ours", "w_batch": 8}


# --------------------------------------------------------------------------------------------------------
# Driver.
# --------------------------------------------------------------------------------------------------------

def write_generator(res: int, cache: Path) -> Path:
    """The random generator train_step.py builds (seed 0), as a rosinality .pt for the official side."""
    import torch

    from stylenada.formats import save_generator

    sys.path.insert(0, str(HERE))
    from generator import random_generator

    torch.manual_seed(0)
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"g-{res}.pt"
    path.unlink(missing_ok=True)
    return save_generator(random_generator("stylegan2", res), path)


def plan(args: argparse.Namespace, num_ws: int) -> Iterator[dict]:
    """The configurations to time, each a worker spec."""
    k_off = args.k_official or num_ws
    common = {"res": args.res, "warmup": args.warmup, "threads": args.threads}
    for case in args.cases:
        if "official" in args.sides:
            yield common | {"side": "official", "layers": case, "k": k_off, "steps": args.steps,
                            "keep_freed": args.official_keep_freed}
        if "ours" not in args.sides:
            continue
        if case == "all":
            yield common | {"side": "ours", "layers": "all", "k": None, "interval": 1, "steps": args.steps}
            continue
        for k in args.k_ours or [num_ws - 1, num_ws]:
            for interval in args.intervals if k < num_ws else [1]:  # k = num_ws: never selects
                steps = math.ceil(args.steps / interval) * interval  # whole re-selection intervals
                yield common | {"side": "ours", "layers": "adaptive", "k": k, "interval": interval, "steps": steps}


def run_worker(spec: dict) -> dict:
    import torch

    torch.set_num_threads(spec["threads"])
    if spec["side"] == "official":
        r = measure_official(Path(spec["official"]), Path(spec["generator"]), spec["res"],
                             spec["layers"], spec["k"], spec["steps"], spec["warmup"], spec["keep_freed"])
    else:
        r = measure_ours(spec["res"], spec["layers"], spec["k"], spec["interval"], spec["steps"], spec["warmup"])
    return r | {"threads": torch.get_num_threads(), "steps": spec["steps"], "warmup": spec["warmup"]}


def label(r: dict) -> str:
    if r["layers"] == "all":
        return "all layers"
    if r["side"] == "ours" and r["k"] >= r["num_ws"]:
        return f"adaptive k={r['k']} (no selection)"
    return f"adaptive k={r['k']} every {r['interval']}"


def compare(rows: list[dict]) -> list[dict]:
    """Each official row against each of our rows of the same case: official / ours."""
    out = []
    for off in (r for r in rows if r["side"] == "official"):
        for ours in (r for r in rows if r["side"] == "ours" and r["layers"] == off["layers"]):
            out.append({"case": off["layers"], "official": label(off), "ours": label(ours),
                        "official_s": off["seconds_per_step"], "ours_s": ours["seconds_per_step"],
                        "speedup": off["seconds_per_step"] / ours["seconds_per_step"],
                        "official_peak_mb": off["peak_mem_mb"], "ours_peak_mb": ours["peak_mem_mb"]})
    return out


def official_commit(root: Path) -> str | None:
    proc = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 and (root / ".git").exists() else None


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--official", help="checkout of rinongal/StyleGAN-nada (its root, or its ZSSGAN folder)")
    ap.add_argument("--res", type=int, default=256)
    ap.add_argument("--steps", type=int, default=3, help="timed steps (ours with interval > 1: rounded up to "
                    "whole intervals)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps first (at least 1 for real figures: the "
                    "first step also encodes the text directions, with 79 templates on the official side)")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads in every measurement")
    ap.add_argument("--cases", nargs="+", choices=["all", "adaptive"], default=["all", "adaptive"])
    ap.add_argument("--sides", nargs="+", choices=["official", "ours"], default=["official", "ours"])
    ap.add_argument("--k-official", type=int, default=None, help="official auto_layer_k (default: W+ size, "
                    "14 at 256 px)")
    ap.add_argument("--k-ours", type=int, nargs="+", default=None, help="our k (default: W+ size - 1 and W+ size)")
    ap.add_argument("--intervals", type=int, nargs="+", default=[1, 4], help="our re-selection intervals")
    ap.add_argument("--official-keep-freed", action="store_true",
                    help="give the official process our malloc tuning too (keep_freed_memory; off: as shipped)")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                    help="folder for the official side's random generator .pt (outside the repo)")
    ap.add_argument("--out", type=Path, default=None,
                    help="results file (default: benchmarks/results/official_step-cpu-fp32-<res>.json)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one configuration, as a JSON spec
    args = ap.parse_args(argv)

    if args.worker:
        print(json.dumps(run_worker(json.loads(args.worker))))
        return
    if "official" in args.sides and not args.official:
        ap.error("--official DIR is needed (or --sides ours)")
    import torch

    from stylenada.utils.runtime import cpu_description

    num_ws = 2 * int(math.log2(args.res)) - 2
    root = official_root(args.official) if "official" in args.sides else None
    shared: dict[str, Any] = {}
    clip = None
    if root is not None:
        clip = import_clip()  # fail early if OpenAI's package is missing
        shared = {"official": str(root), "generator": str(write_generator(args.res, args.cache))}

    rows = []
    print(f"{'side':>8} {'case':>34} {'s/step':>8} {'peak MB':>8}", flush=True)
    for spec in plan(args, num_ws):
        proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec | shared)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"measurement failed: {spec}")
        r = json.loads(proc.stdout.splitlines()[-1]) | {"num_ws": num_ws}
        rows.append(r)
        print(f"{r['side']:>8} {label(r):>34} {r['seconds_per_step']:>8.2f} {r['peak_mem_mb']:>8.0f}", flush=True)

    table = compare(rows)
    if table:
        print(f"\n{'case':>9} {'official':>24} {'s/step':>8} {'ours':>30} {'s/step':>8} {'speed-up':>9}")
        for c in table:
            print(f"{c['case']:>9} {c['official']:>24} {c['official_s']:>8.2f} {c['ours']:>30} {c['ours_s']:>8.2f} "
                  f"{c['speedup']:>8.2f}x")
    meta = {"torch": torch.__version__, "threads": args.threads, "machine": platform.machine(), **cpu_description(),
            "command": " ".join(["benchmarks/official_step.py", *(argv if argv is not None else sys.argv[1:])]),
            "official_dir": str(root) if root else None, "official_commit": official_commit(root) if root else None,
            "clip_package": getattr(clip, "__file__", None),
            "settings": {"resolution": args.res, "batch": BATCH, "precision": "fp32", "clip": "ViT-B/32 (random)",
                         "loss": "directional only", "source": SOURCE, "target": TARGET, "w_batch": 8, "w_steps": 1},
            "notes": ["official: rosinality CUDA ops replaced by pure-PyTorch equivalents, clip.load given random "
                      "weights, 'cuda:0' redirected to 'cpu'; the CLIP models run in fp32 (on CUDA clip.load "
                      "keeps them in fp16), and the unused RN50 is loaded as the official CLIPLoss always does",
                      "official 'all' (auto_layer_iters 0, phase None) trains const + modulated convs; ours 'all' "
                      "trains ToRGB too",
                      "official steps: median; ours: train_step.measure (mean over whole intervals when > 1)"]}
    out = args.out or RESULTS / f"official_step-cpu-fp32-{args.res}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "rows": rows, "comparison": table}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
