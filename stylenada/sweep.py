"""``stylenada sweep TARGETS.yaml``: many adaptation runs from one file, in parallel on Ray.

The file holds ``rows`` (each a mapping of ``stylenada train`` options, the TrainConfig / SelectionConfig
field names) and optionally ``defaults`` merged under every row::

    defaults: {generator: g.safetensors, source: photo, iters: 300}
    rows:
      - target: pencil sketch
      - {name: pixar, target: 3d render in the style of pixar, lr: 0.003}

Each row is one ordinary run folder ``OUT/<name>`` (``name`` defaults to a slug of the target). Every
row is validated before anything runs; an invalid row is reported and the others go on. A row whose run
finished earlier is skipped, one with a run folder resumes from its last checkpoint, so re-running a
killed sweep does only what is missing. Each row trains, is evaluated (``eval.json``) and gets its
``report.html`` in one Ray task; ``OUT/sweep.json`` and ``OUT/index.html`` (one row per target: grid,
metrics, links) are rewritten as rows finish. Ray (the ``[sweep]`` extra) is imported only to run.
"""

from __future__ import annotations

import dataclasses
import html
import json
import os
import re
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from .adapt.config import TrainConfig
from .clip.models import parse_clip_spec
from .errors import StylenadaError, first_line
from .utils.io import atomic_write_text
from .utils.rundir import RunDir
from .utils.runtime import require_extra

RECORD_FILE, INDEX_FILE, REPORT_FILE = "sweep.json", "index.html", "report.html"
GRID_WIDTH = 560  # pixels the index shows a small sample grid at (an integer multiple of its width)
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
# Options a saved run may differ in from its row and still count as that row's run.
UNCOMPARED_OPTIONS = ("out", "device")

# A row's status: planned (invalid, skipped: finished earlier, resume, new), then done or failed.
TO_RUN = ("new", "resume")
SUCCEEDED = ("done", "skipped")


@dataclass
class SweepRow:
    """One row of a sweep file: its run folder, the config it trains (None when invalid) and its state."""

    name: str
    run_dir: Path
    source: str
    target: str
    config: TrainConfig | None = None
    status: str = "new"
    error: str | None = None
    traceback: str | None = None
    seconds: float | None = None

    def to_json(self) -> dict:
        fields = {"name": self.name, "source": self.source, "target": self.target, "status": self.status,
                  "error": self.error, "seconds": self.seconds}
        if self.traceback:
            fields["traceback"] = self.traceback
        return fields


# --- reading and validating the file ---------------------------------------------------------------


