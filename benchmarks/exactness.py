"""Max abs differences between stylenada's images and the reference implementations' on the golden networks
(tests/data/golden; its README says how each was made), per truncation and modulated-conv form.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/exactness.py             # every golden generator
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/exactness.py sg3         # those whose name starts so

The tests assert <= 1e-4 (tests/test_golden.py, tests/test_golden_sg3.py); this prints the figures that
docs/exactness.md records.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "data" / "golden"
CHECKPOINTS = [".pkl", ".pt"]


def measure(prefix: str = "") -> list[tuple[str, str, str, float]]:
    """(network, form, image key, max abs diff) for every golden generator whose name starts with ``prefix``."""
    from stylenada.formats import load_generator
    from stylenada.models import ops

    rows = []
    for npz in sorted(GOLDEN.glob(f"{prefix}*.npz")):
        ckpt = next((npz.with_suffix(s) for s in CHECKPOINTS if npz.with_suffix(s).exists()), None)
        ref = np.load(npz)
        if ckpt is None or "img_psi1" not in ref:
            continue
        G = load_generator(ckpt)
        if "latent_avg" in ref:  # a training checkpoint stores no average: the reference used this one
            G.mapping.w_avg.copy_(torch.from_numpy(ref["latent_avg"]))
        z = torch.from_numpy(ref["z"])
        for form in ("scaled", "grouped"):
            ops.MODCONV_FORM["cpu"] = form
            for key in sorted(k for k in ref if k.startswith("img_psi")):
                psi = float("0." + key[8:]) if key != "img_psi1" else 1.0
                with torch.no_grad():
                    out = G(z, truncation_psi=psi, noise_mode="const").numpy()
                rows.append((ckpt.name, form, key, float(np.abs(out - ref[key]).max())))
    return rows


def main() -> None:
    torch.set_num_threads(1)
    prefix = sys.argv[1] if len(sys.argv) > 1 else ""
    for name, form, key, diff in measure(prefix):
        print(f"{name:28s} {form:8s} {key:10s} {diff:.1e}")


if __name__ == "__main__":
    main()
