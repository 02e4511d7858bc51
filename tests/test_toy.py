"""The shapes world: renderer, captions, reader, tiny CLIP, tiny GAN, metrics, and the demo's claims."""

import dataclasses
import json
import shutil

import pytest
import torch
import torch.nn.functional as F

from stylenada.errors import StylenadaError
from stylenada.eval.metrics import frechet_distance
from stylenada.toy.render import (
    COLOURS,
    DOMAINS,
    SHAPES,
    STYLES,
    Domain,
    ShapeAttributes,
    caption,
    caption_matches,
    render,
    render_batch,
)
from stylenada.toy.tasks import TASKS, task_metrics


def test_render_is_deterministic_and_in_range():
    a, attrs_a = render_batch(16, "all", 3)
    b, attrs_b = render_batch(16, "all", 3)
    assert torch.equal(a, b) and attrs_a == attrs_b
    assert a.shape == (16, 3, 32, 32) and a.min() >= -1 and a.max() <= 1
    big, _ = render_batch(4, "all", 3, size=64)
    assert big.shape == (4, 3, 64, 64)


def test_domains_cover_their_values():
    _, attrs = render_batch(400, "all", 0)
    assert {a.shape for a in attrs} == set(SHAPES) and {a.colour for a in attrs} == set(COLOURS)
    assert {a.style for a in attrs} == set(STYLES)
    _, src = render_batch(200, "source", 0)
    assert {a.colour for a in src} == {"red"} and {a.style for a in src} == {"filled"}
    assert {a.shape for a in src} == set(SHAPES) and {a.background for a in src} == {"white"}
    with pytest.raises(ValueError, match="unknown"):
        Domain(colours=("teal",))


def test_rendered_pixels_match_attributes():
    a = ShapeAttributes("square", "blue", "filled", 0.5, 0.0, 0.0, "white")
    img = render([a])[0]
    assert torch.allclose(img[:, 16, 16], torch.tensor(COLOURS["blue"]) / 127.5 - 1)  # centre is ink
    assert torch.allclose(img[:, 0, 0], torch.ones(3))  # corner is white background
    outline = render([ShapeAttributes("square", "blue", "outline", 0.5, 0.0, 0.0, "white")])[0]
    assert torch.allclose(outline[:, 16, 16], torch.ones(3))  # an outline's inside is background
    assert (outline != 1).any(dim=0).float().mean() < (img != 1).any(dim=0).float().mean() / 2


def test_captions_state_true_facts():
    rng = torch.Generator().manual_seed(0)
    _, attrs = render_batch(200, "all", 1)
    for a in attrs:
        text, mentioned = caption(a, rng)
        assert caption_matches(mentioned, a)
        for value in mentioned.values():
            assert value in text or (value == "filled" and "solid" in text) or value == "outline"
    other = ShapeAttributes("circle", "red", "filled", 0.4, 0, 0, "white")
    assert not caption_matches({"colour": "blue"}, other) and caption_matches({"shape": "circle"}, other)


def test_frechet_distance_known_answers():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4000, 3, generator=g)
    y = torch.randn(4000, 3, generator=g)
    assert frechet_distance(x, y) < 0.02
    assert frechet_distance(x, y + torch.tensor([2.0, 0, 0])) == pytest.approx(4.0, rel=0.05)
    assert frechet_distance(x, 2 * y) == pytest.approx(3 * (1 + 4 - 2 * 2), rel=0.1)


# --- shipped models -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reader():
    from stylenada.toy.reader import load_reader

    return load_reader()


@pytest.fixture(scope="module")
def tiny_clip():
    from stylenada.clip import load_clip

    return load_clip("tiny-shapes")


@pytest.fixture(scope="module")
def shapes_gan():
    from stylenada.formats import load_generator
    from stylenada.toy.demo import GENERATOR

    return load_generator(GENERATOR)


def test_reader_accuracy(reader):
    from stylenada.toy.reader import reader_accuracy

    acc = reader_accuracy(reader, n=400, seed=2024)
    for k in ("shape", "colour", "style", "background"):
        assert acc[k] >= 0.98, acc
    assert acc["x_mae"] < 0.05 and acc["y_mae"] < 0.05 and acc["size_mae"] < 0.05, acc
    assert acc["valid"] >= 0.95, acc


def test_reader_rejects_noise(reader):
    err, _ = reader.validity(torch.rand(32, 3, 32, 32) * 2 - 1)
    from stylenada.toy.reader import VALID_MAX_ERROR

    assert (err > VALID_MAX_ERROR).all()


@pytest.mark.parametrize("name", ["tiny-shapes", "tiny-shapes-rn"])
def test_tiny_clip_zero_shot(name):
    from stylenada.clip import load_clip
    from stylenada.toy.train_clip import zero_shot_accuracy

    clip = load_clip(name)
    acc = zero_shot_accuracy(clip.model, clip.tokenizer, n=400, seed=99)
    assert acc["colour"] >= 0.95 and acc["shape"] >= 0.95 and acc["style"] >= 0.95, acc


