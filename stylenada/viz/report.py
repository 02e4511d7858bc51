"""``stylenada report RUN``: one self-contained HTML page per run (images inlined as data URIs)."""

from __future__ import annotations

import base64
import html
import json
import tempfile
from pathlib import Path

from ..errors import StylenadaError

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1150px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; border-bottom: 1px solid #ddd; padding-bottom: .2em; }
table { border-collapse: collapse; font-size: .85em; } td, th { border: 1px solid #ddd; padding: .2em .6em; }
td.num { text-align: right; font-family: ui-monospace, monospace; }
img { max-width: 100%; image-rendering: pixelated; border: 1px solid #eee; }
figure { margin: .6em 1em .6em 0; display: inline-block; vertical-align: top; max-width: 100%; }
figcaption { font-size: .8em; color: #666; max-width: 640px; }
.cols { display: flex; gap: 1.5em; flex-wrap: wrap; align-items: flex-start; }
.note { color: #a33; font-size: .9em; }
"""


def data_uri(path: str | Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


def _figure(path: Path, caption: str) -> str:
    return f'<figure><img src="{data_uri(path)}" alt="{html.escape(caption)}"><figcaption>' \
           f"{html.escape(caption)}</figcaption></figure>"


def _table(d: dict, columns: int = 1) -> str:
    from ..eval import flatten

    items = list(flatten(d).items())
    if columns > 1:
        per = -(-len(items) // columns)
        parts = [dict(items[i:i + per]) for i in range(0, len(items), per)]
        return '<div class="cols">' + "".join(_table(p) for p in parts) + "</div>"
    rows = []
    for k, v in items:
        cell = f"{v:.4g}" if isinstance(v, float) else html.escape(json.dumps(v) if not isinstance(v, str) else v)
        cls = ' class="num"' if isinstance(v, int | float) else ""
        rows.append(f"<tr><th>{html.escape(k)}</th><td{cls}>{cell}</td></tr>")
    return "<table>" + "".join(rows) + "</table>"


def _section(sid: str, title: str, body: str) -> str:
    return f'<section id="{sid}"><h2>{html.escape(title)}</h2>{body}</section>'


def _directions(run_dir: Path, cfg: dict, clip_specs: list[str] | None, device: str, tmp: Path) -> str:
    try:
        from ..adapt.trainer import load_clip_models
        from ..formats import load_generator
        from .directions import direction_data, plot_directions

        G_frozen = load_generator(cfg["generator"], device=device)
        G_adapted = load_generator(run_dir / "generator.safetensors", device=device)
        model = load_clip_models(clip_specs or cfg.get("clip") or ["ViT-B-32:openai"], device)[0][0]
        summary = run_dir / "summary.json"
        source = json.loads(summary.read_text()).get("source_text") if summary.exists() else None
        data = direction_data(G_frozen, G_adapted, model, source or cfg["source"], cfg["target"],
                              cfg.get("templates", "imagenet"), n=16)
        return _figure(plot_directions(data, tmp / "directions.png"),
                       "Frozen (blue) and adapted (red) CLIP image embeddings of the same latents, with the "
                       "source-to-target text direction (PCA of the pooled embeddings).")
    except (StylenadaError, OSError, KeyError, RuntimeError) as e:
        return f'<p class="note">CLIP directions not drawn: {html.escape(str(e))}</p>'


def write_report(run_dir: str | Path, out_html: str | Path | None = None, clip_specs: list[str] | None = None,
                 device: str = "cpu") -> Path:
    """Config, metrics, curves, layer heatmap, source text, CLIP directions and samples of a run."""
    from ..formats import load_generator
    from ..utils.io import atomic_write_text
    from .curves import (
        load_records,
        plot_lambdas,
        plot_layer_heatmap,
        plot_losses,
        plot_source_text,
        synthesis_layer_names,
    )

    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.json"
    if not cfg_path.exists():
        raise StylenadaError(f"{run_dir} is not a run folder (no config.json): pass the --out folder of a run")
    cfg = json.loads(cfg_path.read_text())
    records = load_records(run_dir)
    out_html = Path(out_html) if out_html is not None else run_dir / "report.html"
    metrics: dict = {}
    for name in ("summary.json", "eval.json", "demo_metrics.json"):
        if (run_dir / name).exists():
            metrics[name[:-5]] = json.loads((run_dir / name).read_text())
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        try:
            layer_names = synthesis_layer_names(load_generator(cfg["generator"]))
        except (StylenadaError, OSError, KeyError):
            layer_names = list(dict.fromkeys(n for r in records for n in r.get("selection", {}).get("layers", [])))
        curves = ""
        if records:
            curves = (_figure(plot_losses(records, tmp / "losses.png"), "Loss terms per step, and the agreement "
                              "between image change and text direction (1 - directional loss).")
                      + _figure(plot_lambdas(records, tmp / "lambdas.png"), "Loss weights per step."))
        else:
            curves = '<p class="note">no training steps logged yet</p>'
        layers = _figure(plot_layer_heatmap(records, layer_names, tmp / "layers.png"),
                         "Share of each synthesis layer's parameters trained at each step.") if records else ""
        source = _figure(plot_source_text(records, tmp / "source.png"), "Source text in use per step.") \
            if records else ""
        directions = _directions(run_dir, cfg, clip_specs, device, tmp) \
            if (run_dir / "generator.safetensors").exists() else '<p class="note">no final generator yet</p>'
        samples = ""
        grids = [p for p in (run_dir / "before_after.png", run_dir / "samples" / "final.png") if p.exists()]
        for p in grids:
            samples += _figure(p, f"{p.name}: frozen generator on top, adapted below (same latents).")
        steps = sorted((run_dir / "samples").glob("step*.png")) if (run_dir / "samples").exists() else []
        for p in steps:
            samples += _figure(p, f"{p.stem}: frozen top row, adapted below.")
        title = f"{cfg.get('source', '')!r} → {cfg.get('target', '')!r}"
        metric_tables = ('<div class="cols">' + "".join(f"<div><h3>{html.escape(k)}</h3>{_table(v)}</div>"
                                                        for k, v in metrics.items()) + "</div>"
                         if metrics else '<p class="note">no metrics yet: run `stylenada evaluate`</p>')
        body = "".join([
            f"<h1>stylenada run: {html.escape(title)}</h1><p>{html.escape(str(run_dir))}</p>",
            _section("config", "Configuration", _table(cfg, columns=3)),
            _section("metrics", "Metrics", metric_tables),
            _section("curves", "Training curves", curves),
            _section("layers", "Trained layers", layers),
            _section("source-text", "Source text", source),
            _section("directions", "CLIP directions", directions),
            _section("samples", "Samples", samples or '<p class="note">no samples written</p>'),
        ])
        page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
                f"<style>{CSS}</style></head><body>{body}</body></html>")
        atomic_write_text(out_html, page)
    return out_html
