"""The NADA trainer: strategies (who gets gradient), W+ -> layer map, source text, resume, a short run."""

import json
import os

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
from stylenada.utils.rundir import RunDir

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


def layer_of(param_name):
    return ".".join(param_name.split(".")[1:3])


ALL_32PX = ["b4.conv1", "b4.torgb", "b8.conv0", "b8.conv1", "b8.torgb", "b16.conv0", "b16.conv1", "b16.torgb",
            "b32.conv0", "b32.conv1", "b32.torgb"]


def test_all_strategy(gen_path, tmp_path, random_clip):
    tr, rec, got, changed = grads_after_one_step(gen_path, tmp_path, random_clip, "all")
    syn = {n for n, _ in tr.G_train.named_parameters() if n.startswith("synthesis.")}
    assert got == syn == changed
    assert not any(n.startswith("mapping.") for n in changed)


@pytest.mark.parametrize("k,torgb,layers", [
    (2, True, ["b32.conv1", "b32.torgb"]),  # entries 6 and 7
    (2, False, ["b32.conv0", "b32.conv1"]),  # entry 7 drives only a ToRGB: entries 5 and 6
    (3, True, ["b16.torgb", "b32.conv0", "b32.conv1", "b32.torgb"]),
])
def test_late_strategy_counts_w_entries(gen_path, tmp_path, random_clip, k, torgb, layers):
    tr, rec, got, changed = grads_after_one_step(gen_path, tmp_path, random_clip, "late", k=k, train_torgb=torgb)
    assert {layer_of(n) for n in changed} == set(layers)
    assert rec["selection"]["layers"] == layers


@pytest.mark.parametrize("layers", ["late", "adaptive"])
def test_k_equal_to_num_ws_trains_everything_the_entries_drive(gen_path, tmp_path, random_clip, layers):
    """k = num_ws (8 at 32 px) trains every conv and ToRGB; before, it was clamped to the number of layers
    and one of the chosen entries could map to nothing."""
    tr, rec, got, changed = grads_after_one_step(gen_path, tmp_path, random_clip, layers, k=8)
    assert rec["selection"]["layers"] == ALL_32PX
    assert {layer_of(n) for n in changed} == set(ALL_32PX)
    tr, rec, got, changed = grads_after_one_step(gen_path, tmp_path / "noto", random_clip, layers, k=8,
                                                 train_torgb=False)
    assert rec["selection"]["layers"] == [n for n in ALL_32PX if not n.endswith("torgb")]


def test_k_beyond_the_w_entries_is_refused(gen_path):
    with pytest.raises(StylenadaError, match="1 <= k <= 8"):
        make_strategy("adaptive", Generator(TINY), SelectionConfig(k=9))


def test_adaptive_skips_the_selection_when_k_covers_every_entry(gen_path, tmp_path, random_clip, monkeypatch):
    import stylenada.adapt.layers as L

    calls = []
    monkeypatch.setattr(L, "w_plus_scores", lambda *a: calls.append(1) or torch.zeros(8))
    tr = Trainer(make_cfg(gen_path, tmp_path / "s", layers="adaptive", selection=SelectionConfig(k=8, w_batch=2)),
                 clip_models=[(random_clip, 1.0)])
    rec0, rec1 = tr.train_step(), tr.train_step()
    assert calls == [] and rec0["selection"]["layers"] == ALL_32PX and "selection" not in rec1


@pytest.mark.parametrize("indices,layers", [
    ([0], ["b4.conv1"]),
    ([1], ["b8.conv0"]),  # entry 1 drives b4.torgb and b8.conv0; the official idx_to_layer maps 1 to to_rgb1 (b4.torgb)
    ([2], ["b8.conv1"]),  # ... and i >= 2 to convs[i - 2]: 2 -> b8.conv0, so its layers lag ours by one entry
    ([7], []),  # the last entry drives only the final ToRGB
    ([3, 6], ["b16.conv0", "b32.conv1"]),
])
def test_w_index_to_layer(indices, layers):
    G = Generator(TINY)
    assert layers_for_w_indices(G, indices, train_torgb=False) == layers