@pytest.mark.parametrize("name", ["tiny-shapes", "tiny-shapes-rn"])
def test_teachers_score_the_asked_change_above_the_decoys(name):
    """Each shipped teacher gives the asked change a directional cosine near 1, and every cheap edit a
    generator could make instead (tinted or grey background, blur, a larger object, another colour for
    the style and shape tasks) at least 0.3 less; the first shipped teacher scored the asked colour
    change 0.90 and shape change 0.91 (docs: stylenada/toy/weights/README.md)."""
    from stylenada.clip import load_clip
    from stylenada.toy.fooling import edit_scores

    clip = load_clip(name)
    decoys = {"colour": ["background 15% blue", "background 15% pink", "background 15% cyan", "background grey",
                         "another shape (cross)", "larger object", "blur", "outline, interior half filled"],
              "style": ["object 30% toward blue", "object 30% darker", "object purple", "background 15% blue",
                        "background grey", "another shape (cross)", "larger object", "blur"],
              "shape": ["object 30% toward blue", "object 30% darker", "background 15% blue", "background grey",
                        "larger object", "blur", "another shape (cross)"]}
    for task, names in decoys.items():
        scores = edit_scores(clip, task, n=32)
        assert scores["the asked change"][0] >= 0.95, (task, scores)
        for d in names:
            assert scores[d][0] <= scores["the asked change"][0] - 0.3, (task, d, scores[d])


def test_shipped_weights_are_small():
    from pathlib import Path

    total = sum(p.stat().st_size for p in (Path(__file__).parents[1] / "stylenada/toy/weights").glob("*.safetensors"))
    assert total < 30 * 2**20


def test_gan_samples_are_source_domain_shapes(shapes_gan, reader):
    """The shipped generator makes recognisable shapes of its source domain (>= 90% valid, the shapes-world
    issue's bar; measured 95.7 / 93.4 / 93.8% for the latents of seeds 0 / 5 / 7), every shape in a
    share near the training data's 25%, and nothing of the targets."""
    from stylenada.toy.reader import VALID_MAX_ERROR
    from stylenada.toy.tasks import sample_images

    imgs = sample_images(shapes_gan, 256, seed=5)
    err, attrs = reader.validity(imgs)
    assert (err < VALID_MAX_ERROR).float().mean() >= 0.9
    assert all(0.15 <= sum(a.shape == s for a in attrs) / len(attrs) <= 0.35 for s in SHAPES)
    assert {a.colour for a in attrs} == set(DOMAINS["source"].colours)
    assert sum(a.style != "filled" for a in attrs) <= 0.05 * len(attrs)
    assert sum(a.colour in ("blue", "green", "purple") for a in attrs) <= 0.05 * len(attrs)


def test_circles_generator_makes_only_circles(reader):
    """The shape task's source generator: every sample a valid red filled circle (measured 100 / 100 / 99.6%
    valid for the latents of seeds 0 / 5 / 7), so "a circle" describes all of them."""
    from stylenada.formats import load_generator
    from stylenada.toy.demo import GENERATORS
    from stylenada.toy.reader import VALID_MAX_ERROR
    from stylenada.toy.tasks import sample_images

    err, attrs = reader.validity(sample_images(load_generator(GENERATORS["stylegan2", "circles"]), 128, seed=5))
    assert (err < VALID_MAX_ERROR).float().mean() >= 0.95
    assert all(a.shape == "circle" and a.colour == "red" and a.style == "filled" for a in attrs)


def test_identical_generators_score_as_unchanged(shapes_gan, reader, tiny_clip):
    m = task_metrics(TASKS["colour"], shapes_gan, shapes_gan, reader, clip=tiny_clip, n=64)
    assert m["preservation"] == 1.0 and m["diversity_ratio"] == 1.0
    assert m["target_success"] == m["target_success_before"] < 0.05
    assert m["frechet_clip"] == pytest.approx(m["frechet_clip_before"])


def test_collapsed_generator_has_no_diversity(shapes_gan, reader):
    import copy

    collapsed = copy.deepcopy(shapes_gan)
    with torch.no_grad():  # every latent maps to the mean w: one image
        for i in range(collapsed.mapping.num_layers):
            getattr(collapsed.mapping, f"fc{i}").weight.zero_()
        collapsed.mapping.fc0.bias.zero_()
    m = task_metrics(TASKS["colour"], shapes_gan, collapsed, reader, n=64)
    assert m["diversity_ratio"] < 0.05


# --- training scripts (a handful of steps, so they cannot rot) -----------------------------------------


def changed(module_a, module_b) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(module_a.state_dict().values(), module_b.state_dict().values(),
                                                      strict=True))


def test_training_scripts_train():
    """A few steps of each shapes-world trainer move its network from the seeded initialisation, with finite
    losses (the long runs that made the shipped weights are in stylenada/toy/weights/README.md)."""
    from stylenada.models import Generator, GeneratorConfig
    from stylenada.toy.reader import ReaderNet, ReaderTrainConfig, train_reader
    from stylenada.toy.tiny_clip import build_tiny_clip
    from stylenada.toy.train_clip import ClipTrainConfig, train_tiny_clip
    from stylenada.toy.train_gan import GanTrainConfig, train_gan

    cfg = GanTrainConfig(iters=3, batch=8, log_every=1, r1_every=2, distill=1.0, distill_warmup=1)
    G, log = train_gan(cfg, progress=False)
    torch.manual_seed(cfg.seed)
    G0 = Generator(GeneratorConfig(resolution=32, z_dim=cfg.z_dim, w_dim=cfg.w_dim, mapping_layers=cfg.mapping_layers,
                                   mapping_lr_mul=cfg.mapping_lr_mul, channel_base=cfg.channel_base,
                                   channel_max=cfg.channel_max))
    assert changed(G, G0) and len(log) == 3
    assert all(torch.isfinite(torch.tensor([r["d_loss"], r["g_loss"], r["distill"]])).all() for r in log)
    assert log[0]["d_loss"] == 0.0 and log[-1]["d_loss"] > 0  # the warm-up step has no D; later ones do
    clip_cfg = ClipTrainConfig(steps=2, batch=32, log_every=1, glow=0.5, colour_mix=0.5, fill_mix=0.5, stroke_mix=0.5,
                               interior_mix=0.5, counterfactual=0.5, nuisance=0.3, direction_weight=1.0,
                               style_choice_weight=1.0)
    model, _, clog = train_tiny_clip(clip_cfg, progress=False)
    assert changed(model, build_tiny_clip(clip_cfg.seed)) and torch.isfinite(torch.tensor(clog[0]["loss"]))
    reader, metrics = train_reader(ReaderTrainConfig(steps=2, batch=16), progress=False)
    torch.manual_seed(0)
    assert changed(reader.net, ReaderNet()) and set(metrics) >= {"shape", "colour", "style"}



