"""``stylenada sweep``: shapes-world rows on a local Ray (2-core budget), an invalid row, re-runs that skip
finished rows, a killed sweep finished by a re-run, the index page in Chromium, and no Ray installed."""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from stylenada.cli import main
from stylenada.sweep import plan_sweep
from stylenada.toy.demo import GENERATOR, TEACHERS

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="Ray is not installed (pip install -e '.[sweep]')")
# The shapes world's settings that work (toy/demo.py), cut to a few steps.
SHAPES_DEFAULTS = {"generator": str(GENERATOR), "source": "a red shape", "clip": list(TEACHERS), "templates": "none",
                   "layers": "all", "lr": 0.0045, "lambda_l2": 0.1, "train_torgb": True, "iters": 6, "batch": 2,
                   "n_samples": 8, "sample_truncation": 1.0, "sample_every": 0, "tensorboard": False}
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def write_sweep(path: Path, rows: list[dict], **defaults) -> Path:
    path.write_text(yaml.safe_dump({"defaults": {**SHAPES_DEFAULTS, **defaults}, "rows": rows}))
    return path


def sweep_command(sweep_file: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "stylenada", "sweep", str(sweep_file), "--out", str(out), "--num-cpus", "2",
            "--eval-n", "16"]


def statuses(out: Path) -> dict[str, str]:
    return {row["name"]: row["status"] for row in json.loads((out / "sweep.json").read_text())["rows"]}


@pytest.fixture(scope="module")
def three_row_sweep(tmp_path_factory):
    """Two valid shapes-world rows and one with an unknown strategy, swept once: (sweep file, out, process)."""
    tmp = tmp_path_factory.mktemp("sweep")
    sweep_file = write_sweep(tmp / "targets.yaml", [
        {"target": "a blue shape"},
        {"name": "outline", "source": "a filled shape", "target": "an outline of a shape"},
        {"name": "zigzag", "target": "a green shape", "layers": "zigzag"},
    ])
    out = tmp / "out"
    proc = subprocess.run(sweep_command(sweep_file, out), env=ENV, capture_output=True, text=True, timeout=300)
    return sweep_file, out, proc


@needs_ray
def test_sweep_runs_valid_rows_and_reports_the_invalid_one(three_row_sweep):
    _, out, proc = three_row_sweep
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert statuses(out) == {"a-blue-shape": "done", "outline": "done", "zigzag": "invalid"}
    for name in ("a-blue-shape", "outline"):
        run = out / name
        assert json.loads((run / "summary.json").read_text())["steps"] == 6
        for produced in ("samples/final.png", "report.html", "eval.json"):
            assert (run / produced).is_file(), produced
        assert "shapes" in json.loads((run / "eval.json").read_text())  # the known-answer metrics
    assert not (out / "zigzag").exists()
    assert "invalid  zigzag: unknown --layers 'zigzag'" in proc.stdout
    error = proc.stderr.strip()
    assert error.count("\n") == 0 and "1 of 3 rows did not finish (zigzag)" in error
    index = (out / "index.html").read_text()
    assert "unknown --layers &#x27;zigzag&#x27;" in index and 'href="outline/report.html"' in index


@needs_ray
def test_rerun_skips_finished_rows(three_row_sweep, capsys):
    sweep_file, out, _ = three_row_sweep
    logs = {name: (out / name / "metrics.jsonl").stat().st_mtime_ns for name in ("a-blue-shape", "outline")}
    code = main(["sweep", str(sweep_file), "--out", str(out), "--num-cpus", "2", "--eval-n", "16"])
    printed = capsys.readouterr().out
    assert code == 1
    assert "skipped  a-blue-shape" in printed and "skipped  outline" in printed
    assert statuses(out) == {"a-blue-shape": "skipped", "outline": "skipped", "zigzag": "invalid"}
    assert logs == {name: (out / name / "metrics.jsonl").stat().st_mtime_ns for name in logs}


@needs_ray
def test_index_opens_in_chromium_without_errors(three_row_sweep, chromium_browser):
    _, out, _ = three_row_sweep
    page = chromium_browser.new_page()
    problems = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda err: problems.append(str(err)))
    page.on("requestfailed", lambda req: problems.append(f"failed: {req.url}"))
    page.goto((out / "index.html").as_uri())
    page.wait_for_load_state("load")
    assert page.locator("#rows > tbody > tr").count() == 3
    assert page.locator("#row-zigzag .error").inner_text().startswith("unknown --layers")
    widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
    assert len(widths) == 2 and all(w > 0 for w in widths)
    page.click("#row-outline a[href$='report.html']")
    page.wait_for_load_state("load")
    assert page.url.endswith("outline/report.html")
    page.close()
    assert problems == []