def test_w_index_to_layer_with_torgb():
    G = Generator(TINY)
    assert layers_for_w_indices(G, [1], train_torgb=True) == ["b4.torgb", "b8.conv0"]
    assert layers_for_w_indices(G, [7], train_torgb=True) == ["b32.torgb"]


def test_adaptive_picks_layers_of_top_w_entries(gen_path, tmp_path, random_clip, monkeypatch):
    import stylenada.adapt.layers as L

    scores = torch.zeros(8)
    scores[[2, 5]] = torch.tensor([1.0, 2.0])
    monkeypatch.setattr(L, "w_plus_scores", lambda G, obj, cfg: scores)
    tr, rec, got, changed = grads_after_one_step(gen_path, tmp_path, random_clip, "adaptive", k=2)
    assert rec["selection"]["layers"] == ["b8.conv1", "b16.torgb", "b32.conv0"]
    assert {layer_of(n) for n in changed} == {"b8.conv1", "b16.torgb", "b32.conv0"}


def test_adaptive_real_selection_follows_the_scores(gen_path, tmp_path, random_clip):
    """The real W+ optimisation: the chosen layers are exactly those driven by the k highest-scoring
    entries, and those are the only parameters that change."""
    tr, rec, got, changed = grads_after_one_step(gen_path, tmp_path, random_clip, "adaptive", k=3)
    sel = rec["selection"]
    scores = torch.tensor(sel["scores"])
    assert len(scores) == 8 and scores.abs().sum() > 0
    top = torch.topk(scores, 3).indices.tolist()
    assert sel["layers"] == layers_for_w_indices(tr.G_train, top, train_torgb=True)
    assert {layer_of(n) for n in changed} == set(sel["layers"])


def test_fine_grained_trains_only_modulation_and_noise(gen_path, tmp_path, random_clip):
    tr, rec, got, changed = grads_after_one_step(gen_path, tmp_path, random_clip, "adaptive_fine_grained", k=3)
    assert changed and all(".affine." in n or n.endswith("noise_strength") for n in changed)
    assert {layer_of(n) for n in changed} <= set(rec["selection"]["layers"])
    fraction = rec["selection"]["fraction"]
    assert all(0 < f < 1 for f in fraction.values())
    assert all(f < 0.5 for n, f in fraction.items() if ".conv" in n)  # the 3x3 kernels stay frozen


def test_param_level_tensor_spends_a_share_of_the_parameters(gen_path, tmp_path, random_clip):
    """Tensor level takes whole tensors by relative change until param_fraction of the candidate
    parameters is spent (before: a share of the tensors by mean |change|, which took scalars and biases,
    a few hundred parameters in all)."""
    tr, rec, got, changed = grads_after_one_step(gen_path, tmp_path, random_clip, "adaptive_param",
                                                 param_level="tensor", param_fraction=0.2)
    cands = {n: p for n, p in tr.G_train.synthesis.named_parameters() if not n.endswith("const")}
    total = sum(p.numel() for p in cands.values())
    trained = sum(p.numel() for n, p in cands.items() if p.requires_grad)
    largest = max(p.numel() for p in cands.values())
    assert 0.2 * total <= trained <= 0.2 * total + largest
    assert any(p.ndim == 4 and p.requires_grad for p in cands.values())  # a conv weight made the cut


def test_param_level_probe_is_scale_free_at_the_first_step(gen_path, tmp_path, random_clip):
    """At step 0 the directional gradient is ~1/eps; the probe's normalised step keeps the copy sane."""
    from stylenada.adapt.layers import AdaptiveParameters

    tr = Trainer(make_cfg(gen_path, tmp_path / "p", layers="adaptive_param", noise_mode="const"),
                 clip_models=[(random_clip, 1.0)])
    strategy = AdaptiveParameters(tr.G_train, SelectionConfig(w_batch=2, inner_lr=0.01))
    delta = strategy.probe_change(tr.objective)
    flat = torch.cat([d.flatten() for d in delta.values()])
    assert torch.isfinite(flat).all() and flat.square().mean().sqrt() == pytest.approx(0.01, rel=1e-3)