def test_fill_labels_count_a_little_fill_as_mostly_filled():
    """The teacher's soft label of a partly filled outline is its fill ** gamma ('filled'), in the free
    images (mix_fill) and in graded filled <-> outline pairs (render_pairs): at gamma 1 the share itself,
    at 0.5 a quarter fill is half 'filled'."""
    import dataclasses

    from stylenada.toy.render import ShapeAttributes, render
    from stylenada.toy.train_clip import Pair, filled_weight, mix_fill, render_pairs

    assert filled_weight(0.3) == pytest.approx(0.3) and filled_weight(0.25, 0.5) == pytest.approx(0.5)
    assert filled_weight(0.0, 0.5) == 0.0 and filled_weight(1.0, 0.5) == pytest.approx(1.0)
    attrs = [ShapeAttributes("square", "red", "outline", 0.6, 0.0, 0.0)] * 16
    outline = render(attrs)
    filled = render([dataclasses.replace(a, style="filled") for a in attrs])
    for gamma in (1.0, 0.5):
        images, others, t = mix_fill(outline, attrs, [None] * 16, torch.zeros(16), torch.Generator().manual_seed(0),
                                     1.0, gamma)
        d = filled - outline  # the fill drawn into each image, as a share of the whole interior
        fill = ((images - outline) * d).sum((1, 2, 3)) / d.square().sum((1, 2, 3))
        assert all(o == {"style": "filled"} for o in others)
        assert torch.allclose(t, fill.clamp_min(0) ** gamma, atol=1e-4), (gamma, t, fill)
    a = ShapeAttributes("circle", "blue", "filled", 0.6, 0.0, 0.0)
    pairs = [Pair(0, 1, "style", "filled", "outline", 0.75), Pair(2, 3, "style", "outline", "filled", 0.25)]
    b = dataclasses.replace(a, style="outline")
    _, others, t = render_pairs([a, a, b, b], pairs, torch.Generator().manual_seed(0), fill_gamma=0.5)
    assert others[1] == {"style": "outline"} and t[1].item() == pytest.approx(0.5)  # fill 0.25: half 'filled'
    assert others[3] == {"style": "filled"} and t[3].item() == pytest.approx(0.5)

# --- the demo's claims ---------------------------------------------------------------------------------


def test_demo_adapts_and_the_control_changes_nothing(tmp_path):
    """The demo (colour task, its default settings: every layer, 100 steps at lr 0.0045, the two teachers)
    turns the red shapes blue while keeping their other attributes and drawing valid shapes, judged by the
    reader and by pixel statistics; its metrics tell a trained generator from an untouched one.

    Measured with these settings (`benchmarks/collapse.py --angle 0 --lr 0.0045 --iters 100 --lambda-l2 0.1
    --seeds 0 1 2 3 4`, 128 latents): success 100% every seed, preservation 92-96%, valid 87-95%; this test
    runs seed 0 on 256 latents.
    """
    from stylenada.toy.demo import DemoConfig, run_demo

    m = run_demo(DemoConfig(task="colour", out=str(tmp_path / "a")), progress=False)
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["final_clip_loss"] < summary["initial_clip_loss"]  # the directional loss falls
    assert m["target_success_before"] <= 0.05 and m["target_success"] >= 0.9
    assert m["pixel_success_before"] <= 0.05 and m["pixel_success"] >= 0.9  # the second judge agrees
    assert m["preservation"] >= 0.9 and m["valid_after"] >= 0.8 and m["diversity_ratio"] >= 0.9
    assert all(v <= 0.05 for v in m["fooled"].values())
    control = run_demo(DemoConfig(task="colour", layers="none", iters=5, out=str(tmp_path / "n"), n_eval=64),
                       progress=False)
    assert control["target_success"] == control["target_success_before"] <= 0.05
    assert control["preservation"] == 1.0 and control["diversity_ratio"] == 1.0
    files = {p.name for p in (tmp_path / "a").iterdir()}
    assert {"before_after.png", "demo_metrics.json", "curves.png", "generator.safetensors"} <= files
    assert json.loads((tmp_path / "a" / "demo_metrics.json").read_text())["task"] == "colour"


@pytest.mark.slow
def test_demo_on_the_shapes_stylegan3(tmp_path):
    """`stylenada demo --family sg3`: the shipped StyleGAN3 turned blue through its ToRGB (the family's demo
    settings). Measured (`stylenada demo --family sg3 --seed 0|1|2`, 128 latents): success 100%, pixel
    statistics 99-100%, preservation 95%, valid 90-92% (99% before); the issue's bar is 90% success with 90%
    preservation."""
    from stylenada.toy.demo import FAMILY_DEFAULTS, DemoConfig, run_demo

    m = run_demo(DemoConfig(family="sg3", out=str(tmp_path / "sg3"), **FAMILY_DEFAULTS["sg3"]), progress=False)
    assert m["target_success_before"] <= 0.05 and m["target_success"] >= 0.9 and m["pixel_success"] >= 0.9
    assert m["preservation"] >= 0.9 and m["valid_after"] >= 0.85
    assert load_generator_family(tmp_path / "sg3") == "stylegan3"


