"""Checkpoint fuzzer: mutate valid files of the three formats (StyleGAN2 and StyleGAN3 generators) and classify
what loading each one does.

Every mutant must either load (and then render finite images) or be refused with one ``CheckpointError``
line (< 300 characters) that names the file. Anything else - another exception type, a message of several
lines or without the file's name, a non-finite render, a slow load - is a finding. Seeded: the same
``--seed`` and ``--n`` give the same files.

    .venv/bin/python benchmarks/fuzz_checkpoints.py --n 1200          # the full run (about 2 CPU minutes)
    .venv/bin/python benchmarks/fuzz_checkpoints.py --n 300 --seed 1  # another sample

Mutations: truncation, byte flips (header and data), metadata values (wrong types, out of range, NaN,
huge, missing, unknown keys, nested too deep), tensor names, shapes, dtypes and NaN/inf values,
non-tensor entries, crafted pickles (foreign globals, deep nesting, absurd declared sizes), foreign files.
Results (counts per class and format, the slowest file, the peak memory) go to
``benchmarks/results/fuzz_checkpoints.json``.
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import math
import pickle
import random
import resource
import struct
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "data" / "golden"
BAD_VALUES = ["x", -1, 0, 3, 10**7, 2**40, 1.5, float("nan"), float("inf"), None, [], {}, True, [1e300],
              [0, 0], "1,3,3,1", [[1, 3], [3, 1]], -0.5, 1e-300]


def _tiny_native(family: str = "stylegan2") -> bytes:
    from stylenada.formats import save_generator
    from stylenada.models import stylegan2, stylegan3

    torch.manual_seed(0)
    if family == "stylegan3":
        G = stylegan3.Generator(stylegan3.StyleGAN3Config(resolution=16, z_dim=8, w_dim=8, channel_base=64,
                                                          channel_max=8, num_layers=4, num_critical=1))
    else:
        G = stylegan2.Generator(stylegan2.GeneratorConfig(resolution=8, z_dim=8, w_dim=8, mapping_layers=2,
                                                          channel_base=64, channel_max=8))
    buf = Path(_tmp()) / f"seed-{family}.safetensors"
    save_generator(G, buf)
    return buf.read_bytes()


_TMP: list[str] = []


def _tmp() -> str:
    if not _TMP:
        import tempfile

        _TMP.append(tempfile.mkdtemp(prefix="fuzz-seed-"))
    return _TMP[0]


def _split_safetensors(data: bytes) -> tuple[dict, bytes]:
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + n]), data[8 + n:]


def _join_safetensors(header: dict, body: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + body


def _bytes_mutants(rng: random.Random, data: bytes) -> Iterator[tuple[str, bytes]]:
    cut = rng.randrange(1, len(data))
    yield f"truncated at {cut}", data[:cut]
    flipped = bytearray(data)
    for _ in range(rng.choice([1, 4, 32])):
        i = rng.randrange(min(len(data), 4096) if rng.random() < 0.5 else len(data))
        flipped[i] ^= 1 << rng.randrange(8)
    yield "bytes flipped", bytes(flipped)


def native_mutants(rng: random.Random, data: bytes) -> Iterator[tuple[str, bytes]]:
    yield from _bytes_mutants(rng, data)
    header, body = _split_safetensors(data)
    meta = json.loads(header["__metadata__"]["stylenada"])
    kind = rng.randrange(9)
    if kind == 0:  # a config value
        cfg = dict(meta["config"])
        field = rng.choice(sorted(cfg))
        cfg[field] = rng.choice(BAD_VALUES)
        yield f"config {field}={cfg[field]!r}", _with_meta(header, body, {**meta, "config": cfg})
    elif kind == 1:  # a missing or unknown key, a non-dict config
        cfg = dict(meta["config"])
        cfg.pop(rng.choice(sorted(cfg)))
        yield "config key missing", _with_meta(header, body, {**meta, "config": cfg})
        yield "config unknown key", _with_meta(header, body, {**meta, "config": {**meta["config"], "zz": 1}})
        yield "config a list", _with_meta(header, body, {**meta, "config": [1, 2]})
    elif kind == 2:  # top-level metadata
        field = rng.choice(["kind", "version", "family", "sha256"])
        yield f"meta {field} bad", _with_meta(header, body, {**meta, field: rng.choice(BAD_VALUES)})
    elif kind == 3:  # metadata that is not JSON, or nested too deep, or not an object
        bad = rng.choice(["{not json", "[" * 3000 + "]" * 3000, "[1, 2]", "", "null", "\"x\""])
        h = {**header, "__metadata__": {"stylenada": bad}}
        yield "metadata text bad", _join_safetensors(h, body)
        yield "metadata not an object", _join_safetensors({**header, "__metadata__": ["x"]}, body)
    elif kind == 4:  # a tensor's dtype or shape
        name = rng.choice([k for k in header if k != "__metadata__"])
        entry = dict(header[name])
        if rng.random() < 0.5:
            entry["dtype"] = rng.choice(["I32", "BOOL", "U8", "F16", "I64", "F64", "XX", "F8_E4M3"])
        else:
            entry["shape"] = rng.choice([[], [0], [0, 0], [10**12], list(reversed(entry["shape"])), [-1]])
        yield f"tensor {name} entry {entry}", _join_safetensors({**header, name: entry}, body)
    elif kind == 5:  # a tensor renamed or dropped (offsets kept), the checksum recomputed or not
        name = rng.choice([k for k in header if k != "__metadata__"])
        h = dict(header)
        entry = h.pop(name)
        if rng.random() < 0.5:
            h[name + ".x"] = entry
        yield f"tensor {name} renamed/dropped", _join_safetensors(h, body)
    elif kind == 6:  # NaN / inf in a float tensor's bytes, checksum recomputed (so only the check on values
        # can refuse it)
        name = rng.choice([k for k in header if k != "__metadata__" and header[k]["dtype"] == "F32"])
        lo, hi = header[name]["data_offsets"]
        if hi > lo:
            b = bytearray(body)
            b[lo:lo + 4] = struct.pack("<f", rng.choice([math.nan, math.inf]))
            from safetensors.torch import load as st_load

            tensors = st_load(_join_safetensors(header, bytes(b)))
            from stylenada.formats.native import tensors_digest

            yield f"tensor {name} NaN", _with_meta(header, bytes(b), {**meta, "sha256": tensors_digest(tensors)})
    elif kind == 7:  # no checksum: a flipped data byte then loads unless the values are refused
        b = bytearray(body)
        b[rng.randrange(len(b))] ^= 0xFF
        yield "data byte flipped, no checksum", _with_meta(header, bytes(b), {k: v for k, v in meta.items()
                                                                              if k != "sha256"})
    else:  # header length lies
        yield "header length huge", struct.pack("<Q", 2**62) + data[8:]
        yield "header length short", struct.pack("<Q", 10) + data[8:]


def _with_meta(header: dict, body: bytes, meta: dict) -> bytes:
    return _join_safetensors({**header, "__metadata__": {"stylenada": json.dumps(meta)}}, body)


def _torch_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def rosinality_mutants(rng: random.Random, data: bytes) -> Iterator[tuple[str, bytes]]:
    yield from _bytes_mutants(rng, data)
    ckpt = torch.load(io.BytesIO(data), weights_only=True)
    g = dict(ckpt["g_ema"])
    name = rng.choice(sorted(g))
    kind = rng.randrange(8)
    if kind == 0:
        g.pop(name)
        what = f"{name} dropped"
    elif kind == 1:
        t = g[name]
        g[name] = rng.choice([torch.zeros(0, 0), torch.zeros(3), t.reshape(-1), torch.zeros(*t.shape, 2),
                              torch.zeros(2, 2)])
        what = f"{name} shape {tuple(g[name].shape)}"
    elif kind == 2:
        g[name] = rng.choice(["x", 3, None, [1.0, 2.0], {"a": torch.zeros(1)}])
        what = f"{name} not a tensor"
    elif kind == 3:
        g[name] = g[name].to(rng.choice([torch.int32, torch.bool, torch.uint8, torch.float16, torch.float64]))
        what = f"{name} dtype {g[name].dtype}"
    elif kind == 4:
        g[name] = g[name].clone().reshape(-1)
        g[name] = torch.full_like(g[name], rng.choice([math.nan, math.inf])).reshape(ckpt["g_ema"][name].shape)
        what = f"{name} NaN"
    elif kind == 5:
        g[rng.choice([1, 2.5, ("a",)])] = torch.zeros(1)
        what = "non-string key"
    elif kind == 6:
        if rng.random() < 0.5 and g[name].dim() >= 1:
            g[name] = g[name].to_sparse()
            what = f"{name} sparse"
        else:
            g[name] = torch.empty(g[name].shape, device="meta")
            what = f"{name} on the meta device"
    else:
        ckpt = {**ckpt, "latent_avg": rng.choice(["x", 3, torch.zeros(5), torch.zeros(2, 2), None])}
        what = "latent_avg bad"
    yield what, _torch_bytes({**ckpt, "g_ema": g})


def nvidia_mutants(rng: random.Random, data: bytes) -> Iterator[tuple[str, bytes]]:
    yield from _bytes_mutants(rng, data)
    kind = rng.randrange(5)
    if kind == 0:  # a foreign global
        yield "foreign global", b"\x80\x04\x95\x15\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x8c\x06system\x93)R."
    elif kind == 1:  # deep nesting
        depth = rng.choice([1500, 20000])
        yield f"nested {depth}", b"\x80\x04" + b"]" * depth + b"." if rng.random() < 0.5 else \
            b"\x80\x04" + b"(" * depth + b"t" * depth + b"."
    elif kind == 2:  # absurd declared sizes
        yield "huge BINBYTES8", b"\x80\x04\x8e" + struct.pack("<Q", 2**56) + b"abc"
        yield "huge BINUNICODE8", b"\x80\x04\x8d" + struct.pack("<Q", 2**50) + b"abc"
    elif kind == 3:  # tiny or empty pickles
        yield "two bytes", b"\x80\x04"
        yield "a plain int", pickle.dumps(3, protocol=4)
        yield "a dict without G_ema", pickle.dumps({"x": 1}, protocol=4)
    else:  # a constructor argument or tensor name changed in the bytes (the last three are StyleGAN3's)
        for old, new in [(b"img_resolution", b"img_resolutioZ"), (b"w_dim", b"w_dix"), (b"G_ema", b"G_emx"),
                         (b"magnitude_ema", b"magnitude_emx"), (b"channel_base", b"channel_basx"),
                         (b"L3_36_", b"L3_37_")]:
            if old in data:
                yield f"{old.decode()} renamed", data.replace(old, new, 1)


def foreign_mutants(rng: random.Random) -> Iterator[tuple[str, str, bytes]]:
    yield "random bytes", ".pt", bytes(rng.randrange(256) for _ in range(rng.randrange(1, 2000)))
    yield "json", ".safetensors", b'{"a": 1}'
    yield "png", ".pkl", b"\x89PNG\r\n\x1a\n" + bytes(100)
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", b"\0" * (50 << 20))  # 50 MB of zeros in ~50 KB
    yield "zip bomb", ".pt", zbuf.getvalue()
    yield "a .pt named .safetensors", ".safetensors", _torch_bytes({"g_ema": {"a": torch.zeros(1)}})


def mutants(seed: int, n: int, out: Path) -> Iterator[tuple[str, str, Path]]:
    """``n`` mutated files (about a third per format, plus foreign files), written to ``out``:
    (format, description, path)."""
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    # Native and NVIDIA files are StyleGAN2's or StyleGAN3's, at random; rosinality's format is StyleGAN2's only.
    seeds = {"native": [(_tiny_native(), ".safetensors", native_mutants),
                        (_tiny_native("stylegan3"), ".safetensors", native_mutants)],
             "rosinality": [((GOLDEN / "rosinality_tiny.pt").read_bytes(), ".pt", rosinality_mutants)],
             "nvidia": [((GOLDEN / "nvidia_tiny_proto3.pkl").read_bytes(), ".pkl", nvidia_mutants),
                        ((GOLDEN / "sg3r_tiny16.pkl").read_bytes(), ".pkl", nvidia_mutants)]}
    i = 0
    while i < n:
        fmt = "foreign" if rng.random() < 0.05 else rng.choice(list(seeds))
        if fmt == "foreign":
            items = [(what, suffix, b) for what, suffix, b in foreign_mutants(rng)]
        else:
            data, suffix, gen = rng.choice(seeds[fmt])
            items = [(what, suffix, b) for what, b in gen(rng, data)]
        for what, suffix, b in items:
            path = out / f"m{i:05d}{suffix}"
            path.write_bytes(b)
            yield fmt, what, path
            i += 1
            if i >= n:
                return


def classify(path: Path, load: Callable) -> tuple[str, str]:
    """('loaded' | 'refused' | finding class, message)."""
    from stylenada.errors import CheckpointError

    try:
        G = load(path)
    except CheckpointError as e:
        msg = str(e)
        if "\n" in msg or len(msg) >= 300:
            return "bad message (lines/length)", msg[:300]
        if str(path) not in msg:
            return "bad message (no file name)", msg[:300]
        return "refused", msg
    except BaseException as e:  # noqa: BLE001 - a finding, recorded
        if isinstance(e, KeyboardInterrupt):
            raise
        return f"foreign {type(e).__name__}", str(e)[:300]
    with torch.no_grad():
        img = G(torch.randn(2, G.cfg.z_dim, generator=torch.Generator().manual_seed(0)))
    if not torch.isfinite(img).all():
        return "loaded, renders non-finite", ""
    return "loaded", ""


def run(seed: int, n: int, out: Path) -> dict:
    from stylenada import load_generator

    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    findings, slowest, peak_rise = [], (0.0, ""), (0.0, "")
    for fmt, what, path in mutants(seed, n, out):
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.perf_counter()
        cls, msg = classify(path, load_generator)
        dt = time.perf_counter() - t0
        rise = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
        slowest = max(slowest, (dt, f"{fmt}: {what}"))
        peak_rise = max(peak_rise, (rise, f"{fmt}: {what}"))
        counts[fmt][cls] += 1
        if cls not in ("loaded", "refused"):
            findings.append({"format": fmt, "mutation": what, "class": cls, "message": msg, "file": path.name})
        if dt > 5:
            findings.append({"format": fmt, "mutation": what, "class": "slow (> 5 s)", "seconds": dt})
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seed": seed, "n": n, "counts": {k: dict(v) for k, v in counts.items()}, "findings": findings,
            "slowest_seconds": slowest[0], "slowest": slowest[1], "peak_rss_mb": peak_mb,
            "largest_peak_rise_mb": peak_rise[0], "largest_peak_rise": peak_rise[1]}


def main(argv: list[str] | None = None) -> None:
    import tempfile

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "fuzz_checkpoints.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    import logging

    logging.disable(logging.WARNING)  # files without w_avg log a warning each
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        res = run(args.seed, args.n, Path(tmp))
    res["seconds"] = time.perf_counter() - t0
    for fmt, c in sorted(res["counts"].items()):
        print(f"{fmt:11s} " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())))
    print(f"findings {len(res['findings'])}; slowest {res['slowest_seconds']:.2f} s ({res['slowest']}); "
          f"peak memory {res['peak_rss_mb']:.0f} MB (largest rise of the peak {res['largest_peak_rise_mb']:.0f} MB: "
          f"{res['largest_peak_rise']}); {res['seconds']:.0f} s in all")
    for f in res["findings"][:40]:
        print("  ", json.dumps(f)[:300])
    Path(args.results).write_text(json.dumps(res, indent=1) + "\n")
    sys.exit(1 if res["findings"] else 0)


if __name__ == "__main__":
    main()