@needs_ray
@pytest.mark.slow
def test_killed_sweep_finishes_only_the_missing_rows(tmp_path):
    """Kill the whole process group once the short row is complete and the long one has a checkpoint; the
    re-run leaves the short row alone and resumes the long one."""
    sweep_file = write_sweep(tmp_path / "targets.yaml", [
        {"name": "short", "target": "a blue shape"},
        {"name": "long", "target": "a yellow shape", "iters": 200, "checkpoint_every": 20},
    ])
    out = tmp_path / "out"
    proc = subprocess.Popen(sweep_command(sweep_file, out), env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    short_done, long_checkpoint = out / "short" / "report.html", out / "long" / "checkpoints" / "latest.json"
    try:
        deadline = time.monotonic() + 240
        while not (short_done.is_file() and long_checkpoint.is_file()) and time.monotonic() < deadline:
            assert proc.poll() is None, "the sweep ended before it could be killed"
            time.sleep(0.1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver, its Ray (GCS, raylet) and with them the workers
        proc.wait()
    assert short_done.is_file() and not (out / "long" / "summary.json").exists()
    checkpoint_step = json.loads(long_checkpoint.read_text())["step"]
    logged_before = (out / "long" / "metrics.jsonl").read_text().splitlines()[:checkpoint_step]
    short_log = (out / "short" / "metrics.jsonl").stat().st_mtime_ns

    rerun = subprocess.run(sweep_command(sweep_file, out), env=ENV, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert statuses(out) == {"short": "skipped", "long": "done"}
    assert (out / "short" / "metrics.jsonl").stat().st_mtime_ns == short_log
    logged = (out / "long" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in logged] == list(range(200))  # one record per step, none twice
    assert checkpoint_step >= 1 and logged[:checkpoint_step] == logged_before  # resumed, not trained again
    assert json.loads((out / "long" / "summary.json").read_text())["steps"] == 200


def test_rows_are_validated_up_front(tmp_path):
    sweep_file = write_sweep(tmp_path / "targets.yaml", [
        {"target": "a blue shape", "selection": {"w_steps": 2}},
        {"target": "a blue shape"},  # the same derived name: numbered
        {"target": "an orange shape", "generator": str(tmp_path / "missing.safetensors")},
        {"target": "a green shape", "colour": "green"},
        {"name": "a-blue-shape", "target": "a yellow shape"},
        {"name": "../up", "target": "a yellow shape"},
        {"target": "a cross", "out": "elsewhere"},
    ], selection={"k": 4})
    rows = plan_sweep(sweep_file, tmp_path / "out")
    assert [row.name for row in rows] == ["a-blue-shape", "a-blue-shape-2", "an-orange-shape", "a-green-shape",
                                          "a-blue-shape", "../up", "a-cross"]
    assert [row.status for row in rows] == ["new", "new", "invalid", "invalid", "invalid", "invalid", "invalid"]
    assert (rows[0].config.selection.k, rows[0].config.selection.w_steps) == (4, 2)  # selection merged
    assert Path(rows[0].config.out) == (tmp_path / "out" / "a-blue-shape").resolve()
    errors = [row.error for row in rows[2:]]
    assert "generator not found" in errors[0] and "unknown option(s) ['colour']" in errors[1]
    assert "already used by row 1" in errors[2] and "bad name" in errors[3] and "'out' is not a row option" in errors[4]


def test_a_folder_of_another_run_is_never_overwritten(tmp_path):
    sweep_file = write_sweep(tmp_path / "targets.yaml", [{"name": "blue", "target": "a blue shape"}])
    (tmp_path / "out" / "blue").mkdir(parents=True)
    config = plan_sweep(sweep_file, tmp_path / "out")[0].config
    config.iters = 50
    config.save(tmp_path / "out" / "blue" / "config.json")
    row = plan_sweep(sweep_file, tmp_path / "out")[0]
    assert row.status == "invalid" and "holds a run with other options (iters)" in row.error


def test_sweep_without_ray_names_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    sweep_file = write_sweep(tmp_path / "targets.yaml", [{"target": "a blue shape"}])
    assert main(["sweep", str(sweep_file), "--out", str(tmp_path / "out")]) == 1
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "pip install 'stylenada[sweep]'" in error
    assert not (tmp_path / "out").exists()
    assert main(["sweep", str(sweep_file), "--out", str(tmp_path / "out"), "--dry-run"]) == 0  # needs no Ray
    assert capsys.readouterr().out.strip() == "new      a-blue-shape"