def load_generator_family(run_dir) -> str:
    from stylenada.formats import load_generator

    return load_generator(run_dir / "generator.safetensors").family


@pytest.mark.slow
@pytest.mark.parametrize("layers", ["late", "adaptive_param"])
def test_colour_task_with_other_strategies(tmp_path, layers):
    """The colour task with the late and parameter-level strategies at the strategy study's settings (study,
    5 seeds: 100% success, 94% preservation each; validity 82% / 78%, below the issue's 90%, not asserted)."""
    from stylenada.toy.demo import DemoConfig, run_demo

    m = run_demo(DemoConfig(task="colour", layers=layers, seed=1, n_eval=128, lr=0.003, iters=150,
                            out=str(tmp_path / layers)), progress=False)
    assert m["target_success_before"] <= 0.05 and m["target_success"] >= 0.9 and m["pixel_success"] >= 0.9
    assert m["preservation"] >= 0.9


def test_strategy_study_quick(tmp_path):
    """benchmarks/strategies.py end to end on a tiny slice (2 strategies x 2 seeds, 2 steps), then the summary
    with its claims table; a second call resumes and runs nothing."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parent.parent / "benchmarks" / "strategies.py"
    spec = importlib.util.spec_from_file_location("strategies", path)
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    doc = tmp_path / "study.md"
    argv = ["--tasks", "colour", "--layers", "all", "adaptive", "--weightings", "fixed", "--sources", "static",
            "--noise", "random", "--seconds", "0", "--seeds", "0", "1", "--iters", "2", "--n-eval", "16",
            "--results", str(tmp_path / "r.jsonl"), "--doc", str(doc)]
    study.main(argv)
    records = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert len(records) == 4 and {r["layers"] for r in records} == {"all", "adaptive"}
    assert all(r["steps"] == 2 and r["trained_parameters"] > 0 for r in records)
    assert all(r["sources_chosen"] == [] for r in records)  # static source text: no re-captions logged
    lr, terms = study.TASK_RECIPES["colour"]  # each task runs at its own recipe unless a slice gives one
    assert all(r["lr"] == lr and r["lambdas"] == terms for r in records)
    assert study.task_recipe("style")[1] == study.TASK_RECIPES["style"][1]
    assert study.task_recipe("style", lr=0.02) == (0.02, {})
    text = doc.read_text()
    assert f"colour: lr {lr:g}" in text
    assert "| adaptive | fixed | static | random | steps | 2 |" in text and "## The method's claims" in text
    assert "Adaptive freezing keeps structure best (vs all)" in text
    assert (tmp_path / "figures" / "study-colour.png").exists()
    study.main(argv)
    assert len((tmp_path / "r.jsonl").read_text().splitlines()) == 4
    # a slice with another recipe runs its own runs and reports only them
    study.main(argv[:argv.index("--layers")] + ["--layers", "all"] + argv[argv.index("--weightings"):]
               + ["--lambda", "classify=1", "--lr", "0.005"])
    records = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert len(records) == 6 and records[-1]["lambdas"] == {"classify": 1.0} and records[-1]["lr"] == 0.005
    text = doc.read_text()
    assert "lr 0.005" in text and "lambda_classify 1" in text and "| adaptive | fixed" not in text
    # a slice on another source generator runs its own runs, named in its records and summary
    generator = tmp_path / "gen.safetensors"
    shutil.copy(Path(study.__file__).parents[1] / "stylenada" / "toy" / "weights" / "shapes_gan.safetensors", generator)
    study.main(argv + ["--generator", str(generator)])
    records = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert len(records) == 10 and all(r["generator"] == str(generator) for r in records[6:])
    assert f"Source generator (not the shipped one): `{generator}`" in doc.read_text()
    with pytest.raises(SystemExit, match="shape task adapts another source domain"):
        study.main(argv + ["--generator", str(generator), "--tasks", "shape"])


def test_gan_training_resumes_from_its_state(tmp_path):
    from stylenada.toy.train_gan import GanTrainConfig, train_gan

    out = tmp_path / "g.safetensors"
    cfg = dict(batch=4, log_every=1, r1_every=2, sample_every=2, sample_dir=str(tmp_path / "s"))
    train_gan(GanTrainConfig(iters=2, **cfg), out=out, progress=False)
    assert (tmp_path / "g.safetensors.state.pt").exists()
    G, log = train_gan(GanTrainConfig(iters=3, lr=0.001, **cfg), out=out, progress=False, resume=True)
    assert [r["iter"] for r in log] == [0, 1, 2]  # the saved log continues
    st = torch.load(tmp_path / "g.safetensors.state.pt", weights_only=True)
    assert st["iter"] == 3 and st["opt_g"]["param_groups"][0]["lr"] == 0.001


def test_gan_training_of_a_stylegan3(tmp_path):
    """The same trainer trains a StyleGAN3 (the distillation warm-up, then D, R1, EMA); the layers' tracked
    input magnitudes move while D trains, and the snapshot loads as a StyleGAN3."""
    from stylenada.formats import load_generator
    from stylenada.models.family import family_for_config
    from stylenada.toy.train_gan import GanTrainConfig, generator_config, train_gan

    cfg = GanTrainConfig(family="stylegan3", iters=3, batch=4, log_every=1, r1_every=2, mixing=0.0, distill=10.0,
                         distill_warmup=1, channel_base=256, channel_max=8, num_layers=3, z_dim=32, w_dim=32)
    gcfg = generator_config(cfg)
    fresh = {k: v.clone() for k, v in family_for_config(gcfg).build(gcfg).named_buffers() if "magnitude" in k}
    G, log = train_gan(cfg, out=tmp_path / "g3.safetensors", progress=False)
    assert [r["d_loss"] == 0 for r in log] == [True, False, False] and all(r["distill"] > 0 for r in log)
    moved = [k for k, v in G.named_buffers() if "magnitude" in k and not torch.equal(v, fresh[k])]
    assert moved and len(moved) == len(fresh)
    assert load_generator(tmp_path / "g3.safetensors").family == "stylegan3"
    with pytest.raises(StylenadaError, match="unknown generator family"):
        generator_config(GanTrainConfig(family="stylegan4"))


def test_attributes_from_uniform_follow_the_domain():
    """Inverse-CDF records: uniform inputs give the domain's distribution; the map is deterministic."""
    from stylenada.toy.render import ATTRIBUTE_COORDINATES, attributes_from_uniform

    dom = DOMAINS["warm"]
    u = torch.rand(4000, ATTRIBUTE_COORDINATES, generator=torch.Generator().manual_seed(0))
    attrs = attributes_from_uniform(u, dom)
    assert attrs == attributes_from_uniform(u.clone(), dom)
    for field, values in (("shape", dom.shapes), ("colour", dom.colours)):
        shares = [sum(getattr(a, field) == v for a in attrs) / len(attrs) for v in values]
        assert max(abs(s - 1 / len(values)) for s in shares) < 0.03, (field, shares)
    lo, hi = dom.size_range
    assert all(lo <= a.size <= hi and a.style == "filled" and a.background == "white" for a in attrs)
    assert abs(sum(a.x for a in attrs) / len(attrs)) < 0.03
    edge = attributes_from_uniform(torch.tensor([[0.0] * 7, [1.0] * 7]), dom)  # the ends stay inside the image
    assert edge[0].shape == dom.shapes[0] and edge[1].shape == dom.shapes[-1]
    assert all(abs(a.x) + 1.18 * a.size <= 1 for a in edge)


