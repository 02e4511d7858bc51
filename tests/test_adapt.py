"""The NADA trainer: strategies (who gets gradient), W+ -> layer map, source text, resume, a short run."""

import json

import pytest
import torch

from stylenada.adapt.config import TrainConfig
from stylenada.adapt.layers import (
    SelectionConfig,
    layers_for_w_indices,
    make_strategy,
)
from stylenada.adapt.source_text import best_caption, candidate_list
from stylenada.adapt.trainer import Trainer, adapt, resume
from stylenada.errors import StylenadaError
from stylenada.formats import load_generator, save_generator
from stylenada.models.stylegan2 import Generator, GeneratorConfig

TINY = GeneratorConfig(resolution=32, z_dim=32, w_dim=32, mapping_layers=2, channel_base=512, channel_max=16)


@pytest.fixture
def gen_path(tmp_path):
    torch.manual_seed(0)
    return save_generator(Generator(TINY), tmp_path / "g.safetensors")


def make_cfg(gen_path, out, **kw):
    base = dict(generator=str(gen_path), source="a photo", target="a sketch", out=str(out), iters=3, batch=2,
                templates="single", sample_every=0, checkpoint_every=0, tensorboard=False, n_samples=2,
                selection=SelectionConfig(w_batch=2))
    base.update(kw)
    return TrainConfig(**base)


