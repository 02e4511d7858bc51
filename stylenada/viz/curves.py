"""Training curves of a run, from its ``metrics.jsonl``: losses, loss weights, source text, trained layers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ..errors import StylenadaError
from ..utils.io import atomic_write
from ..utils.rundir import RunDir


def load_config(run_dir: str | Path) -> dict:
    """A run's ``config.json``; StylenadaError for a folder that is not a run."""
    run = RunDir.open(run_dir)
    cfg = run.load_config()
    if not isinstance(cfg, dict) or "generator" not in cfg:
        raise StylenadaError(f"{run.config} is not a stylenada run config (it names no generator)")
    return cfg


def load_records(run: str | Path) -> list[dict]:
    """The per-step records of a run folder (or of a ``metrics.jsonl`` path itself)."""
    path = Path(run)
    if path.is_dir() or not path.suffix:
        path = RunDir(path).metrics
    if not path.is_file():
        raise StylenadaError(f"{run} is not a run folder (no metrics.jsonl): pass the --out folder of a "
                             "`stylenada train` or `stylenada demo` run")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def save_figure(fig: Figure, out: str | Path, dpi: int = 110) -> Path:
    """Lay out and write ``fig`` atomically (format from the suffix, PNG by default)."""
    out = Path(out)
    fig.tight_layout()
    atomic_write(out, lambda p: fig.savefig(p, format=out.suffix[1:] or "png", dpi=dpi))
    return out


def _note(ax, text: str) -> None:
    """A grey message in place of a plot (no frame, no ticks)."""
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, transform=ax.transAxes, color="0.35")
    ax.set_xticks([]), ax.set_yticks([]), ax.set_frame_on(False)


def _keys(records: list[dict], prefix: str) -> list[str]:
    return sorted({k for r in records for k in r if k.startswith(prefix)})


def _series(records: list[dict], key: str) -> np.ndarray:
    return np.array([r.get(key, np.nan) for r in records], dtype=float)


def draw_losses(ax, records: list[dict]) -> None:
    """Every ``loss/*`` term per step; log scale when all logged values are positive."""
    steps = [r["step"] for r in records]
    keys = _keys(records, "loss/")
    if not keys:
        return _note(ax, "no losses logged")
    values = {k: _series(records, k) for k in keys}
    for k, v in values.items():
        ax.plot(steps, v, label=k[5:], lw=1.4 if k == "loss/total" else 1.0, ls="--" if k == "loss/total" else "-")
    logged = np.concatenate([v[np.isfinite(v)] for v in values.values()])
    if logged.size and (logged > 0).all():
        ax.set_yscale("log")
    ax.set_xlabel("step"), ax.set_title("loss terms"), ax.legend(fontsize=8)


def draw_cosine(ax, records: list[dict]) -> None:
    """The directional agreement ``1 - loss/clip`` per step."""
    from .directions import cosine_over_training

    steps, cos = cosine_over_training(records)
    if not steps:
        return _note(ax, "no directional CLIP loss logged")
    ax.plot(steps, cos, color="C2")
    ax.set_xlabel("step"), ax.set_title("cos(image change, text direction) = 1 - loss/clip", fontsize=9)


def draw_lambdas(ax, records: list[dict]) -> None:
    """Every ``lambda/*`` per step, or a note with their values when none of them moves."""
    steps = [r["step"] for r in records]
    keys = _keys(records, "lambda/")
    if not keys:
        return _note(ax, "no loss weights logged")
    values = {k: _series(records, k) for k in keys}
    if not lambdas_move(records):
        fixed = ", ".join(f"{k[7:]} = {v[np.isfinite(v)][0]:.4g}" for k, v in values.items() if np.isfinite(v).any())
        _note(ax, f"loss weights fixed for the whole run:\n{fixed}")
        return ax.set_title("loss weights")
    for k, v in values.items():
        ax.plot(steps, v, label=k[7:])
    ax.set_xlabel("step"), ax.set_title("loss weights"), ax.legend(fontsize=8)


def plot_losses(records: list[dict], out: str | Path) -> Path:
    """Loss terms, and the directional agreement beside them."""
    fig = Figure(figsize=(10, 3.4))
    ax1, ax2 = fig.subplots(1, 2)
    draw_losses(ax1, records)
    draw_cosine(ax2, records)
    return save_figure(fig, out)


def lambdas_move(records: list[dict]) -> bool:
    """Whether any ``lambda/*`` takes more than one value over the run."""
    return any(np.unique(v[np.isfinite(v)]).size > 1 for v in (_series(records, k) for k in _keys(records, "lambda/")))


def plot_lambdas(records: list[dict], out: str | Path) -> Path:
    """The loss weights per step (they move only with learned or constrained weighting); a short note if not."""
    fig = Figure(figsize=(6, 3.2) if lambdas_move(records) else (6, 1.2))
    draw_lambdas(fig.subplots(), records)
    return save_figure(fig, out)