def read_sweep_file(path: Path) -> tuple[dict, list]:
    """(defaults, rows) of a sweep file: a mapping with ``rows`` (and optional ``defaults``), or a bare list
    of rows. A file that cannot be read as such is one StylenadaError; single rows are checked later."""
    if not path.is_file():
        raise StylenadaError(f"sweep file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise StylenadaError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if isinstance(data, list):
        data = {"rows": data}
    if not isinstance(data, dict):
        raise StylenadaError(f"{path}: expected 'rows:' (a list of option mappings) and optional 'defaults:'")
    unknown = sorted(set(map(str, data)) - {"rows", "defaults"})
    if unknown:
        raise StylenadaError(f"{path}: unknown top-level key(s) {unknown}; a sweep file holds 'rows' and 'defaults'")
    defaults, rows = data.get("defaults") or {}, data.get("rows")
    if not isinstance(defaults, dict):
        raise StylenadaError(f"{path}: 'defaults' must be a mapping of train options, got {defaults!r}")
    if not isinstance(rows, list) or not rows:
        raise StylenadaError(f"{path}: 'rows' must be a non-empty list of option mappings (one per target)")
    return defaults, rows


def merged_options(defaults: dict, row: dict) -> dict:
    """``row`` over ``defaults``; a ``selection`` mapping present in both is merged key by key."""
    merged = {**defaults, **row}
    if isinstance(defaults.get("selection"), dict) and isinstance(row.get("selection"), dict):
        merged["selection"] = {**defaults["selection"], **row["selection"]}
    return merged


def slug(text: str) -> str:
    """A folder name made from ``text``: lower-case words joined by '-' (at most 60 characters)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60].strip("-")


def derived_name(options: dict, index: int) -> str:
    """The run folder name of a row without ``name``: from its target text (or image folder), else its number."""
    target = options.get("target") or Path(str(options.get("target_images") or "")).name
    return slug(str(target)) or f"row-{index + 1}"


def row_config(options: dict, run_dir: Path) -> TrainConfig:
    """The validated TrainConfig of a row's options, run into ``run_dir``; StylenadaError when the row is bad."""
    if "out" in options:
        raise StylenadaError("'out' is not a row option: each row runs in OUT/<name> (set 'name' instead)")
    cfg = TrainConfig.from_dict(options)
    cfg.out = str(run_dir)
    cfg.validate()
    check_device(cfg.device)
    for spec in cfg.clip:
        parse_clip_spec(spec)
    if not Path(cfg.generator).is_file():
        raise StylenadaError(f"generator not found: {cfg.generator}")
    # Absolute paths, as the run folder records them: workers may start elsewhere, and re-runs compare them.
    cfg.generator = str(Path(cfg.generator).resolve())
    if cfg.target_images is not None:
        cfg.target_images = str(Path(cfg.target_images).resolve())
    return cfg


def check_device(device: str) -> None:
    """StylenadaError unless ``device`` is 'auto' or a torch device name (whether it exists is Ray's matter)."""
    import torch

    if device != "auto":
        try:
            torch.device(device)
        except RuntimeError:
            raise StylenadaError(f"unknown device {device!r}: use auto, cpu or cuda") from None


def load_rows(path: Path, out: Path) -> list[SweepRow]:
    """Every row of the sweep file at ``path``, each validated (bad ones have status 'invalid' and an error)."""
    defaults, raw_rows = read_sweep_file(path)
    out = out.resolve()
    rows: list[SweepRow] = []
    taken: dict[str, int] = {}
    for i, raw in enumerate(raw_rows):
        options = merged_options(defaults, raw) if isinstance(raw, dict) else {}
        explicit = options.pop("name", None)
        name = str(explicit) if explicit is not None else derived_name(options, i)
        if explicit is None and name in taken:  # two derived names alike: number the later ones
            name = next(f"{name}-{n}" for n in range(2, len(raw_rows) + 2) if f"{name}-{n}" not in taken)
        images = options.get("target_images")
        target = options.get("target") or (f"images in {images}" if images else "")
        row = SweepRow(name, out / name, str(options.get("source", TrainConfig.source)), str(target))
        try:
            if not isinstance(raw, dict):
                raise StylenadaError(f"row {i + 1} is not a mapping of options: {raw!r}")
            if not NAME_PATTERN.fullmatch(name):
                raise StylenadaError(f"bad name {name!r}: use letters, digits, '.', '_' and '-' (a folder name)")
            if name in taken:
                raise StylenadaError(f"name {name!r} is already used by row {taken[name] + 1}")
            row.config = row_config(options, row.run_dir)
        except StylenadaError as e:
            row.status, row.error = "invalid", str(e)
        taken.setdefault(name, i)
        rows.append(row)
    return rows


# --- planning --------------------------------------------------------------------------------------


def config_differences(saved: dict, cfg: TrainConfig) -> list[str]:
    """The options (dotted for selection ones) in which a saved run's config differs from ``cfg``."""
    old, new = TrainConfig.from_dict(saved).to_dict(), cfg.to_dict()
    keys = [k for k in new if k not in UNCOMPARED_OPTIONS and k != "selection"]
    diffs = [k for k in keys if old[k] != new[k]]
    return diffs + [f"selection.{k}" for k in new["selection"] if old["selection"][k] != new["selection"][k]]


def is_complete(run: RunDir, eval_n: int) -> bool:
    """The run finished training and has its evaluation (when wanted) and report."""
    return run.summary.is_file() and (run.path / REPORT_FILE).is_file() and (eval_n == 0 or run.eval.is_file())


def plan_row(row: SweepRow, eval_n: int) -> None:
    """Set a valid row's status from its run folder: skipped (complete), resume (a run is there) or new.
    A folder that holds a run of other options makes the row invalid (it is never overwritten)."""
    if row.config is None:
        return
    run = RunDir(row.run_dir)
    if not RunDir.is_run(run.path):
        row.status = "new"
        return
    try:
        diffs = config_differences(run.load_config(), row.config)
    except (StylenadaError, ValueError, KeyError, TypeError) as e:
        diffs = [f"unreadable config.json: {first_line(e)}"]
    if diffs:
        row.status = "invalid"
        row.error = (f"{run.path} holds a run with other options ({', '.join(diffs)}): delete that folder, or "
                     "give the row another name")
    else:
        row.status = "skipped" if is_complete(run, eval_n) else "resume"


def plan_sweep(path: Path, out: Path, eval_n: int = 64) -> list[SweepRow]:
    """The rows of the sweep file, validated and planned against what ``out`` already holds."""
    rows = load_rows(path, out)
    for row in rows:
        plan_row(row, eval_n)
    return rows


# --- one row (runs in a Ray worker) -----------------------------------------------------------------


def complete_run(cfg: TrainConfig, eval_n: int) -> None:
    """Bring a row's run folder to complete, doing only what is missing: train (or resume), evaluate on
    ``eval_n`` latents (0: no evaluation) into eval.json, write report.html."""
    from .adapt.trainer import adapt, resolve_device, resume
    from .eval import evaluate
    from .viz.report import write_report

    run = RunDir(cfg.out)
    if not run.summary.is_file():
        if RunDir.is_run(run.path):
            resume(run.path, progress=False)
        else:
            adapt(cfg, progress=False)
    device = str(resolve_device(cfg.device))
    if eval_n and not run.eval.is_file():
        atomic_write_text(run.eval, json.dumps(evaluate(run.path, n=eval_n, device=device), indent=2))
    if not (run.path / REPORT_FILE).is_file():
        write_report(run.path, run.path / REPORT_FILE, None, device)


def run_row_task(config: dict, eval_n: int, threads: int) -> dict:
    """The Ray task of one row: :func:`complete_run` with ``threads`` CPU threads. Never raises: returns
    ``{"seconds", "error"}`` (the error a line, None on success; a bug adds its "traceback")."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    t0 = time.perf_counter()
    outcome: dict = {"error": None}
    try:
        import torch

        from .plugins import load_plugins
        from .utils.runtime import set_allocator

        torch.set_num_threads(threads)
        load_plugins()  # CLIP sources and metrics of plugins (the shapes world's tiny CLIPs)
        cfg = TrainConfig.from_dict(config)
        set_allocator(cfg.release_memory)
        complete_run(cfg, eval_n)
    except StylenadaError as e:
        outcome["error"] = first_line(e)
    except Exception as e:  # a bug: the row fails with its traceback in sweep.json, the sweep goes on
        outcome.update(error=f"{type(e).__name__}: {first_line(e)}", traceback=traceback.format_exc())
    outcome["seconds"] = time.perf_counter() - t0
    return outcome


# --- running on Ray ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide the sweep runs: a local Ray with ``num_cpus`` cores (default: every core this
    process may use) or the cluster at ``address``; each row gets ``cpus_per_row`` cores (and one GPU when
    its device is, or with 'auto' can be, CUDA)."""

    address: str | None = None
    num_cpus: int | None = None
    cpus_per_row: int = 1

    def init_kwargs(self) -> dict:
        import logging

        quiet = {"log_to_driver": False, "logging_level": logging.ERROR}  # rows report through their results
        if self.address is not None:
            if self.num_cpus is not None:
                raise StylenadaError("--num-cpus is the core budget of a local Ray; a cluster at --address has its "
                                     "own: drop one of them")
            return {"address": self.address, **quiet}
        # 'local': always a fresh Ray of our own, even where another one runs on this machine. Its object
        # store only carries the rows' small results.
        return {"address": "local", "num_cpus": self.num_cpus or len(os.sched_getaffinity(0)),
                "object_store_memory": 128 * 2**20, "include_dashboard": False, **quiet}


def wants_gpu(device: str, cluster_has_gpu: bool) -> bool:
    return device.startswith("cuda") or (device == "auto" and cluster_has_gpu)


def run_rows(rows: list[SweepRow], options: RayOptions, eval_n: int,
             on_finished: Callable[[SweepRow], None]) -> None:
    """Run the rows to run as Ray tasks; set each one's status (done / failed), error and seconds as it
    finishes and call ``on_finished(row)``. Ray is started here and always shut down."""
    ray = require_extra("ray", "sweep", "stylenada sweep")
    todo = [row for row in rows if row.status in TO_RUN]
    if not todo:
        return
    try:
        ray.init(**options.init_kwargs())
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise StylenadaError(f"cannot start or reach Ray ({first_line(e)}): check --address / --num-cpus") from None
    try:
        resources = ray.cluster_resources()
        if options.cpus_per_row > resources.get("CPU", 0):
            raise StylenadaError(f"--cpus-per-row {options.cpus_per_row} is more than the Ray cluster's "
                                 f"{resources.get('CPU', 0):g} CPUs: lower it")
        has_gpu = resources.get("GPU", 0) >= 1
        task = ray.remote(run_row_task)
        pending = {}
        for row in todo:
            gpu = wants_gpu(row.config.device, has_gpu)
            if gpu and not has_gpu:
                row.status, row.error = "failed", f"device {row.config.device!r} needs a GPU; the Ray cluster has none"
                on_finished(row)
                continue
            config = dataclasses.replace(row.config, device="cuda" if gpu else "cpu").to_dict()
            ref = task.options(num_cpus=options.cpus_per_row, num_gpus=1 if gpu else 0, max_retries=0,
                               name=f"sweep:{row.name}").remote(config, eval_n, options.cpus_per_row)
            pending[ref] = row
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            row = pending.pop(ref)
            try:
                outcome = ray.get(ref)
            except ray.exceptions.RayError as e:  # the worker itself died (killed, out of memory)
                outcome = {"error": f"the Ray task died: {first_line(e)}", "seconds": None}
            row.error, row.seconds = outcome["error"], outcome["seconds"]
            row.traceback = outcome.get("traceback")
            row.status = "failed" if row.error else "done"
            on_finished(row)
    finally:
        ray.shutdown()


# --- the record and the index page ------------------------------------------------------------------


def write_record(out: Path, sweep_file: Path, rows: list[SweepRow]) -> Path:
    """``OUT/sweep.json``: the sweep file, when this was written, and every row's status and error."""
    record = {"file": str(sweep_file.resolve()), "updated": time.strftime("%Y-%m-%d %H:%M:%S"),
              "counts": status_counts(rows), "rows": [row.to_json() for row in rows]}
    path = out / RECORD_FILE
    atomic_write_text(path, json.dumps(record, indent=2))
    return path


def status_counts(rows: list[SweepRow]) -> dict[str, int]:
    return dict(Counter(row.status for row in rows))


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}


