"""Visualisation: curves and heatmap of a real (tiny) run, CLIP directions, videos, the HTML report."""

import json
from html.parser import HTMLParser

import numpy as np
import pytest
import torch

from stylenada.cli import main
from stylenada.errors import StylenadaError
from stylenada.formats import save_generator


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A finished 3-step adaptive run of the tiny random generator with the tiny random CLIP."""
    from conftest import TEST_CLIP, TINY, make_test_clip, randomize_generator, register_test_clip
    from safetensors.torch import save_file

    from stylenada.models.stylegan2 import Generator

    tmp = tmp_path_factory.mktemp("viz")
    torch.manual_seed(0)
    G = randomize_generator(Generator(TINY)).eval()
    register_test_clip()
    clip = make_test_clip()
    weights = tmp / "clip.safetensors"
    save_file({k: v.contiguous() for k, v in clip.model.state_dict().items()}, str(weights))
    gen = save_generator(G, tmp / "g.safetensors")
    run = tmp / "run"
    assert main(["train", "--generator", str(gen), "--source", "photo", "--target", "sketch", "--iters", "3",
                 "--batch", "2", "--w-batch", "2", "--layers", "adaptive", "--k", "2", "--out", str(run),
                 "--clip", f"{TEST_CLIP}:{weights}", "--templates", "single", "--no-tensorboard",
                 "--sample-every", "1"]) == 0
    return run


def is_png(path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_training_curves_and_layer_heatmap(tiny_run, tmp_path):
    from stylenada.formats import load_generator
    from stylenada.viz.curves import layer_matrix, load_records, plot_training_curves, synthesis_layer_names

    names = synthesis_layer_names(load_generator(tiny_run / "generator.safetensors"))
    files = plot_training_curves(tiny_run, tmp_path, names)
    assert set(files) == {"losses", "lambdas", "source_text", "layers"} and all(is_png(p) for p in files.values())
    mat, steps = layer_matrix(load_records(tiny_run), names)
    assert mat.shape == (len(names), 3) and steps == [0, 1, 2]
    # Each step trains exactly the layers its selection named (k=2 W+ entries; no ToRGB).
    records = load_records(tiny_run)
    for j, r in enumerate(records):
        trained = {names[i] for i in np.flatnonzero(mat[:, j])}
        assert trained == set(r["selection"]["layers"]) and not any(n.endswith("torgb") for n in trained)


def test_directions_of_identical_generators_do_not_move(tiny_generator, random_clip, tmp_path):
    from stylenada.viz.directions import direction_data, plot_directions, project_2d

    data = direction_data(tiny_generator, tiny_generator, random_clip, "photo", "sketch", "single", n=6)
    assert torch.equal(data.frozen, data.adapted) and torch.all(data.cosine == 0)
    assert is_png(plot_directions(data, tmp_path / "d.png"))
    pts = torch.randn(10, 5)
    p = project_2d(pts)
    assert p.shape == (10, 2) and abs(float(p.mean())) < 1e-5


def frame_count(path) -> int:
    import imageio.v2 as imageio

    with imageio.get_reader(path) as r:
        return sum(1 for _ in r)


def test_videos_decode_with_the_right_frame_count(tiny_generator, tmp_path):
    import copy

    from stylenada.viz.video import cross_model_video, latent_walk_video

    other = copy.deepcopy(tiny_generator)
    with torch.no_grad():
        for p in other.synthesis.parameters():
            p.add_(0.05)
    n = latent_walk_video(tiny_generator, [other], tmp_path / "walk.mp4", n_keyframes=3, frames_per_transition=4)
    assert n == 12 and frame_count(tmp_path / "walk.mp4") == 12
    n = cross_model_video(tiny_generator, [other, tiny_generator], tmp_path / "cross.mp4", frames_per_model=5)
    assert n == 10 and frame_count(tmp_path / "cross.mp4") == 10
    import imageio.v2 as imageio

    first = imageio.get_reader(tmp_path / "walk.mp4").get_data(0)
    assert first.shape[0] % 16 == 0 and first.shape[1] >= 2 * first.shape[0]  # frozen | adapted side by side


class _Sections(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.images = [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self.ids.append(a.get("id"))
        if tag == "img":
            self.images.append(a.get("src", ""))


def test_report_has_every_section_with_inline_images(tiny_run, tmp_path, capsys):
    from conftest import TEST_CLIP

    out = tmp_path / "report.html"
    weights = tiny_run.parent / "clip.safetensors"
    assert main(["report", str(tiny_run), "--out", str(out), "--clip", f"{TEST_CLIP}:{weights}"]) == 0
    page = _Sections()
    page.feed(out.read_text())
    assert page.ids == ["config", "metrics", "curves", "layers", "source-text", "directions", "samples"]
    assert len(page.images) >= 7 and all(s.startswith("data:image/png;base64,") and len(s) > 200 for s in page.images)
    assert "CLIP directions not drawn" not in out.read_text()


def test_video_and_report_commands(tiny_run, tmp_path, capsys):
    assert main(["video", str(tiny_run), "--kind", "cross", "--frames", "3", "--out", str(tmp_path / "c.mp4")]) == 0
    assert "3 frames" in capsys.readouterr().out and frame_count(tmp_path / "c.mp4") == 3
    assert main(["report", str(tmp_path)]) == 1
    assert "not a run folder" in capsys.readouterr().err
    with pytest.raises(StylenadaError, match="not a run folder"):
        from stylenada.viz.curves import load_records

        load_records(tmp_path)
    assert json.loads((tiny_run / "config.json").read_text())["layers"] == "adaptive"