def plot_overview(records: list[dict], out: str | Path) -> Path:
    """Losses, loss weights and directional agreement in one row (the demo's ``curves.png``)."""
    fig = Figure(figsize=(13, 3.4))
    for ax, draw in zip(fig.subplots(1, 3), (draw_losses, draw_lambdas, draw_cosine), strict=True):
        draw(ax, records)
    return save_figure(fig, out)


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def plot_source_text(records: list[dict], out: str | Path) -> Path:
    """Step against the source text in use, as a categorical timeline; re-captioning steps are circled."""
    texts = [r.get("source_text", "") for r in records]
    names = list(dict.fromkeys(texts))
    steps = [r["step"] for r in records]
    fig = Figure(figsize=(9, 1.3 + 0.32 * len(names)))
    ax = fig.subplots()
    if not records:
        _note(ax, "no steps logged")
    else:
        y = [names.index(t) for t in texts]
        ax.step(steps, y, where="post", color="C0", lw=1.2)
        chosen = [(r["step"], names.index(r["source"])) for r in records if r.get("source") in names]
        if chosen:
            ax.scatter(*zip(*chosen, strict=True), s=36, facecolors="none", edgecolors="C3", zorder=3,
                       label="re-captioned")
            ax.legend(fontsize=8, loc="best")
        ax.set_yticks(range(len(names)), [_short(n) for n in names], fontsize=8)
        ax.set_ylim(-0.6, len(names) - 0.4)
        ax.set_xlabel("step")
    ax.set_title("source text per step")
    return save_figure(fig, out)


def layer_matrix(records: list[dict], layer_names: list[str]) -> tuple[np.ndarray, list[int]] | None:
    """[layers, steps] share of each layer's parameters trained per step; None if nothing logged a selection.

    A selection holds from its step until the next one (as in training); a listed layer without a
    ``fraction`` entry counts as fully trained.
    """
    if not any("selection" in r for r in records):
        return None
    index = {n: i for i, n in enumerate(layer_names)}
    mat = np.zeros((len(layer_names), len(records)))
    current = np.zeros(len(layer_names))
    for j, r in enumerate(records):
        sel = r.get("selection")
        if sel is not None:
            current = np.zeros(len(layer_names))
            fraction = sel.get("fraction") or {}
            for name in sel.get("layers", []):
                if name in index:
                    current[index[name]] = fraction.get(name, 1.0)
        mat[:, j] = current
    return mat, [r["step"] for r in records]


def plot_layer_heatmap(records: list[dict], layer_names: list[str], out: str | Path) -> Path:
    """Rows: synthesis layers in generator order; columns: steps; colour: share of the layer trained."""
    got = layer_matrix(records, layer_names)
    fig = Figure(figsize=(10, 1.2 if got is None else 1.4 + 0.2 * max(len(layer_names), 4)))
    ax = fig.subplots()
    if got is None:
        _note(ax, "all layers trained every step (no layer selection logged)")
    elif not layer_names:
        _note(ax, "layer selections logged, but no layer names to draw them with")
    else:
        mat, steps = got
        im = ax.imshow(mat, aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest",
                       extent=(steps[0] - 0.5, steps[-1] + 0.5, len(layer_names) - 0.5, -0.5))
        ax.set_yticks(range(len(layer_names)), layer_names, fontsize=max(5, min(8, math.floor(200 / len(layer_names)))))
        ax.set_xlabel("step")
        fig.colorbar(im, ax=ax, label="share trained", fraction=0.03, pad=0.01)
    ax.set_title("trained layers per step")
    return save_figure(fig, out)


def synthesis_layer_names(G) -> list[str]:
    """Synthesis layer names in generator order (W+ index), as selections name them."""
    return [name for group in G.synthesis.layers_by_w() for name, _ in group]


def run_layer_names(run_dir: str | Path, records: list[dict] | None = None) -> list[str]:
    """A run's layer names in generator order (from its generator), else in the order selections named them."""
    from ..formats import load_generator

    run_dir = Path(run_dir)
    for path in (RunDir(run_dir).generator, load_config(run_dir)["generator"]):
        try:
            return synthesis_layer_names(load_generator(path))
        except (StylenadaError, OSError):
            continue
    records = load_records(run_dir) if records is None else records
    return list(dict.fromkeys(n for r in records for n in r.get("selection", {}).get("layers", [])))


def plot_training_curves(run_dir: str | Path, out_dir: str | Path, layer_names: list[str] | None = None
                         ) -> dict[str, Path]:
    """Write every curve of a run into ``out_dir``; returns {name: path}."""
    records = load_records(run_dir)
    out_dir = Path(out_dir)
    if layer_names is None:
        layer_names = run_layer_names(run_dir, records)
    return {
        "losses": plot_losses(records, out_dir / "losses.png"),
        "lambdas": plot_lambdas(records, out_dir / "lambdas.png"),
        "source_text": plot_source_text(records, out_dir / "source_text.png"),
        "layers": plot_layer_heatmap(records, layer_names, out_dir / "layers.png"),
    }