def grads_after_one_step(gen_path, tmp_path, clip, layers, **sel):
    cfg = make_cfg(gen_path, tmp_path / layers, layers=layers, selection=SelectionConfig(w_batch=2, **sel))
    tr = Trainer(cfg, clip_models=[(clip, 1.0)])
    before = {n: p.detach().clone() for n, p in tr.G_train.named_parameters()}
    rec = tr.train_step()
    got = {n for n, p in tr.G_train.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    changed = {n for n, p in tr.G_train.named_parameters() if not torch.equal(p.detach(), before[n])}
    return tr, rec, got, changed


def test_all_strategy(gen_path, tmp_path, random_clip):
    tr, rec, got, changed = grads_after_one_step(gen_path, tmp_path, random_clip, "all")
    syn = {n for n, _ in tr.G_train.named_parameters() if n.startswith("synthesis.") and ".torgb." not in n}
    assert got == syn == changed
    assert not any(n.startswith("mapping.") for n in changed)


def test_late_strategy(gen_path, tmp_path, random_clip):
    tr, rec, got, changed = grads_after_one_step(gen_path, tmp_path, random_clip, "late", k=2)
    assert {n.split(".")[1] + "." + n.split(".")[2] for n in changed} == {"b32.conv0", "b32.conv1"}
    assert rec["selection"]["layers"] == ["b32.conv0", "b32.conv1"]


@pytest.mark.parametrize("indices,layers", [
    ([0], ["b4.conv1"]),
    ([1], ["b8.conv0"]),  # entry 1 drives b4.torgb and b8.conv0; the official code maps it to b8.conv1
    ([2], ["b8.conv1"]),
    ([7], []),  # the last entry drives only the final ToRGB
    ([3, 6], ["b16.conv0", "b32.conv1"]),
])
def test_w_index_to_layer(indices, layers):
    G = Generator(TINY)
    assert layers_for_w_indices(G, indices, train_torgb=False) == layers


def test_adaptive_picks_layers_of_top_w_entries(gen_path, tmp_path, random_clip, monkeypatch):
    import stylenada.adapt.layers as L

    scores = torch.zeros(8)
    scores[[2, 5]] = torch.tensor([1.0, 2.0])
    monkeypatch.setattr(L, "w_plus_scores", lambda G, obj, cfg: scores)
    tr, rec, got, changed = grads_after_one_step(gen_path, tmp_path, random_clip, "adaptive", k=2)
    assert rec["selection"]["layers"] == ["b8.conv1", "b32.conv0"]
    assert {".".join(n.split(".")[1:3]) for n in changed} == {"b8.conv1", "b32.conv0"}


def test_adaptive_real_selection(gen_path, tmp_path, random_clip):
    tr, rec, got, changed = grads_after_one_step(gen_path, tmp_path, random_clip, "adaptive", k=3)
    sel = rec["selection"]
    assert len(sel["scores"]) == 8 and len(sel["layers"]) <= 3
    assert {".".join(n.split(".")[1:3]) for n in changed} == set(sel["layers"])


def test_fine_grained_trains_only_modulation_and_noise(gen_path, tmp_path, random_clip):
    tr, rec, got, changed = grads_after_one_step(gen_path, tmp_path, random_clip, "adaptive_fine_grained", k=3)
    assert changed and all(".affine." in n or n.endswith("noise_strength") for n in changed)
    assert {".".join(n.split(".")[1:3]) for n in changed} <= set(rec["selection"]["layers"])
    assert all(0 < f < 0.5 for f in rec["selection"]["fraction"].values())


def test_param_level_tensor(gen_path, tmp_path, random_clip):
    tr, rec, got, changed = grads_after_one_step(gen_path, tmp_path, random_clip, "adaptive_param",
                                                 param_level="tensor", param_fraction=0.2)
    n_candidates = sum(1 for n, _ in tr.G_train.named_parameters() if n.startswith("synthesis.")
                       and ".torgb." not in n and not n.endswith("const"))
    assert len(changed) == round(0.2 * n_candidates)


def test_param_level_element_masks(gen_path, tmp_path, random_clip):
    tr, rec, got, changed = grads_after_one_step(gen_path, tmp_path, random_clip, "adaptive_param",
                                                 param_level="element", param_fraction=0.05)
    masks = tr.strategy._masks
    assert masks
    total = sum(p.numel() for n, p in tr.G_train.synthesis.named_parameters() if ".torgb." not in n
                and not n.endswith("const"))
    kept = sum(int(m.sum()) for m in masks.values())
    assert abs(kept - 0.05 * total) <= 0.01 * total + 1
    for name, mask in masks.items():
        g = tr.G_train.synthesis.get_parameter(name).grad
        assert g is not None and torch.all(g[mask == 0] == 0)


def test_unknown_strategy_and_bad_options(gen_path, tmp_path, random_clip):
    with pytest.raises(StylenadaError, match="unknown layer strategy"):
        make_cfg(gen_path, tmp_path / "x", layers="bogus").validate()
    with pytest.raises(StylenadaError, match="param-level"):
        make_strategy("adaptive_param", Generator(TINY), SelectionConfig(param_level="rows"))


@pytest.mark.parametrize("kw,msg", [
    (dict(target=""), "empty target"),
    (dict(source="  "), "empty source"),
    (dict(target="A Photo"), "identical"),
    (dict(generator=""), "no generator"),
    (dict(batch=0), "batch"),
    (dict(lr=float("nan")), "lr"),
])
def test_config_errors(gen_path, tmp_path, kw, msg):
    with pytest.raises(StylenadaError, match=msg):
        make_cfg(gen_path, tmp_path / "x", source=kw.pop("source", "a photo"), **kw).validate()


def test_missing_generator(tmp_path, random_clip):
    from stylenada.errors import CheckpointError

    with pytest.raises(CheckpointError, match="not found"):
        Trainer(make_cfg(tmp_path / "nope.pt", tmp_path / "r"), clip_models=[(random_clip, 1.0)])


class FixedClip:
    """A stand-in CLIP with known embeddings, for checking the selection rule itself."""

    def __init__(self, text_vecs):
        self.text_vecs = text_vecs

    def encode_image(self, images):
        return torch.tensor([[1.0, 0.2, 0.0]]).expand(len(images), 3)

    def text_embedding(self, text, templates):
        return torch.tensor(self.text_vecs[text])


def test_best_caption_picks_highest_mean_cosine():
    clip = FixedClip({"a": [0.0, 1.0, 0.0], "b": [1.0, 0.0, 0.0], "c": [0.0, 0.0, 1.0]})
    text, scores = best_caption(torch.zeros(4, 3, 8, 8), ["a", "b", "c"], [(clip, 1.0)], "single")
    assert text == "b" and scores["b"] > scores["a"] > scores["c"]


def test_candidate_lists():
    assert "a red shape" in candidate_list("shapes")
    assert candidate_list("x, y ,z") == ["x", "y", "z"]
    with pytest.raises(StylenadaError, match="at least 2"):
        candidate_list("only one")


def test_dynamic_source_is_logged(gen_path, tmp_path, random_clip):
    cfg = make_cfg(gen_path, tmp_path / "dyn", source_text="dynamic", source_candidates="a photo,a drawing,a dog",
                   source_interval=2, iters=4, layers="all")
    res = adapt(cfg, clip_models=[(random_clip, 1.0)], progress=False)
    recs = [json.loads(x) for x in (res.run_dir / "metrics.jsonl").read_text().splitlines()]
    chosen = [r["source"] for r in recs if "source" in r]
    assert [r["step"] for r in recs if "source" in r] == [0, 2]
    assert all(c in ("a photo", "a drawing", "a dog") for c in chosen)


def test_resume_equals_uninterrupted(gen_path, tmp_path, random_clip):
    clips = [(random_clip, 1.0)]
    full = adapt(make_cfg(gen_path, tmp_path / "full", iters=4, layers="adaptive", weighting="learned",
                          lambda_l2=1.0), clip_models=clips, progress=False)
    part = adapt(make_cfg(gen_path, tmp_path / "part", iters=2, layers="adaptive", weighting="learned",
                          lambda_l2=1.0), clip_models=clips, progress=False)
    resumed = resume(part.run_dir, iters=4, clip_models=clips, progress=False)
    a, b = load_generator(full.generator_path), load_generator(resumed.generator_path)
    for (n, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(p, q), n
    la = (full.run_dir / "metrics.jsonl").read_text().splitlines()
    lb = (resumed.run_dir / "metrics.jsonl").read_text().splitlines()
    strip = lambda lines: [{k: v for k, v in json.loads(x).items() if k != "time"} for x in lines]  # noqa: E731
    assert strip(la) == strip(lb)


def test_existing_run_is_not_overwritten(gen_path, tmp_path, random_clip):
    cfg = make_cfg(gen_path, tmp_path / "r", iters=1)
    adapt(cfg, clip_models=[(random_clip, 1.0)], progress=False)
    with pytest.raises(StylenadaError, match="--resume"):
        adapt(cfg, clip_models=[(random_clip, 1.0)], progress=False)


def test_outputs_of_a_run(gen_path, tmp_path, random_clip):
    cfg = make_cfg(gen_path, tmp_path / "o", iters=2, sample_every=1, checkpoint_every=1, export_rosinality=True,
                   tensorboard=True)
    res = adapt(cfg, clip_models=[(random_clip, 1.0)], progress=False)
    names = {p.relative_to(res.run_dir).as_posix() for p in res.run_dir.rglob("*") if p.is_file()}
    for want in ("config.json", "metrics.jsonl", "summary.json", "generator.safetensors", "generator.pt",
                 "samples/step000000.png", "samples/step000001.png", "samples/final.png",
                 "checkpoints/latest.json", "checkpoints/step000001.safetensors", "checkpoints/step000001.state.pt"):
        assert want in names, want
    assert any(n.startswith("tensorboard/events") for n in names)
    assert TrainConfig.from_dict(json.loads((res.run_dir / "config.json").read_text())) == cfg
    assert not any(".tmp" in n for n in names)


def test_directional_loss_falls(gen_path, tmp_path, random_clip):
    """With a random CLIP the loss starts near 1 (noise-driven changes are unrelated to the text) and
    falls within a few steps; the shapes-world tests show the full effect with a trained CLIP."""
    cfg = make_cfg(gen_path, tmp_path / "fall", iters=20, layers="all", batch=4, lr=0.01)
    res = adapt(cfg, clip_models=[(random_clip, 1.0)], progress=False)
    losses = [json.loads(x)["loss/clip"] for x in (res.run_dir / "metrics.jsonl").read_text().splitlines()]
    last = sum(losses[-10:]) / 10
    assert losses[0] > 0.9 and last < losses[0] - 0.1, (losses[0], last)


def test_selection_chunks_give_the_same_scores(gen_path, tmp_path, random_clip):
    from stylenada.adapt.layers import w_plus_scores

    tr = Trainer(make_cfg(gen_path, tmp_path / "c"), clip_models=[(random_clip, 1.0)])
    scores = []
    for chunk in (1, 4):
        tr.rng.manual_seed(7)
        scores.append(w_plus_scores(tr.G_train, tr.objective, SelectionConfig(w_batch=4, chunk=chunk)))
    torch.testing.assert_close(scores[0], scores[1], rtol=1e-4, atol=1e-7)


def test_image_guided_mode(gen_path, tmp_path, random_clip):
    from stylenada.utils.images import save_image

    folder = tmp_path / "targets"
    for i in range(3):
        save_image(torch.rand(3, 32, 32) * 2 - 1, folder / f"t{i}.png")
    cfg = make_cfg(gen_path, tmp_path / "img", target="", target_images=str(folder), iters=2, layers="adaptive")
    tr = Trainer(cfg, clip_models=[(random_clip, 1.0)])
    d = tr.objective.directions[0]
    assert d.norm().item() == pytest.approx(1.0, abs=1e-5) and tr.objective.target_embeddings == [None]
    rec = tr.train_step()
    assert rec["loss/clip"] > 0 and rec["selection"]["layers"]
    with pytest.raises(StylenadaError, match="no images"):
        (tmp_path / "empty").mkdir()
        Trainer(make_cfg(gen_path, tmp_path / "x", target="", target_images=str(tmp_path / "empty")),
                clip_models=[(random_clip, 1.0)])
