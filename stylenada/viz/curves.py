"""Training curves of a run, from its ``metrics.jsonl``: losses, lambdas, source text, trained layers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ..errors import StylenadaError


def load_records(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        raise StylenadaError(f"{run_dir} is not a run folder (no metrics.jsonl): pass the --out folder of a run")
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _save(fig: Figure, out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    return out


def _note(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([]), ax.set_yticks([])


def plot_losses(records: list[dict], out: str | Path) -> Path:
    """Every ``loss/*`` term per step, and the directional agreement ``1 - loss/clip`` beside it."""
    fig = Figure(figsize=(10, 3.4))
    ax, ax2 = fig.subplots(1, 2)
    steps = [r["step"] for r in records]
    for key in sorted({k for r in records for k in r if k.startswith("loss/")}):
        values = np.array([r.get(key, np.nan) for r in records], dtype=float)
        ax.plot(steps, values, label=key[5:])
    if all(r.get(k, 1) > 0 for r in records for k in r if k.startswith("loss/")):
        ax.set_yscale("log")
    ax.set_xlabel("step"), ax.set_title("loss terms"), ax.legend(fontsize=8)
    ax2.plot(steps, [1 - r["loss/clip"] for r in records], color="C2")
    ax2.set_xlabel("step"), ax2.set_title("cos(image change, text direction)")
    return _save(fig, out)


def plot_lambdas(records: list[dict], out: str | Path) -> Path:
    """The loss weights per step (they move only with learned or constrained weighting)."""
    fig = Figure(figsize=(5, 3.4))
    ax = fig.subplots()
    keys = sorted({k for r in records for k in r if k.startswith("lambda/")})
    steps = [r["step"] for r in records]
    for key in keys:
        ax.plot(steps, [r.get(key, np.nan) for r in records], label=key[7:])
    if keys:
        ax.legend(fontsize=8)
        moving = any(len({round(r.get(k, 0), 9) for r in records}) > 1 for k in keys)
        ax.set_title("loss weights" + ("" if moving else " (fixed)"))
        ax.set_xlabel("step")
    else:
        _note(ax, "no loss weights logged")
    return _save(fig, out)


def plot_source_text(records: list[dict], out: str | Path) -> Path:
    """Which source text was in use at each step (dynamic source text re-captions as training goes)."""
    texts = [r.get("source_text", "") for r in records]
    names = list(dict.fromkeys(texts))
    fig = Figure(figsize=(8, 0.9 + 0.35 * len(names)))
    ax = fig.subplots()
    ax.scatter([r["step"] for r in records], [names.index(t) for t in texts], s=8, marker="s")
    ax.set_yticks(range(len(names)), [repr(n) for n in names], fontsize=8)
    ax.set_ylim(-0.7, len(names) - 0.3)
    ax.set_xlabel("step"), ax.set_title("source text")
    return _save(fig, out)


def layer_matrix(records: list[dict], layer_names: list[str]) -> tuple[np.ndarray, list[int]] | None:
    """[layers, steps] share of each layer's parameters trained at each step; None without selections.

    A selection holds until the next one, as in training.
    """
    if not any("selection" in r for r in records):
        return None
    index = {n: i for i, n in enumerate(layer_names)}
    steps = [r["step"] for r in records]
    mat = np.zeros((len(layer_names), len(steps)))
    current = np.zeros(len(layer_names))
    for j, r in enumerate(records):
        sel = r.get("selection")
        if sel is not None:
            current = np.zeros(len(layer_names))
            fraction = sel.get("fraction") or {}
            for name in sel["layers"]:
                if name in index:
                    current[index[name]] = fraction.get(name, 1.0)
        mat[:, j] = current
    return mat, steps


def plot_layer_heatmap(records: list[dict], layer_names: list[str], out: str | Path) -> Path:
    """Rows: synthesis layers in generator order; columns: steps; colour: share of parameters trained."""
    got = layer_matrix(records, layer_names)
    fig = Figure(figsize=(9, 1.2 + 0.22 * len(layer_names)))
    ax = fig.subplots()
    if got is None:
        _note(ax, "no layer selection logged: every layer trained at every step")
    else:
        mat, steps = got
        im = ax.imshow(mat, aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest",
                       extent=(steps[0] - 0.5, steps[-1] + 0.5, len(layer_names) - 0.5, -0.5))
        ax.set_yticks(range(len(layer_names)), layer_names, fontsize=7)
        ax.set_xlabel("step")
        fig.colorbar(im, ax=ax, label="share trained")
    ax.set_title("trained layers per step")
    return _save(fig, out)


def synthesis_layer_names(G) -> list[str]:
    """Layer names in generator order, as selections name them."""
    return [name for group in G.synthesis.layers_by_w() for name, _ in group]


def plot_training_curves(run_dir: str | Path, out_dir: str | Path, layer_names: list[str] | None = None
                         ) -> dict[str, Path]:
    """All curves of a run into ``out_dir``; returns {name: path}."""
    records = load_records(run_dir)
    if not records:
        raise StylenadaError(f"{run_dir}: metrics.jsonl is empty (the run has not taken a step yet)")
    out_dir = Path(out_dir)
    if layer_names is None:
        seen = [n for r in records for n in r.get("selection", {}).get("layers", [])]
        layer_names = list(dict.fromkeys(seen))
    return {
        "losses": plot_losses(records, out_dir / "losses.png"),
        "lambdas": plot_lambdas(records, out_dir / "lambdas.png"),
        "source_text": plot_source_text(records, out_dir / "source_text.png"),
        "layers": plot_layer_heatmap(records, layer_names, out_dir / "layers.png"),
    }