def test_distill_targets_are_valid_renders_of_what_g_sees(reader):
    """The renderer-distillation target of a latent is a clean render, and depends only on z after the
    mapping network's normalisation (so G can know it)."""
    from stylenada.toy.reader import VALID_MAX_ERROR
    from stylenada.toy.train_gan import GanTrainConfig, distill_targets, train_gan

    z = torch.randn(64, 128, generator=torch.Generator().manual_seed(3))
    targets = distill_targets(z, DOMAINS["source"], 32)
    assert torch.equal(targets, distill_targets(2.5 * z, DOMAINS["source"], 32))
    err, attrs = reader.validity(targets)
    assert (err < VALID_MAX_ERROR).all() and len({a.shape for a in attrs}) == 4
    cfg = dict(batch=4, log_every=1, r1_every=2, mixing=0.0, distill=10.0, distill_warmup=2)
    G, log = train_gan(GanTrainConfig(iters=4, **cfg), progress=False)
    assert all(r["distill"] > 0 for r in log)
    assert [r["d_loss"] == 0 for r in log] == [True, True, False, False]  # no D during the warm-up
    assert all(b.torgb.weight.abs().sum() > 0 for b in G.synthesis.blocks())
    G, _ = train_gan(GanTrainConfig(iters=2, **cfg), progress=False)  # the warm-up draws at full resolution only
    assert all(b.torgb.weight.abs().sum() == 0 for b in G.synthesis.blocks()[:-1])
    assert G.synthesis.blocks()[-1].torgb.weight.abs().sum() > 0


def test_gan_training_keeps_the_snapshot_the_reader_scores_best(tmp_path):
    from stylenada.formats import load_generator
    from stylenada.toy.train_gan import GanTrainConfig, sample_validity, train_gan
    from stylenada.utils.scripts import config_parser

    out = tmp_path / "g.safetensors"
    cfg = GanTrainConfig(iters=3, batch=4, log_every=100, r1_every=2, sample_every=1, sample_dir=str(tmp_path / "s"),
                         select_best=True)
    _, log = train_gan(cfg, out=out, progress=False)
    scores = [r["valid"] for r in log if "valid" in r]
    assert len(scores) == 3
    assert sample_validity(load_generator(out)) == max(scores)
    saved_log = json.loads((tmp_path / "g.safetensors.json").read_text())["log"]
    assert [r["valid"] for r in saved_log if "valid" in r] == scores
    assert config_parser(GanTrainConfig, None).parse_args(["--select-best", "false"]).select_best is False


def test_colour_blends_come_with_soft_labels():
    from stylenada.toy.render import COLOURS, ShapeAttributes, render
    from stylenada.toy.train_clip import mix_colours, soft_matches

    attrs = [ShapeAttributes("circle", "red", "filled", 0.5, 0.0, 0.0)] * 64
    images = render(attrs)
    mixed, others, t = mix_colours(images, attrs, torch.Generator().manual_seed(0), share=1.0)
    i = int(torch.argmax(t))
    other = torch.tensor(COLOURS[others[i]]) / 127.5 - 1
    red = torch.tensor(COLOURS["red"]) / 127.5 - 1
    assert torch.allclose(mixed[i, :, 16, 16], red + (other - red) * t[i], atol=1e-5)  # object centre
    assert torch.allclose(mixed[i, :, 1, 1], images[i, :, 1, 1])  # background untouched
    caps = [{"colour": "red"}, {"colour": others[i]}, {"shape": "circle"}, {"shape": "square"}]
    w = soft_matches(caps, [attrs[i]], [others[i]], t[i:i + 1])[0]
    assert torch.allclose(w, torch.tensor([1 - t[i], t[i], 1.0, 0.0]))
    same, none, _ = mix_colours(images, attrs, torch.Generator().manual_seed(0), share=0.0)
    assert torch.equal(same, images) and none == [None] * 64