def _mean(values: object) -> float | None:
    numbers = [v for v in values.values() if isinstance(v, (int, float))] if isinstance(values, dict) else []
    return sum(numbers) / len(numbers) if numbers else None


def run_metrics(run: RunDir) -> list[tuple[str, str]]:
    """(label, value) pairs shown in the index: training summary, and the evaluation's known-answer metrics
    (shapes world) or else the CLIP directional agreement."""
    summary, evaluation = _read_json(run.summary), _read_json(run.eval)
    shown: list[tuple[str, str]] = []
    if summary:
        shown += [("steps", f"{summary['steps']} ({summary['seconds']:.1f} s)"),
                  ("CLIP loss", f"{summary['initial_clip_loss']:.3f} → {summary['final_clip_loss']:.3f}"),
                  ("L2", f"{summary['final_l2']:.4f}")]
    known = evaluation.get("shapes")
    if known:
        shown += [("target success", f"{known['target_success_before']:.0%} → {known['target_success']:.0%}"),
                  ("preservation", f"{known['preservation']:.0%}")]
    elif (agreement := _mean(evaluation.get("direction"))) is not None:
        shown.append(("direction agreement", f"{agreement:.3f}"))
    return shown


def row_html(row: SweepRow, out: Path) -> str:
    """One table row of the index: name (linked to the report), texts, status, grid, metrics."""
    from .viz.report import display_width

    run = RunDir(row.run_dir)
    rel = lambda p: html.escape(p.relative_to(out.resolve()).as_posix(), quote=True)  # noqa: E731
    report = run.path / REPORT_FILE
    name = html.escape(row.name)
    name_cell = f'<a href="{rel(report)}">{name}</a>' if report.is_file() else name
    status = f'<span class="status">{html.escape(row.status)}</span>'
    if row.error:
        status += f'<div class="error">{html.escape(row.error)}</div>'
    grid = run.sample("final")
    if grid.is_file():
        width = display_width(grid, GRID_WIDTH)
        size = f' style="width:{width}px"' if width else ""
        image = (f'<a href="{rel(grid)}"><img class="px"{size} src="{rel(grid)}" '
                 f'alt="{name}: frozen (top) and adapted (bottom) samples"></a>')
    else:
        image = '<span class="none">no grid yet</span>'
    metrics = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in run_metrics(run))
    texts = f"{html.escape(row.source)} → {html.escape(row.target)}"
    return (f'<tr id="row-{name}" class="{html.escape(row.status)}"><td>{name_cell}</td><td>{texts}</td>'
            f"<td>{status}</td><td>{image}</td><td>{f'<table>{metrics}</table>' if metrics else ''}</td></tr>")