def test_param_level_element_masks(gen_path, tmp_path, random_clip):
    tr, rec, got, changed = grads_after_one_step(gen_path, tmp_path, random_clip, "adaptive_param",
                                                 param_level="element", param_fraction=0.05)
    masks = tr.strategy._masks
    assert masks
    total = sum(p.numel() for n, p in tr.G_train.synthesis.named_parameters() if not n.endswith("const"))
    kept = sum(int(m.sum()) for m in masks.values())
    assert abs(kept - 0.05 * total) <= 0.01 * total + 1
    for name, mask in masks.items():
        g = tr.G_train.synthesis.get_parameter(name).grad
        assert g is not None and torch.all(g[mask == 0] == 0)


def parameter_moves(tr, steps):
    moves = []
    for _ in range(steps):
        before = [p.detach().clone() for p in tr.G_train.parameters()]
        tr.train_step()
        moves.append(sum((p.detach() - b).square().sum() for p, b in zip(tr.G_train.parameters(), before,
                                                                         strict=True)).sqrt().item())
    return moves


@pytest.mark.parametrize("noise_mode", ["random", "const"])
@pytest.mark.parametrize("layers", ["all", "adaptive_param"])
def test_steps_after_the_first_are_not_frozen(gen_path, tmp_path, random_clip, noise_mode, layers):
    """At step 0 the two generators agree, so the directional loss's gradient is ~1/|change| (1e6 with
    const noise). Left in Adam's second moment it shrank every later step ~100x; now each later step moves
    the parameters within a small factor of the first."""
    tr = Trainer(make_cfg(gen_path, tmp_path / "m", layers=layers, noise_mode=noise_mode, lr=0.002),
                 clip_models=[(random_clip, 1.0)])
    moves = parameter_moves(tr, 6)
    assert all(m > moves[0] / 4 for m in moves[1:]), moves


def test_both_generators_see_the_same_noise(gen_path, tmp_path, random_clip):
    """With random noise the pair is rendered under one draw: before any update L2 and the image change
    are exactly 0 (independent draws gave a floor, and an L2 gradient that pushed noise strengths to 0)."""
    tr = Trainer(make_cfg(gen_path, tmp_path / "n", noise_mode="random"), clip_models=[(random_clip, 1.0)])
    with torch.no_grad():
        tr.G_train.synthesis.b8.conv0.noise_strength.fill_(0.5)
        tr.G_frozen.synthesis.b8.conv0.noise_strength.fill_(0.5)
    a, b = tr.objective.render_pair(tr.G_train, tr.objective.sample_ws(2))
    assert torch.equal(a, b)
    c, d = tr.objective.render_pair(tr.G_train, tr.objective.sample_ws(2))
    assert not torch.equal(a, c)  # fresh noise every call
    rec = tr.train_step()
    assert rec["loss/l2"] == 0.0 and rec["image_change"] < 1e-5  # (CLIP with and without autograd: ~1e-7)


def test_train_mapping_trains_the_mapping(gen_path, tmp_path, random_clip):
    for flag in (True, False):
        tr = Trainer(make_cfg(gen_path, tmp_path / f"map{flag}", layers="late", train_mapping=flag,
                              selection=SelectionConfig(k=1, w_batch=2)), clip_models=[(random_clip, 1.0)])
        before = {n: p.detach().clone() for n, p in tr.G_train.mapping.named_parameters()}
        tr.train_step(), tr.train_step()
        moved = any(not torch.equal(p, before[n]) for n, p in tr.G_train.mapping.named_parameters())
        assert moved == flag


def test_unknown_strategy_and_bad_options(gen_path, tmp_path, random_clip):
    with pytest.raises(StylenadaError, match="unknown --layers 'bogus'"):
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