def test_tiny_clip_colour_space_leads_toward_the_target(tiny_clip):
    """From a red object, a small step toward blue is the direction that best matches the text
    direction "a red shape" -> "a blue shape" (better than darkening it), and the gradient of the
    alignment with respect to the object colour raises the blue channel and lowers the red one."""
    import torch.nn.functional as F

    from stylenada.toy.render import COLOURS, render, sample_attributes

    attrs = sample_attributes(32, DOMAINS["source"], torch.Generator().manual_seed(0))
    coverage = (1 - render(attrs)[:, 1:2]) / (1 - (COLOURS["red"][1] / 127.5 - 1))  # green channel: 1 - ink
    red = torch.tensor(COLOURS["red"]).float().view(1, 3, 1, 1) / 127.5 - 1

    def images(fg):
        return 1 + (fg - 1) * coverage

    with torch.no_grad():
        e0 = tiny_clip.encode_image(images(red))
        text = F.normalize(tiny_clip.encode_text(["a blue shape"]), dim=-1) - F.normalize(
            tiny_clip.encode_text(["a red shape"]), dim=-1)

        def alignment(colour):
            step = red + (torch.tensor(colour).float().view(1, 3, 1, 1) / 127.5 - 1 - red) * 0.05
            return F.cosine_similarity(tiny_clip.encode_image(images(step)) - e0, text, dim=-1).mean()

        assert alignment(COLOURS["blue"]) > alignment((120, 10, 10)) + 0.05
    fg = red.clone().requires_grad_(True)
    (tiny_clip.encode_image(images(fg)) @ text.T).mean().backward()
    assert fg.grad[0, 2] > 0 > fg.grad[0, 0]


def test_gan_training_rejects_bad_options_in_one_line(tmp_path):
    from stylenada.toy.train_gan import main

    for argv, words in ((["--domain", "teal"], "unknown domain 'teal'"),
                        (["--resume"], "no training state to resume"),
                        (["--distill-warmup", "5"], "give --distill > 0 too")):
        with pytest.raises(SystemExit) as e:
            main(["--iters", "1", "--out", str(tmp_path / "g.safetensors"), *argv])
        assert str(e.value).startswith("error: ") and words in str(e.value)
    assert not (tmp_path / "g.safetensors").exists()


# --- the second judge and the teachers' training pairs ----------------------------------------------------


def test_pixel_statistics_read_the_task_attributes():
    """The reader-free judge recovers colour, filled/outline and circle/square/other from renders."""
    from stylenada.toy.render import Domain, render_batch
    from stylenada.toy.tasks import pixel_attribute

    imgs, attrs = render_batch(200, Domain(styles=("filled", "outline"), backgrounds=("white",)), 11)
    colour = pixel_attribute(imgs, "colour")
    style = pixel_attribute(imgs, "style")
    assert sum(c == a.colour for c, a in zip(colour, attrs, strict=True)) >= 0.95 * len(attrs)
    assert sum(s == a.style for s, a in zip(style, attrs, strict=True)) >= 0.95 * len(attrs)
    filled = [i for i, a in enumerate(attrs) if a.style == "filled"]
    shape = pixel_attribute(imgs[filled], "shape")
    want = [a.shape if a.shape in ("circle", "square") else "other" for a in (attrs[i] for i in filled)]
    assert sum(s == w for s, w in zip(shape, want, strict=True)) >= 0.95 * len(filled)
    assert pixel_attribute(torch.ones(2, 3, 32, 32), "colour") == [None, None]  # nothing drawn


def test_shape_statistics_tell_discs_from_squares():
    """The shape task's pixel statistics: a square fills its bounding box and its boundary's distance from the
    centre varies (corners), a disc does neither."""
    import dataclasses

    from stylenada.toy.render import DOMAINS, render_batch
    from stylenada.toy.tasks import shape_statistics

    circles = shape_statistics(render_batch(64, DOMAINS["circles"], 1)[0])
    squares = shape_statistics(render_batch(64, dataclasses.replace(DOMAINS["circles"], shapes=("square",)), 1)[0])
    assert circles["box_fill"] < 0.85 < 0.95 < squares["box_fill"]
    assert circles["radial_spread"] < 1.22 < 1.26 < squares["radial_spread"]
    blank = shape_statistics(torch.ones(2, 3, 32, 32))  # nothing drawn: no statistic, not a number that flatters
    assert blank["box_fill"] != blank["box_fill"] and blank["radial_spread"] != blank["radial_spread"]  # NaN
    # a broken image that is ink over the whole frame has a box fill but no boundary, so no spread (no crash)
    flooded = shape_statistics(-torch.ones(2, 3, 32, 32))
    assert flooded["box_fill"] == 1.0 and flooded["radial_spread"] != flooded["radial_spread"]


