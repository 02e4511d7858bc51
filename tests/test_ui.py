"""`stylenada ui`: the worker and helpers without a browser, then the whole app driven in Chromium."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stylenada.adapt.config import preset
from stylenada.errors import StylenadaError
from stylenada.utils.rundir import RunDir

pytest.importorskip("gradio", reason="the [ui] extra (gradio) is not installed")

from stylenada.ui.app import (  # noqa: E402
    UISettings,
    find_runs,
    loss_table,
    progress_html,
    train_config,
    walk_point,
)
from stylenada.ui.worker import RunStatus, TrainingWorker  # noqa: E402

SCREENSHOTS = os.environ.get("STYLENADA_SCREENSHOTS")  # e.g. docs/ui: where the browser test saves its screenshots


def shapes_config(out: Path, iters: int) -> object:
    import stylenada.cli  # noqa: F401  (loads the plugins: the shapes preset)

    cfg = preset("shapes")
    cfg.out, cfg.iters, cfg.sample_every, cfg.checkpoint_every, cfg.tensorboard = str(out), iters, 2, 2, False
    return cfg


def wait_for(predicate, timeout: float, what: str):
    end = time.time() + timeout
    while time.time() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


# --- helpers -------------------------------------------------------------------------------------------------


def test_walk_point_visits_the_keyframes_in_order():
    ws = torch.arange(3.0).view(3, 1, 1).expand(3, 2, 4)
    assert torch.equal(walk_point(ws, 0.0), ws[:1])
    assert torch.equal(walk_point(ws, 1.0), ws[2:])
    assert torch.allclose(walk_point(ws, 0.25), torch.full((1, 2, 4), 0.5))
    assert torch.allclose(walk_point(ws, 0.75), torch.full((1, 2, 4), 1.5))
    assert torch.equal(walk_point(ws[:1], 0.6), ws[:1])


def test_run_names_lists_and_tables(tmp_path):
    from stylenada.utils.rundir import free_run_dir

    assert free_run_dir(tmp_path / "run") == tmp_path / "run"
    (tmp_path / "run").mkdir()
    (tmp_path / "run-1").mkdir()
    assert free_run_dir(tmp_path / "run") == tmp_path / "run-2"
    assert find_runs(tmp_path, tmp_path / "missing") == []
    (tmp_path / "run-1" / "config.json").write_text("{}")
    assert find_runs(tmp_path) == [str(tmp_path / "run-1")]
    table = loss_table([{"step": 0, "loss/clip": 1.0, "loss/l2": 0.0, "selection": {}}, {"step": 1, "loss/clip": 0.5}])
    assert sorted(set(table["term"])) == ["clip", "l2"] and len(table) == 3
    seeded = loss_table([], ("clip", "total"))
    assert list(seeded["term"]) == ["clip", "total"] and seeded["value"].isna().all()
    assert 'value="3" max="4"' in progress_html(RunStatus("running", tmp_path, 3, 4))


def test_page_values_become_a_checked_config(tmp_path):
    import stylenada.cli  # noqa: F401

    settings = UISettings.create(runs=tmp_path)
    cfg = train_config(settings, settings.base.generator, "tiny-shapes", "a red shape", "a blue shape", None, "late",
                       "fixed", 2, 40, 0.01, str(tmp_path / "r"))
    assert (cfg.layers, cfg.selection.k, cfg.iters, cfg.lr, cfg.clip) == ("late", 2, 40, 0.01, ["tiny-shapes"])
    assert cfg.sample_every == 4 and cfg.checkpoint_every == 10
    for bad, message in [({"iters": 0}, "steps must be"), ({"k": 1.5}, "k must be"), ({"out": " "}, "no run folder")]:
        args = dict(iters=40, k=2, out=str(tmp_path / "r")) | bad
        with pytest.raises(StylenadaError, match=message):
            train_config(settings, settings.base.generator, "", "a", "b", None, "all", "fixed", args["k"],
                         args["iters"], 0.01, args["out"])
    with pytest.raises(StylenadaError, match="generator not found"):
        UISettings.create(str(tmp_path / "nope.pt"))


# --- the worker ---------------------------------------------------------------------------------------------


def test_worker_stops_resumes_and_refuses_a_second_run(tmp_path):
    from stylenada.adapt.trainer import resume

    worker = TrainingWorker()
    run = worker.start(shapes_config(tmp_path / "a", iters=60))
    with pytest.raises(StylenadaError, match="a run is in progress"):
        worker.start(shapes_config(tmp_path / "b", iters=4))
    wait_for(lambda: worker.status().step >= 3, 60, "three steps")
    assert worker.stop()
    status = worker.wait(60)
    assert status.state == "stopped" and 3 <= status.step < 60, status
    assert RunDir(run).latest_checkpoint() == f"step{status.step:06d}"
    assert not RunDir(run).generator.exists()  # stopped, not finished
    assert not worker.stop()  # nothing runs now
    # The same run folder the CLI writes: `stylenada train --resume` finishes it.
    result = resume(run, iters=status.step + 2, progress=False)
    assert result.metrics["steps"] == status.step + 2 and RunDir(run).generator.is_file()
    # ... and the worker resumes a run the CLI made, to more steps; a finished run needs more steps.
    with pytest.raises(StylenadaError, match="already finished"):
        worker.resume(run)
    worker.resume(run, iters=status.step + 4)
    done = worker.wait(60)
    assert done.state == "finished" and done.step == status.step + 4
    assert len(RunDir(run).records()) == status.step + 4


def test_worker_reports_a_failed_run(tmp_path):
    worker = TrainingWorker()
    cfg = shapes_config(tmp_path / "bad", iters=4)
    cfg.clip = ["no-such-clip:nowhere"]
    worker.start(cfg)
    status = worker.wait(60)
    assert status.state == "failed" and "no-such-clip" in status.message and "\n" not in status.message


def test_ui_without_gradio_names_the_extra(monkeypatch, capsys):
    from stylenada.cli import main

    monkeypatch.setitem(sys.modules, "gradio", None)
    assert main(["ui"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'stylenada[ui]'" in err


# --- the app in a browser -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ui_server(tmp_path):
    """`stylenada ui` on the shapes world, served on a free port; (url, runs folder)."""
    port, runs = free_port(), tmp_path / "runs"
    env = dict(os.environ, OMP_NUM_THREADS="1", GRADIO_ANALYTICS_ENABLED="False")
    proc = subprocess.Popen([sys.executable, "-m", "stylenada", "ui", "--port", str(port), "--runs", str(runs),
                             "--device", "cpu"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    url = None
    try:
        for line in proc.stdout:
            if "Running on local URL" in line:
                url = re.search(r"http://\S+", line).group(0)
                break
        assert url, "the UI did not start"
        yield url, runs
    finally:
        proc.terminate()
        proc.wait(10)


def shot(page, name: str, tmp_path: Path) -> None:
    folder = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"ui-{name}.png"), full_page=True)


def field(page, elem_id: str):
    """The text field of a Gradio component (a textbox is a textarea, a number or dropdown an input)."""
    return page.locator(f"#{elem_id} textarea, #{elem_id} input").first


def run_status(page) -> str:
    return page.inner_text("#run-status")


def status_step(page) -> int:
    m = re.search(r"step (\d+) / \d+", run_status(page))
    return int(m.group(1)) if m else -1


def test_ui_in_a_browser(ui_server, chromium_browser, tmp_path):
    """Start a 20-step run, watch the grid update, stop, resume (after closing the page), download the
    generator and load it; edit a photo without a face; explore the run."""
    from stylenada import load_generator
    from stylenada.utils.images import to_uint8

    url, runs = ui_server
    errors: list[str] = []
    page = chromium_browser.new_page(viewport={"width": 1400, "height": 1000})
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.wait_for_selector("#start", timeout=60_000)
    field(page, "steps").fill("20")

    # Start; the grid updates while it trains (a new sample file every two steps).
    page.click("#start")
    wait_for(lambda: status_step(page) >= 1, 60, "the first step")
    grid = page.locator("#sample-grid img")
    first = wait_for(lambda: grid.count() and grid.first.get_attribute("src"), 30, "a sample grid")
    wait_for(lambda: grid.first.get_attribute("src") != first, 30, "the grid to change")
    page.click("#stop")
    wait_for(lambda: "stopped" in run_status(page), 60, "the run to stop")
    stopped_at = status_step(page)
    assert 2 <= stopped_at < 20, run_status(page)
    run_dir = Path(field(page, "run-folder").input_value())
    if not run_dir.is_absolute():
        run_dir = tmp_path / run_dir
    assert RunDir(run_dir).latest_checkpoint() is not None and not RunDir(run_dir).generator.exists()

    # Resume, close the page mid-run: the run goes on; a new page shows it to the end.
    page.click("#resume")
    wait_for(lambda: "running" in run_status(page) or "finished" in run_status(page), 30, "the run to resume")
    page.close()
    page = chromium_browser.new_page(viewport={"width": 1400, "height": 1000})
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    wait_for(lambda: "finished" in run_status(page), 120, "the resumed run to finish")
    assert status_step(page) == 20 and len(RunDir(run_dir).records()) == 20
    field(page, "run-folder").fill(str(run_dir))
    shot(page, "adapt", tmp_path)

    # Download the adapted generator and load it.
    page.click("#export")
    link = page.locator("#download-native a").first
    link.wait_for(timeout=60_000)
    with page.expect_download() as download:
        link.click()
    saved = tmp_path / "downloaded.safetensors"
    download.value.save_as(saved)
    downloaded, finished = load_generator(saved).state_dict(), load_generator(RunDir(run_dir).generator).state_dict()
    assert downloaded.keys() == finished.keys() and all(torch.equal(downloaded[k], finished[k]) for k in finished)
    assert page.locator("#download-pt a").count() and page.locator("#download-report a").count()

    # Edit: a photo without a face gets one clear message.
    page.get_by_role("tab", name="Edit").click()
    photo = tmp_path / "no-face.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(photo)
    page.set_input_files("#edit-photo input[type=file]", str(photo))
    page.get_by_label("face (dlib alignment)").check()
    page.fill("#edit-adapted input", str(run_dir))
    page.press("#edit-adapted input", "Enter")
    page.click("#edit-run")
    message = wait_for(lambda: re.search("Error|edited", page.inner_text("#edit-message")) and
                       page.inner_text("#edit-message"), 60, "the edit message")
    from test_invert import dlib_ready

    expected = "no face found" if dlib_ready() is None else "dlib"
    assert "Error:" in message and expected in message, message
    # A file that is not an image: one message saying so.
    not_image = tmp_path / "notes.txt"
    not_image.write_text("not a photo")
    page.locator("#edit-photo").get_by_role("button", name=re.compile("clear", re.I)).first.click()
    page.set_input_files("#edit-photo input[type=file]", str(not_image))
    page.click("#edit-run")
    wait_for(lambda: "not an image file" in page.inner_text("#edit-message"), 60, "the not-an-image message")
    # A shapes-world picture taken as aligned: inverted into the source, rendered by the adapted generator.
    with torch.no_grad():
        G_source = load_generator(RunDir(run_dir).source_generator())
        picture = G_source(torch.randn(1, G_source.z_dim, generator=torch.Generator().manual_seed(3)),
                           noise_mode="const")
    shape_photo = tmp_path / "shape.png"
    Image.fromarray(to_uint8(picture)[0]).resize((128, 128), Image.NEAREST).save(shape_photo)
    page.locator("#edit-photo").get_by_role("button", name=re.compile("clear", re.I)).first.click()
    page.set_input_files("#edit-photo input[type=file]", str(shape_photo))
    page.get_by_label("already aligned (centre crop)").check()
    field(page, "edit-steps").fill("20")
    page.click("#edit-run")
    wait_for(lambda: page.locator("#edit-gallery img").count() >= 3, 120, "the edited images")
    assert "edited with 1 generator" in page.inner_text("#edit-message")
    shot(page, "edit", tmp_path)

    # Explore: the run's seeds, frozen and adapted, and the walk.
    page.get_by_role("tab", name="Explore").click()
    page.fill("#explore-run input", str(run_dir))
    page.press("#explore-run input", "Enter")
    page.click("#explore-show")
    wait_for(lambda: page.locator("#explore-grid img").count() and page.locator("#walk-image img").count(), 60,
             "the explore images")
    page.click("#explore-video")
    page.locator("#walk-video video").wait_for(timeout=60_000)
    shot(page, "explore", tmp_path)
    assert not errors, errors