def test_best_caption_breaks_near_ties_toward_the_target():
    """Captions that describe the images about equally well are told apart by their closeness to the target
    text; a caption the images do not fit stays out however near the target it is, and so does the target."""
    clip = FixedClip({"bg": [1.0, 0.2, 0.0], "red": [1.0, 0.1, 0.3], "far": [0.0, 0.0, 1.0], "mid": [0.5, 0.0, 1.0],
                      "blue": [0.8, 0.0, 0.6]})
    images, cands = torch.zeros(4, 3, 8, 8), ["bg", "red", "far", "mid"]
    assert best_caption(images, cands, [(clip, 1.0)], "single")[0] == "bg"  # the best image score alone
    text, scores = best_caption(images, cands, [(clip, 1.0)], "single", target="blue")
    assert text == "red" and scores["bg"] > scores["red"] > scores["mid"]  # "mid" is nearer "blue" than "bg" is
    assert best_caption(images, cands, [(clip, 1.0)], "single", target="blue", near_tie=0.0)[0] == "bg"
    assert best_caption(images, cands, [(clip, 1.0)], "single", target="red")[0] == "bg"  # never the target
    # the target alone near the best: the best-scoring other candidate instead
    assert best_caption(images, cands, [(clip, 1.0)], "single", target="bg", near_tie=0.0)[0] == "red"



class PixelClip(FixedClip):
    """A stand-in CLIP whose image embedding is each image's first three pixel values."""

    def encode_image(self, images):
        return images[:, :, 0, 0]


def test_caption_scores_average_over_recaptions():
    """With a history, a re-caption scores the candidates over every batch so far: a batch that alone
    favours "b" does not flip the choice that the images as a whole support, and the state round-trips."""
    from stylenada.adapt.source_text import CaptionScores

    clip = PixelClip({"a": [1.0, 0.0, 0.0], "b": [0.0, 1.0, 0.0], "c": [0.0, 0.0, 1.0]})
    first, second = torch.zeros(4, 3, 2, 2), torch.zeros(2, 3, 2, 2)
    first[:, 0, 0, 0] = 1.0  # every image of the first batch is "a"
    second[:, 1, 0, 0] = 1.0  # the second batch alone says "b"
    history = CaptionScores()
    assert best_caption(first, ["a", "b", "c"], [(clip, 1.0)], "single", history=history)[0] == "a"
    assert best_caption(second, ["a", "b", "c"], [(clip, 1.0)], "single")[0] == "b"
    text, scores = best_caption(second, ["a", "b", "c"], [(clip, 1.0)], "single", history=history)
    assert text == "a" and scores["a"] == pytest.approx(4 / 6) and scores["b"] == pytest.approx(2 / 6)
    restored = CaptionScores()
    restored.load_state_dict(history.state_dict())
    assert restored.images == 6 and torch.equal(restored.total, history.total)

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