def test_counterfactual_pairs_differ_in_one_thing():
    from stylenada.toy.train_clip import counterfactual_batch, render_pairs

    rng = torch.Generator().manual_seed(3)
    attrs, pairs = counterfactual_batch(64, rng, 0.5)
    assert len(attrs) == 64 and len(pairs) == 16 and {p.j for p in pairs} == set(range(48, 64))
    images, others, t = render_pairs(attrs, pairs, rng)
    for p in pairs:
        a, b = attrs[p.i], attrs[p.j]
        graded = p.kind == "colour" or (p.kind == "style" and {p.old, p.new} == {"filled", "outline"})
        if p.kind in ("shape", "style") and not graded:
            assert getattr(b, p.kind) == p.new != p.old == getattr(a, p.kind)
            assert a.to_dict() | {p.kind: p.new} == b.to_dict()
        else:
            assert a == b and not torch.equal(images[p.i], images[p.j])
        if p.kind == "nuisance":
            own, other = p.new.split("|")
            assert getattr(a, p.old) == own != other
        if graded:
            assert others[p.j] in (p.new, {p.kind: p.new}) and float(t[p.j]) == pytest.approx(p.t) and 0.2 <= p.t <= 1


def test_partly_filled_outlines_are_soft_labelled():
    from stylenada.toy.render import ShapeAttributes, render
    from stylenada.toy.train_clip import mix_fill, soft_matches

    attrs = [ShapeAttributes("circle", "red", "outline", 0.5, 0.0, 0.0)] * 8
    images = render(attrs)
    mixed, others, t = mix_fill(images, attrs, [None] * 8, torch.zeros(8), torch.Generator().manual_seed(0), 1.0)
    filled = render([ShapeAttributes("circle", "red", "filled", 0.5, 0.0, 0.0)])[0]
    i = int(torch.argmax(t))
    assert others[i] == {"style": "filled"} and 0 < float(t[i]) < 1
    torch.testing.assert_close(mixed[i], images[i] + t[i] * (filled - images[i]))  # the interior partly filled
    w = soft_matches([{"style": "outline"}, {"style": "filled"}, {"shape": "circle"}], [attrs[i]], [others[i]],
                     t[i : i + 1])[0]
    torch.testing.assert_close(w, torch.tensor([1 - t[i], t[i], 1.0]))


def test_wide_and_blurred_strokes_are_labelled_by_the_ink_inside():
    """mix_stroke: an outline drawn wider or blurred counts as 'filled' by the share of its interior the ink
    covers (0 for the world's stroke, 1 for the filled shape); filled objects are left alone."""
    from stylenada.toy.render import ShapeAttributes, render
    from stylenada.toy.train_clip import interior_ink, mix_stroke

    ring = ShapeAttributes("circle", "red", "outline", 0.6, 0.0, 0.0)
    filled = ShapeAttributes("square", "blue", "filled", 0.6, 0.0, 0.0)
    assert interior_ink(render([ring]), [ring]).item() == 0.0
    assert interior_ink(render([ring], stroke_px=100.0), [ring]).item() == pytest.approx(1.0)
    wider = [interior_ink(render([ring], stroke_px=w), [ring]).item() for w in (2.5, 4.0, 6.0)]
    assert 0 < wider[0] < wider[1] < wider[2] < 1
    attrs = [ring] * 12 + [filled] * 4
    images = render(attrs)
    mixed, others, t = mix_stroke(images, attrs, [None] * 16, torch.zeros(16), torch.Generator().manual_seed(0), 1.0)
    assert all(o == {"style": "filled"} for o in others[:12]) and others[12:] == [None] * 4
    torch.testing.assert_close(mixed[12:], images[12:])
    assert (t[:12] > 0).all() and (t[:12] < 1).all()
    assert (mixed[:12] != images[:12]).flatten(1).any(1).all()
    torch.testing.assert_close(t[:12], interior_ink(mixed[:12], attrs[:12]))


def test_outline_interiors_tinted_any_colour_count_as_filled_by_the_tint():
    """mix_interior: only an outlined object's interior changes, toward the drawn colour by share f, and the
    'filled' label is f scaled by how far that colour lies from the background (the object's own: f)."""
    from stylenada.toy.render import ShapeAttributes, render
    from stylenada.toy.train_clip import mix_interior

    ring = ShapeAttributes("square", "red", "outline", 0.6, 0.0, 0.0)
    filled = ShapeAttributes("circle", "red", "filled", 0.6, 0.0, 0.0)
    attrs = [ring] * 12 + [filled] * 4
    images = render(attrs)
    mixed, others, t = mix_interior(images, attrs, [None] * 16, torch.zeros(16), torch.Generator().manual_seed(0),
                                    1.0)
    assert all(o == {"style": "filled"} for o in others[:12]) and others[12:] == [None] * 4
    torch.testing.assert_close(mixed[12:], images[12:])
    assert ((t[:12] >= 0) & (t[:12] <= 1)).all() and t[:12].std() > 0
    # the stroke and the background stay as they were; the interior moved
    solid = render([dataclasses.replace(ring, style="filled")])[0]
    inside = ((solid - images[0]).abs().amax(0) > 1.0)  # interior pixels: red when filled, white as outline
    outside = (solid - 1).abs().amax(0) < 1e-3  # background
    changed = (mixed[:12] - images[:12]).abs().amax(1)
    assert (changed[:, outside] == 0).all() and (changed[:, inside].amax(1) > 0).all()


