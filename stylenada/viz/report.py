"""``stylenada report RUN``: one self-contained HTML page per run (every image inlined as a data URI)."""

from __future__ import annotations

import base64
import html
import json
import math
import tempfile
from pathlib import Path

from ..clip.models import DEFAULT_CLIP
from ..utils.io import atomic_write_text
from ..utils.rundir import RunDir
from .curves import load_config, load_records, plot_training_curves, run_layer_names

SECTIONS = {"config": "Configuration", "metrics": "Metrics", "curves": "Training curves",
            "layers": "Trained layers", "source-text": "Source text", "directions": "CLIP directions",
            "samples": "Samples"}

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; padding: 1.5em 2em;
       max-width: 1100px; color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { font-size: 1.2em; border-bottom: 1px solid #ddd;
       padding-bottom: .2em; margin-top: 1.6em; } h3 { font-size: 1em; margin: 1em 0 .3em; }
nav a { margin-right: 1em; font-size: .9em; } .sub { color: #666; font-size: .9em; margin-top: 0; }
table { border-collapse: collapse; font-size: .85em; margin: .3em 0; }
th, td { border: 1px solid #ddd; padding: .2em .6em; text-align: left; vertical-align: top; }
td { max-width: 22em; overflow-wrap: anywhere; }
th { background: #f6f6f6; font-weight: 600; } td.num { text-align: right; font-family: ui-monospace, monospace; }
figure { margin: .8em 0; } figcaption { font-size: .8em; color: #666; }
img { max-width: 100%; height: auto; } img.px { image-rendering: pixelated; border: 1px solid #eee; }
.grid { display: flex; flex-wrap: wrap; gap: .8em; } .grid figure { margin: 0; }
.cols { display: flex; flex-wrap: wrap; gap: 1.2em; align-items: flex-start; }
.note { color: #a33; background: #fff4f4; border-left: 3px solid #d88; padding: .4em .8em; font-size: .9em; }
"""


def data_uri(path: str | Path) -> str:
    """A PNG file as a ``data:`` URI."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def figure_html(path: str | Path, caption: str, pixelated: bool = False, width: int | None = None) -> str:
    """An inlined image with a caption; ``pixelated`` for generator samples (no smoothing when upscaled)."""
    cls = ' class="px"' if pixelated else ""
    style = f' style="width:{width}px"' if width else ""
    cap = html.escape(caption)
    return f'<figure><img{cls}{style} src="{data_uri(path)}" alt="{cap}"><figcaption>{cap}</figcaption></figure>'


def display_width(path: str | Path, target: int) -> int | None:
    """Width to show a small image at: the largest integer multiple of its width up to ``target`` pixels,
    else ``target`` itself; None for images already that wide."""
    from PIL import Image

    with Image.open(path) as im:
        width = im.width
    if width >= target:
        return None
    return width * (target // width) if target // width > 1 else target


def note_html(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def _cell(value: object) -> str:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return f"<td>{html.escape(str(value))}</td>"
    if isinstance(value, int):
        return f'<td class="num">{value}</td>'
    if isinstance(value, float):
        return f'<td class="num">{value:.4g}</td>' if math.isfinite(value) else f'<td class="num">{value}</td>'
    return f"<td>{html.escape(json.dumps(value))}</td>"


def flatten(d: dict, prefix: str = "") -> dict[str, object]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    out: dict[str, object] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def table_html(d: dict, columns: int = 1) -> str:
    """Any nested dict as a key/value table (nested keys joined with dots), split into ``columns`` tables."""
    items = list(flatten(d).items())
    per = max(1, math.ceil(len(items) / max(columns, 1)))
    tables = ["<table>" + "".join(f"<tr><th>{html.escape(k)}</th>{_cell(v)}</tr>" for k, v in items[i : i + per])
              + "</table>" for i in range(0, len(items), per)]
    return tables[0] if len(tables) == 1 else f'<div class="cols">{"".join(tables)}</div>'


def section_html(sid: str, body: str) -> str:
    return f'<section id="{sid}"><h2>{html.escape(SECTIONS[sid])}</h2>{body}</section>'


def metrics_html(run_dir: Path) -> str:
    """Tables of summary.json, eval.json (``stylenada evaluate``) and demo_metrics.json, where present."""
    parts = []
    run = RunDir(run_dir)
    for path in (run.summary, run.eval, run.demo_metrics):
        name = path.name
        if path.is_file():
            try:
                table = table_html(json.loads(path.read_text()))
            except (json.JSONDecodeError, AttributeError) as e:
                table = note_html(f"unreadable: {e}")
            parts.append(f"<div><h3>{name}</h3>{table}</div>")
    missing = "" if run.eval.is_file() else note_html(
        f"no eval.json: run `stylenada evaluate {run_dir}` to add evaluation metrics")
    return f'<div class="cols">{"".join(parts)}</div>{missing}'


def directions_html(run_dir: Path, cfg: dict, clip_specs: list[str] | None, device: str, tmp: Path,
                    n: int = 16) -> str:
    """The CLIP-directions figure, or a visible note when the generators or CLIP cannot be loaded."""
    from ..adapt.trainer import load_clip_models
    from ..formats import load_generator
    from .directions import direction_data, plot_directions

    run = RunDir(run_dir)
    if not run.generator.is_file():
        return note_html(f"no {run.generator.name} yet: the run has not finished")
    if not cfg.get("target"):
        return note_html("the run followed target images, not a target text: no text direction to draw")
    specs = list(clip_specs or cfg.get("clip") or [DEFAULT_CLIP])
    try:
        G_frozen = load_generator(cfg["generator"], device=device)
        G_adapted = load_generator(run.generator, device=device)
        clip_model = load_clip_models(specs[:1], device)[0][0]
    except Exception as e:  # any failure to load becomes a visible note, not a failed report
        return note_html(f"CLIP directions not drawn: could not load the generators or CLIP {specs[0]!r} "
                         f"({type(e).__name__}: {e}); pass --clip with a model available here")
    source = _final_source(run_dir) or cfg.get("source") or "photo"
    data = direction_data(G_frozen, G_adapted, clip_model, source, cfg["target"],
                          cfg.get("templates", "imagenet"), n=n, seed=cfg.get("seed", 0))
    caption = (f"CLIP {specs[0]}: embeddings of {n} latents from the frozen (blue) and adapted (red) generator, "
               f"with the text direction {source!r} -> {data.target!r} (PCA of all points). Mean cosine between "
               f"image change and text direction: {data.mean_cosine:.3f}.")
    return figure_html(plot_directions(data, tmp / "directions.png"), caption)


def _final_source(run_dir: Path) -> str | None:
    """The source text the run ended with (dynamic source text re-captions), from summary.json."""
    path = RunDir(run_dir).summary
    return json.loads(path.read_text()).get("source_text") if path.is_file() else None


def samples_html(run_dir: Path) -> str:
    """The final before/after grid, then every ``samples/step*.png`` in step order."""
    parts = []
    run = RunDir(run_dir)
    for path, what in ((run.sample("final"), "final"), (run.path / "before_after.png", "demo")):
        if path.is_file():
            parts.append(f"<h3>Before / after ({what})</h3>"
                         + figure_html(path, f"{path.name}: frozen generator on top, adapted below (same latents).",
                                       pixelated=True, width=display_width(path, 1000)))
    steps = sorted(run.samples.glob("step*.png"))
    if steps:
        figs = "".join(figure_html(p, f"step {int(p.stem[4:]) if p.stem[4:].isdigit() else p.stem}", pixelated=True,
                                   width=display_width(p, 500)) for p in steps)
        parts.append(f"<h3>Progression ({len(steps)} snapshots, frozen top, adapted below)</h3>"
                     f'<div class="grid">{figs}</div>')
    return "".join(parts) or note_html("no samples written yet")


def source_text_html(records: list[dict], figure: str) -> str:
    """The timeline figure, and a table of the steps where dynamic source text picked a new caption."""
    events = [(r["step"], r["source"]) for r in records if "source" in r]
    if not events:
        return figure + "<p class='sub'>Static source text: one text for the whole run.</p>"
    rows = "".join(f'<tr><td class="num">{s}</td><td>{html.escape(t)}</td></tr>' for s, t in events)
    return figure + f"<table><tr><th>step</th><th>chosen source text</th></tr>{rows}</table>"


def write_report(run_dir: str | Path, out_html: str | Path | None = None, clip_specs: list[str] | None = None,
                 device: str = "cpu") -> Path:
    """Write the run's report (default ``run_dir/report.html``) and return its path."""
    run_dir = Path(run_dir)
    cfg = load_config(run_dir)
    records = load_records(run_dir)
    out_html = Path(out_html) if out_html is not None else run_dir / "report.html"
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        body = {"config": table_html(cfg, columns=3), "metrics": metrics_html(run_dir)}
        if records:
            figs = plot_training_curves(run_dir, tmp, run_layer_names(run_dir, records))
            body["curves"] = (figure_html(figs["losses"], "Loss terms per step (log scale when all positive), and "
                                          "the directional agreement 1 - loss/clip.")
                              + figure_html(figs["lambdas"], "Loss weights per step."))
            body["layers"] = figure_html(figs["layers"], "Share of each synthesis layer's parameters trained per "
                                         "step (rows in generator order, coarse to fine).")
            body["source-text"] = source_text_html(records, figure_html(figs["source_text"], "Source text per "
                                                                         "step."))
        else:
            for sid in ("curves", "layers", "source-text"):
                body[sid] = note_html("no training steps logged yet")
        body["directions"] = directions_html(run_dir, cfg, clip_specs, device, tmp)
        body["samples"] = samples_html(run_dir)
        atomic_write_text(out_html, page_html(run_dir, cfg, records, body))
    return out_html


def page_html(run_dir: Path, cfg: dict, records: list[dict], body: dict[str, str]) -> str:
    """The whole page: title, a line of facts, a section index and the sections in order."""
    target = cfg.get("target") or f"images in {cfg.get('target_images')}"
    title = f"{cfg.get('source', '?')} → {target}"
    facts = [str(run_dir), f"generator {cfg.get('generator')}", f"{len(records)} steps logged",
             f"layers {cfg.get('layers')}", f"weighting {cfg.get('weighting')}"]
    nav = "".join(f'<a href="#{sid}">{html.escape(name)}</a>' for sid, name in SECTIONS.items())
    sections = "".join(section_html(sid, body[sid]) for sid in SECTIONS)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>stylenada: {html.escape(title)}'
            f"</title><style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>"
            f'<p class="sub">{html.escape(" · ".join(facts))}</p><nav>{nav}</nav>{sections}</body></html>\n')
