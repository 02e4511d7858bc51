"""Visualisation: curves and heatmap of a real tiny run, CLIP directions, videos, the HTML report and CLI."""

import copy
import json
import shutil
from html.parser import HTMLParser

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from stylenada.cli import main
from stylenada.errors import StylenadaError

SECTION_IDS = ["config", "metrics", "curves", "layers", "source-text", "directions", "samples"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These tiny models run fastest on one thread, and do not stall when other jobs hold the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A finished 3-step adaptive run of the tiny random generator, taught by the tiny random CLIP (saved to a
    file so that the run's config names a loadable CLIP spec)."""
    from conftest import TEST_CLIP, TINY, make_test_clip, randomize_generator
    from safetensors.torch import save_file

    from stylenada.formats import save_generator
    from stylenada.models.stylegan2 import Generator

    tmp = tmp_path_factory.mktemp("viz")
    torch.manual_seed(0)
    gen = save_generator(randomize_generator(Generator(TINY)).eval(), tmp / "g.safetensors")
    weights = tmp / "clip.safetensors"
    save_file({k: v.contiguous() for k, v in make_test_clip().model.state_dict().items()}, str(weights))
    run = tmp / "run"
    assert main(["train", "--generator", str(gen), "--source", "photo", "--target", "sketch", "--iters", "3",
                 "--batch", "2", "--w-batch", "2", "--layers", "adaptive", "--k", "2", "--selection-interval", "1",
                 "--out", str(run),
                 "--clip", f"{TEST_CLIP}:{weights}", "--templates", "single", "--no-tensorboard",
                 "--sample-every", "1", "--n-samples", "2"]) == 0
    return run


def is_png(path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def shifted(G, by: float = 0.05):
    """A copy of G with every synthesis weight moved by ``by``: an 'adapted' generator of the same shape."""
    other = copy.deepcopy(G)
    with torch.no_grad():
        for p in other.synthesis.parameters():
            p.add_(by)
    return other


# --- curves ---------------------------------------------------------------------------------------------

def test_training_curves_and_layer_heatmap_of_a_run(tiny_run, tmp_path):
    from stylenada.formats import load_generator
    from stylenada.viz.curves import layer_matrix, load_records, plot_training_curves, run_layer_names

    names = run_layer_names(tiny_run)
    G = load_generator(tiny_run / "generator.safetensors")
    assert names == [n for group in G.synthesis.layers_by_w() for n, _ in group]  # generator order
    files = plot_training_curves(tiny_run, tmp_path)
    assert set(files) == {"losses", "lambdas", "source_text", "layers"} and all(is_png(p) for p in files.values())
    records = load_records(tiny_run)
    assert load_records(tiny_run / "metrics.jsonl") == records
    mat, steps = layer_matrix(records, names)
    assert mat.shape == (len(names), 3) and steps == [0, 1, 2]
    for j, r in enumerate(records):  # each step trains exactly the layers its selection named
        trained = {names[i] for i in np.flatnonzero(mat[:, j])}
        assert trained == set(r["selection"]["layers"])


def records_all_strategy(n: int = 5, learned: bool = False) -> list[dict]:
    return [{"step": i, "loss/clip": 0.9 - 0.1 * i, "loss/l2": 0.01 * i, "loss/total": 0.9,
             "lambda/clip": 1.0, "lambda/l2": 0.5 + (0.1 * i if learned else 0.0),
             "source_text": "photo" if i < 3 else "drawing", **({"source": "drawing"} if i == 3 else {})}
            for i in range(n)]


def test_curve_panels_on_synthetic_records(tmp_path):
    from stylenada.viz.curves import (
        draw_lambdas,
        draw_losses,
        layer_matrix,
        plot_layer_heatmap,
        plot_overview,
        plot_source_text,
    )
    from stylenada.viz.directions import cosine_over_training

    recs = records_all_strategy()
    ax = Figure().subplots()
    draw_lambdas(ax, recs)  # nothing moves: a note with the values instead of flat lines
    assert not ax.lines and "fixed" in ax.texts[0].get_text() and "l2 = 0.5" in ax.texts[0].get_text()
    ax = Figure().subplots()
    draw_lambdas(ax, records_all_strategy(learned=True))
    assert len(ax.lines) == 2 and not ax.texts
    ax = Figure().subplots()
    draw_losses(ax, recs)  # loss/l2 is 0 at step 0: linear scale
    assert ax.get_yscale() == "linear" and len(ax.lines) == 3
    ax = Figure().subplots()
    draw_losses(ax, recs[1:])
    assert ax.get_yscale() == "log"
    steps, cos = cosine_over_training(recs)
    assert steps == [0, 1, 2, 3, 4] and np.allclose(cos, [0.1, 0.2, 0.3, 0.4, 0.5])
    assert layer_matrix(recs, ["b4.conv1", "b8.conv0"]) is None  # the 'all' strategy logs no selections
    assert is_png(plot_layer_heatmap(recs, ["b4.conv1", "b8.conv0"], tmp_path / "all.png"))
    sel = dict(recs[0], selection={"step": 0, "layers": ["b8.conv0"], "fraction": {"b8.conv0": 0.25}})
    mat, _ = layer_matrix([sel, *recs[1:]], ["b4.conv1", "b8.conv0"])
    assert mat.tolist() == [[0.0] * 5, [0.25] * 5]  # a selection holds until the next one
    assert is_png(plot_source_text(recs, tmp_path / "src.png")) and is_png(plot_overview(recs, tmp_path / "o.png"))


def test_not_a_run_folder(tmp_path):
    from stylenada.viz.curves import load_config, load_records

    for load in (load_config, load_records):
        with pytest.raises(StylenadaError, match="not a run folder"):
            load(tmp_path)


# --- CLIP directions ------------------------------------------------------------------------------------

def test_directions_of_identical_generators_do_not_move(tiny_generator, random_clip, tmp_path):
    from stylenada.viz.directions import direction_data, plot_directions, project_2d

    data = direction_data(tiny_generator, tiny_generator, random_clip, "photo", "sketch", "single", n=4)
    assert data.frozen.shape == (4, random_clip.embed_dim) and data.source_text.shape == (random_clip.embed_dim,)
    assert torch.equal(data.frozen, data.adapted) and torch.all(data.cosine == 0) and data.mean_cosine == 0
    assert torch.allclose(data.frozen.norm(dim=-1), torch.ones(4), atol=1e-5)
    assert is_png(plot_directions(data, tmp_path / "same.png"))

    moved = direction_data(tiny_generator, shifted(tiny_generator, 0.3), random_clip, "photo", "sketch", "single",
                           n=4)
    assert torch.equal(moved.frozen, data.frozen) and not torch.equal(moved.adapted, data.adapted)
    assert torch.all(moved.cosine.abs() <= 1) and torch.all(moved.cosine != 0)
    # The cosine is taken with the direction training used (template means, then normalised), not t - s.
    direction = random_clip.text_direction("photo", "sketch", "single").float()
    change = moved.adapted - moved.frozen
    torch.testing.assert_close(moved.cosine, F.cosine_similarity(change, direction[None], dim=-1))
    assert is_png(plot_directions(moved, tmp_path / "moved.png"))
    p = project_2d(torch.randn(10, 5))
    assert p.shape == (10, 2) and torch.allclose(p.mean(0), torch.zeros(2), atol=1e-5)
    assert project_2d(torch.randn(1, 5)).shape == (1, 2)


# --- videos ---------------------------------------------------------------------------------------------

def read_video(path) -> tuple[int, tuple, float]:
    """(frame count, first frame's shape, fps) as decoded by imageio's ffmpeg reader."""
    import imageio.v2 as imageio

    with imageio.get_reader(path, format="FFMPEG") as r:
        frames = [f.shape for f in r]
        return len(frames), frames[0], r.get_meta_data()["fps"]


def test_videos_decode_with_the_right_frame_count(tiny_generator, tmp_path):
    from stylenada.viz.video import cross_model_video, latent_walk_video

    other = shifted(tiny_generator)
    n = latent_walk_video(tiny_generator, [other], tmp_path / "walk.mp4", n_keyframes=2, frames_per_transition=3,
                          fps=12, min_height=64)
    count, shape, fps = read_video(tmp_path / "walk.mp4")
    assert n == count == 6 and fps == 12
    assert shape[0] % 16 == 0 and shape[1] % 16 == 0 and shape[0] >= 64 and shape[1] >= 2 * (shape[0] - 16)
    n = cross_model_video(tiny_generator, [other, tiny_generator], tmp_path / "cross.mp4", frames=3, n_latents=2,
                          min_height=32)
    assert n == 6 and read_video(tmp_path / "cross.mp4")[0] == 6
    assert [p.name for p in tmp_path.iterdir()] != [] and not list(tmp_path.glob(".*.tmp"))  # atomic: no leftovers
    with pytest.raises(StylenadaError):
        cross_model_video(tiny_generator, [], tmp_path / "none.mp4")


def test_weight_interpolation_ends_at_each_model(tiny_generator):
    from stylenada.viz.video import lerp_state

    src, dst = tiny_generator.state_dict(), shifted(tiny_generator).state_dict()
    assert all(torch.equal(lerp_state(src, dst, 0.0)[k], v) for k, v in src.items())
    assert all(torch.allclose(lerp_state(src, dst, 1.0)[k], v) for k, v in dst.items())
    with pytest.raises(StylenadaError, match="architecture"):
        lerp_state(src, {k: v for k, v in dst.items() if "b8" not in k}, 0.5)


# --- report and CLI -------------------------------------------------------------------------------------

class Page(HTMLParser):
    """Section ids, image sources and external references of an HTML page."""

    def __init__(self, text: str):
        super().__init__()
        self.ids, self.images, self.external = [], [], []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self.ids.append(a.get("id"))
        if tag == "img":
            self.images.append(a.get("src") or "")
        if tag in ("link", "script") or (tag == "img" and not (a.get("src") or "").startswith("data:")):
            self.external.append(tag)


def test_report_has_every_section_with_inline_images(tiny_run, tmp_path):
    from conftest import TEST_CLIP

    run = shutil.copytree(tiny_run, tmp_path / "run", ignore=shutil.ignore_patterns("checkpoints"))
    (run / "eval.json").write_text(json.dumps({"clip": {"target_score": 0.25, "per_model": {"a": 1, "b": 2.5}}}))
    assert main(["report", str(run), "--clip", f"{TEST_CLIP}:{tiny_run.parent / 'clip.safetensors'}"]) == 0
    text = (run / "report.html").read_text()
    page = Page(text)
    assert page.ids == SECTION_IDS and not page.external
    # losses, lambdas, layers, source text, directions, final grid, 4 snapshots (steps 0-2 and 3)
    assert len(page.images) >= 10
    assert all(s.startswith("data:image/png;base64,") and len(s) > 200 for s in page.images)
    assert "CLIP directions not drawn" not in text and "photo → sketch" in text
    assert "clip.per_model.b" in text and "0.25" in text  # eval.json rendered as a table


def test_report_notes_when_clip_cannot_load(tiny_run, tmp_path):
    from stylenada.viz.report import write_report

    out = write_report(tiny_run, tmp_path / "r.html", clip_specs=["no-such-clip-model:nothing"])
    page = Page(out.read_text())
    assert page.ids == SECTION_IDS and "CLIP directions not drawn" in out.read_text()


def test_video_and_report_commands(tiny_run, tmp_path, capsys):
    assert main(["video", str(tiny_run), "--kind", "cross", "--frames", "3", "--fps", "10",
                 "--out", str(tmp_path / "c.mp4")]) == 0
    assert "3 frames" in capsys.readouterr().out and read_video(tmp_path / "c.mp4")[:3:2] == (3, 10)
    for cmd in (["report", str(tmp_path)], ["video", str(tmp_path)]):
        assert main(cmd) == 1
        err = capsys.readouterr().err
        assert "not a run folder" in err and len(err.strip().splitlines()) == 1
    # An existing output is kept unless --force (checked before anything is rendered).
    before = (tmp_path / "c.mp4").read_bytes()
    assert main(["video", str(tiny_run), "--kind", "cross", "--frames", "2", "--out", str(tmp_path / "c.mp4")]) == 1
    assert "--force" in capsys.readouterr().err and (tmp_path / "c.mp4").read_bytes() == before
    (tmp_path / "r.html").write_text("mine")
    assert main(["report", str(tiny_run), "--out", str(tmp_path / "r.html")]) == 1
    assert "--force" in capsys.readouterr().err and (tmp_path / "r.html").read_text() == "mine"