INDEX_CSS = """
body { max-width: 1400px; } #rows > tbody > tr > td { max-width: none; } #rows td:first-child { white-space: nowrap; }
.done .status, .skipped .status { color: #176a2c; } .failed .status, .invalid .status { color: #a33; }
.status { font-weight: 600; white-space: nowrap; } .error { color: #a33; font-size: .85em; max-width: 28em; }
.none { color: #888; font-size: .85em; }
td table { margin: 0; } td table th { font-weight: normal; white-space: nowrap; }
"""


def write_index(out: Path, sweep_file: Path, rows: list[SweepRow]) -> Path:
    """``OUT/index.html``: one row per target, with images and reports linked relative to ``out``."""
    from .viz.report import CSS

    counts = ", ".join(f"{n} {status}" for status, n in status_counts(rows).items())
    title = f"stylenada sweep: {sweep_file.name}"
    body = "".join(row_html(row, out) for row in rows)
    page = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{CSS}{INDEX_CSS}</style></head><body><h1>{html.escape(title)}</h1>"
            f'<p class="sub">{len(rows)} rows: {html.escape(counts)}; updated {time.strftime("%Y-%m-%d %H:%M")}. '
            "Grids: the frozen generator's samples on top, the adapted generator's below (same latents).</p>"
            '<table id="rows"><thead><tr><th>run</th><th>source → target</th><th>status</th><th>before / after</th>'
            f"<th>metrics</th></tr></thead><tbody>{body}</tbody></table></body></html>")
    path = out / INDEX_FILE
    atomic_write_text(path, page)
    return path


def write_outputs(out: Path, sweep_file: Path, rows: list[SweepRow]) -> None:
    write_record(out, sweep_file, rows)
    write_index(out, sweep_file, rows)


def run_sweep(sweep_file: Path, out: Path, options: RayOptions | None = None, eval_n: int = 64,
              on_row: Callable[[SweepRow], None] = lambda row: None) -> list[SweepRow]:
    """Plan the sweep, run what is missing on Ray and write ``OUT/sweep.json`` and ``OUT/index.html`` (also
    after each finished row). ``on_row`` is called for each row planned not to run, then as each finishes."""
    require_extra("ray", "sweep", "stylenada sweep")  # before any work: without Ray, say which extra
    out = out.resolve()
    rows = plan_sweep(sweep_file, out, eval_n)
    out.mkdir(parents=True, exist_ok=True)
    write_outputs(out, sweep_file, rows)
    for row in rows:
        if row.status not in TO_RUN:
            on_row(row)

    def finished(row: SweepRow) -> None:
        write_outputs(out, sweep_file, rows)
        on_row(row)

    run_rows(rows, options or RayOptions(), eval_n, finished)
    return rows


__all__ = ["RayOptions", "SweepRow", "plan_sweep", "run_sweep", "write_index", "write_record"]