def test_dynamic_source_resume_equals_uninterrupted(gen_path, tmp_path, random_clip):
    """The caption scores averaged over re-captions are part of the checkpoint: a resumed dynamic run
    chooses and trains as the uninterrupted one."""
    clips = [(random_clip, 1.0)]
    kw = dict(source_text="dynamic", source_candidates="a photo,a drawing,a dog", source_interval=1, layers="all")
    full = adapt(make_cfg(gen_path, tmp_path / "full", iters=4, **kw), clip_models=clips, progress=False)
    part = adapt(make_cfg(gen_path, tmp_path / "part", iters=2, **kw), clip_models=clips, progress=False)
    resumed = resume(part.run_dir, iters=4, clip_models=clips, progress=False)
    def sources(run):
        return [json.loads(x).get("source") for x in (run.run_dir / "metrics.jsonl").read_text().splitlines()]

    assert sources(full) == sources(resumed)

    def scored_images(run):
        rundir = RunDir(run.run_dir)
        state = torch.load(rundir.checkpoint(rundir.latest_checkpoint())[1], weights_only=True)
        return state["caption_scores"]["images"]

    assert scored_images(resumed) == scored_images(full) == 4 * make_cfg(gen_path, tmp_path / "x").source_batch
    a, b = load_generator(full.generator_path), load_generator(resumed.generator_path)
    for (n, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(p, q), n


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


@pytest.mark.parametrize("layers", ["adaptive", "adaptive_param"])
def test_activation_checkpointing_trains_the_same(gen_path, tmp_path, random_clip, layers):
    """Recomputing the trainable generator's activations (selection, probe copy and step) changes no result."""
    runs = [adapt(make_cfg(gen_path, tmp_path / f"ckpt{on}", iters=3, layers=layers, lambda_l2=1.0,
                           activation_checkpointing=on), clip_models=[(random_clip, 1.0)], progress=False)
            for on in (False, True)]
    a, b = (load_generator(r.generator_path) for r in runs)
    assert not torch.equal(a.synthesis.b32.conv1.weight, load_generator(gen_path).synthesis.b32.conv1.weight)
    for (n, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-6, msg=n)


def test_resume_after_a_log_line_cut_short(gen_path, tmp_path, random_clip):
    """A kill while appending to metrics.jsonl leaves half a line: the resume drops it (and only a last one)."""
    clips = [(random_clip, 1.0)]
    part = adapt(make_cfg(gen_path, tmp_path / "cut", iters=2), clip_models=clips, progress=False)
    log = part.run_dir / "metrics.jsonl"
    log.write_text(log.read_text() + '{"step": 2, "loss/cl')
    resumed = resume(part.run_dir, iters=3, clip_models=clips, progress=False)
    assert [json.loads(x)["step"] for x in log.read_text().splitlines()] == [0, 1, 2]
    assert resumed.metrics["steps"] == 3
    log.write_text('{"step": 0, "los\n' + log.read_text())
    with pytest.raises(StylenadaError, match="line 1 is not JSON"):
        resume(part.run_dir, iters=4, clip_models=clips, progress=False)


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
    # Step 0: the two generators agree, so the image change is zero and 1 - cos is 1.
    assert rec["loss/clip"] == pytest.approx(1.0, abs=0.01) and rec["selection"]["layers"]
    assert tr.train_step()["image_change"] > 1e-3  # the first step has moved the images
    with pytest.raises(StylenadaError, match="no images"):
        (tmp_path / "empty").mkdir()
        Trainer(make_cfg(gen_path, tmp_path / "x", target="", target_images=str(tmp_path / "empty")),
                clip_models=[(random_clip, 1.0)])


def test_old_checkpoints_are_pruned(gen_path, tmp_path, random_clip):
    cfg = make_cfg(gen_path, tmp_path / "ck", iters=5, checkpoint_every=1, keep_checkpoints=2)
    res = adapt(cfg, clip_models=[(random_clip, 1.0)], progress=False)
    kept = sorted(p.name for p in (res.run_dir / "checkpoints").iterdir())
    assert kept == ["latest.json", "step000004.safetensors", "step000004.state.pt", "step000005.safetensors",
                    "step000005.state.pt"]
    resume(res.run_dir, iters=6, clip_models=[(random_clip, 1.0)], progress=False)


def test_target_images_keep_their_aspect_for_clip(tmp_path):
    """Image-guided targets are embedded as CLIP embeds any image (shorter side resized, centre crop),
    not squashed to the generator's square resolution first."""
    from stylenada.adapt.trainer import load_target_images
    from stylenada.utils.images import save_image

    save_image(torch.rand(3, 20, 60) * 2 - 1, tmp_path / "wide.png")
    (img,) = load_target_images(tmp_path)
    assert img.shape == (1, 3, 20, 60)


@pytest.mark.parametrize("name", sorted(__import__("stylenada.adapt.layers", fromlist=["STRATEGIES"]).STRATEGIES))
def test_every_registered_strategy(name, gen_path, tmp_path, random_clip):
    """Each strategy of the registry, the same checks: only what its selection names (and masks) changes,
    two runs with one seed agree exactly, and its state round-trips so a resumed run trains the same."""
    sel = SelectionConfig(w_batch=2, k=3)

    def steps(out, n=2):
        """n steps; for each, the parameters that changed and those its selection set to train."""
        tr = Trainer(make_cfg(gen_path, out, layers=name, selection=sel), clip_models=[(random_clip, 1.0)])
        log = []
        for _ in range(n):
            before = {k: p.detach().clone() for k, p in tr.G_train.synthesis.named_parameters()}
            rec = tr.train_step()
            trained = {k for k, p in tr.G_train.synthesis.named_parameters() if p.requires_grad}
            changed = {k for k, p in tr.G_train.synthesis.named_parameters() if not torch.equal(p.detach(), before[k])}
            log.append((rec, trained, changed))
        return tr, log

    tr, log = steps(tmp_path / "a")
    for rec, trained, changed in log:
        assert changed <= trained
        if "selection" in rec:
            named = set(rec["selection"]["layers"])
            assert all(any(n == layer or n.startswith(layer + ".") for layer in named) for n in trained)
        if name != "none":
            assert changed
    assert log[-1][0].get("selection", log[0][0]["selection"])["trained_parameters"] == \
        tr.strategy.trained_parameters()
    tr2, _ = steps(tmp_path / "b")
    for (n, p), (_, q) in zip(tr.G_train.state_dict().items(), tr2.G_train.state_dict().items(), strict=True):
        assert torch.equal(p, q), n
    fresh = Trainer(make_cfg(gen_path, tmp_path / "c", layers=name, selection=sel), clip_models=[(random_clip, 1.0)])
    fresh.strategy.load_state_dict(tr.strategy.state_dict())
    assert fresh.strategy.trained_parameters() == tr.strategy.trained_parameters()


def test_resume_before_the_first_checkpoint_restarts(gen_path, tmp_path, random_clip):
    """A run stopped before any checkpoint (here: its folder holds a config and a partial log only, plus a
    temporary file of an interrupted write) starts again on --resume and ends like an uninterrupted run."""
    clips = [(random_clip, 1.0)]
    full = adapt(make_cfg(gen_path, tmp_path / "full", iters=3), clip_models=clips, progress=False)
    cfg = make_cfg(gen_path, tmp_path / "cut", iters=3)
    run = tmp_path / "cut"
    run.mkdir()
    cfg.save(run / "config.json")
    (run / "metrics.jsonl").write_text('{"step": 0}\n')
    (run / ".generator.safetensors.abc.tmp").write_bytes(b"half")
    resumed = resume(run, clip_models=clips, progress=False)
    assert not list(run.rglob("*.tmp"))
    a, b = load_generator(full.generator_path), load_generator(resumed.generator_path)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_first_checkpoint_comes_after_one_step(gen_path, tmp_path, random_clip):
    res = adapt(make_cfg(gen_path, tmp_path / "r", iters=3, checkpoint_every=100, keep_checkpoints=0),
                clip_models=[(random_clip, 1.0)], progress=False)
    names = sorted(p.name for p in (res.run_dir / "checkpoints").glob("*.safetensors"))
    assert names == ["step000001.safetensors", "step000003.safetensors"]


@pytest.mark.gpu
def test_resume_equals_uninterrupted_on_cuda(gen_path, tmp_path, random_clip):
    """On a GPU: latents, noise and selection draws come from the run's CPU generator, saved in the
    checkpoint, so a resumed CUDA run ends with the same weights as an uninterrupted one."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device here (run benchmarks/gpu.sh on a GPU machine)")
    clips = [(random_clip.to("cuda"), 1.0)]
    kw = dict(layers="adaptive", weighting="learned", lambda_l2=1.0, device="cuda")
    full = adapt(make_cfg(gen_path, tmp_path / "full", iters=4, **kw), clip_models=clips, progress=False)
    part = adapt(make_cfg(gen_path, tmp_path / "part", iters=2, **kw), clip_models=clips, progress=False)
    resumed = resume(part.run_dir, iters=4, clip_models=clips, progress=False)
    a, b = load_generator(full.generator_path), load_generator(resumed.generator_path)
    for (n, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=n)


def test_release_memory_leaves_glibc_returning_freed_memory(monkeypatch):
    """A run with release_memory does not ask glibc to recycle freed memory (recycling fragments the heap)."""
    from stylenada.utils import runtime

    calls = []
    monkeypatch.setattr(runtime, "keep_freed_memory", lambda: calls.append(1) or True)
    monkeypatch.delenv("THP_MEM_ALLOC_ENABLE", raising=False)
    assert runtime.set_allocator(TrainConfig(release_memory=True).release_memory) is False and calls == []
    assert os.environ["THP_MEM_ALLOC_ENABLE"] == "1"  # fresh memory in huge pages, where the kernel allows
    assert runtime.set_allocator(TrainConfig().release_memory) is True and calls == [1]