def test_style_choice_loss_asks_the_two_text_choice_for_each_outline_share():
    """style_choice_loss: BCE of sigmoid(scale * img . (T(outline) - T(filled))) against the share of outline:
    1 / 0 for plain outlines / filled shapes (colour blends keep theirs), 1 - t for a graded fill, striped
    objects and non-style changes left out."""
    import open_clip

    from stylenada.toy.render import ShapeAttributes
    from stylenada.toy.tiny_clip import build_tiny_clip, register
    from stylenada.toy.train_clip import style_choice_loss

    model, tokenizer = build_tiny_clip(0), open_clip.get_tokenizer(register("vit"))
    attrs = [ShapeAttributes("circle", "red", style, 0.5, 0.0, 0.0)
             for style in ("outline", "filled", "outline", "outline", "striped", "filled")]
    others = [None, None, {"style": "filled"}, "blue", None, {"shape": "square"}]
    t = torch.tensor([0.0, 0.0, 0.3, 0.4, 0.0, 1.0])
    img = F.normalize(torch.randn(6, 64), dim=-1)
    with torch.no_grad():
        loss = style_choice_loss(model, tokenizer, img, attrs, others, t)
        txt = F.normalize(model.encode_text(tokenizer(["a filled shape", "an outline of a shape"])), dim=-1)
        logits = model.logit_scale.exp() * (img[[0, 1, 2, 3]] @ (txt[1] - txt[0]))
    expected = F.binary_cross_entropy_with_logits(logits, torch.tensor([1.0, 0.0, 0.7, 1.0]))
    torch.testing.assert_close(loss, expected)


def _benchmark(name: str):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(name, Path(__file__).parent.parent / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reselection_study_quick(tmp_path, capsys):
    """benchmarks/reselection.py on a tiny slice (two intervals, 2 steps); a second call runs nothing."""
    argv = ["--tasks", "colour", "--intervals", "1", "0", "--seeds", "0", "--iters", "2", "--n-eval", "8",
            "--results", str(tmp_path / "r.jsonl")]
    _benchmark("reselection").main(argv)
    records = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert [r["interval"] for r in records] == [1, 0] and [r["selections"] for r in records] == [2, 1]
    assert "| colour | 6 | 2 | once | 1 |" in capsys.readouterr().out
    _benchmark("reselection").main(argv)
    assert len((tmp_path / "r.jsonl").read_text().splitlines()) == 2


def test_multidomain_benchmark_quick(tmp_path, capsys):
    """benchmarks/multidomain.py on a tiny slice: one multi-domain model (two targets, one held out) and the
    single-domain references, 2 steps each; a second call runs nothing."""
    argv = ["--train", "orange", "blue", "--held-out", "purple", "--seeds", "0", "--iters", "2", "--single-iters",
            "2", "--mixing", "0.5", "--n-eval", "8", "--results", str(tmp_path / "m.jsonl")]
    _benchmark("multidomain").main(argv)
    records = [json.loads(x) for x in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert sorted((r["kind"], r["target"], r["held_out"], r.get("new_text")) for r in records) == [
        ("multi", "blue", False, None), ("multi", "orange", False, None), ("multi", "purple", True, "blend"),
        ("multi", "purple", True, "direct"), ("single", "blue", False, None), ("single", "orange", False, None),
        ("single", "purple", False, None)]
    out = capsys.readouterr().out
    assert "purple (held out, direct)" in out and "purple (held out, blend)" in out
    _benchmark("multidomain").main(argv)
    assert len((tmp_path / "m.jsonl").read_text().splitlines()) == 7


def test_outline_of_ink_draws_the_renderers_outline():
    """The ideal outline of true filled renders is the renderer's own outline of them, to within a fraction
    of the stroke, for every shape (largest mean |difference| here 0.019, a cross)."""
    import dataclasses

    from stylenada.toy.render import SHAPES, Domain, render, sample_attributes
    from stylenada.toy.tasks import outline_of_ink

    attrs = [dataclasses.replace(a, style="filled", colour="red", background="white")
             for a in sample_attributes(64, Domain(colours=("red",)), torch.Generator().manual_seed(3))]
    assert {a.shape for a in attrs} == set(SHAPES)
    filled = render(attrs)
    outline = render([dataclasses.replace(a, style="outline") for a in attrs])
    ideal = outline_of_ink(filled, [a.shape for a in attrs])
    diff = (ideal - outline).abs().mean(dim=(1, 2, 3))
    assert diff.max() < 0.025, diff.max()
    ink = lambda x: (1 - x).clamp_min(0).sum(dim=(1, 2, 3))  # noqa: E731
    # as much ink as the true outline (measured within 7%), less than the filled shape (a small cross's outline
    # is nearly filled: 94% of its ink)
    assert (ink(ideal) < ink(filled)).all() and torch.allclose(ink(ideal), ink(outline), rtol=0.1)


def test_outline_ceiling_benchmark_quick(tmp_path, capsys):
    """benchmarks/outline_ceiling.py on a few samples: every case judged, per shape, results written."""
    out = tmp_path / "o.json"
    _benchmark("outline_ceiling").main(["--seeds", "0", "--n", "16", "--results", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert [r["case"] for r in rows] == ["source samples (filled)", "true outline renders of the reader's reading",
                                         "ideal outline of true renders (the rule's check)",
                                         "ideal outline of the source samples"]
    assert all(sum(c for _, c in r["per_shape"].values()) == 16 and 0 <= r["valid"] <= 1 for r in rows)
    assert "| ideal outline of the source samples | 0 | 16 |" in capsys.readouterr().out
    # each teacher's view: the source against itself has no change and reads as filled; true outlines read as
    # outlines, their change along the text direction
    source, outline = rows[0]["teachers"], rows[1]["teachers"]
    assert set(source) == {"tiny-shapes", "tiny-shapes-rn"}
    for spec in source:
        assert source[spec]["cos"] == 0 and source[spec]["p_target"] < 0.1
        assert outline[spec]["cos"] > 0.8 and outline[spec]["p_target"] > 0.9
