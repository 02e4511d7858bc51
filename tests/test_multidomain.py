"""Many domains in one model: `train --targets` trains one multi-domain model; `generate --model` renders any
of its targets, and new texts zero-shot."""

import dataclasses

import pytest
import torch

from stylenada.adapt.config import TrainConfig
from stylenada.adapt.domains import apply_domains, load_domain, save_domain
from stylenada.adapt.multidomain import DomainHypernet, MultiDomainTrainer, load_multidomain, text_condition
from stylenada.adapt.trainer import adapt, load_clip_models, resume
from stylenada.cli import main
from stylenada.errors import CheckpointError, StylenadaError
from stylenada.formats import load_generator
from stylenada.toy.demo import GENERATOR

TARGETS = ["a blue shape", "a green shape", "a yellow shape"]


def _config(out, **kw) -> TrainConfig:
    base = dict(generator=str(GENERATOR), source="a red shape", targets=TARGETS, out=str(out), clip=["tiny-shapes"],
                templates="none", iters=4, batch=6, lr=0.01, layers="all", lambda_l2=0.1, sample_every=0,
                checkpoint_every=0, tensorboard=False, n_samples=2, device="cpu")
    return TrainConfig(**{**base, **kw})


def _render(G, seed=0):
    z = torch.randn(4, G.z_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return G(z, noise_mode="const")


@pytest.fixture(scope="module")
def teachers():
    return load_clip_models(["tiny-shapes"], "cpu")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, teachers):
    out = tmp_path_factory.mktemp("multi") / "run"
    return adapt(_config(out), clip_models=teachers, progress=False)


def test_the_config_checks_a_multi_domain_run():
    with pytest.raises(StylenadaError, match="not both"):
        _config("x", target="a blue shape").validate()
    with pytest.raises(StylenadaError, match="at least two"):
        _config("x", targets=["a blue shape"]).validate()
    with pytest.raises(StylenadaError, match="twice"):
        _config("x", targets=["a blue shape", "A blue shape "]).validate()
    with pytest.raises(StylenadaError, match="source text"):
        _config("x", targets=["a blue shape", "a red shape"]).validate()
    with pytest.raises(StylenadaError, match="--layers all or late"):
        _config("x", layers="adaptive").validate()
    with pytest.raises(StylenadaError, match="empty target"):
        _config("x", targets=["a blue shape", " "]).validate()


def test_the_model_starts_as_the_base_generator_and_its_offsets_have_the_parameter_shapes():
    net = DomainHypernet(6, {"a": (2, 3), "b": (4,)}, rank=3, hidden=5)
    cond = torch.randn(2, 6)
    assert torch.equal(net(cond), torch.zeros(2, 10))  # a zero basis: no change before training
    parts = net.split(torch.arange(10.0))
    assert parts["a"].shape == (2, 3) and torch.equal(parts["b"], torch.arange(6.0, 10.0))
    d = [torch.randn(3, 8), torch.randn(3, 2)]
    c = text_condition(d)
    assert c.shape == (3, 10)
    assert torch.allclose(c[:, :8].norm(dim=1), torch.full((3,), 8**0.5))  # each teacher's part at sqrt(D)


def test_each_latent_is_trained_under_its_own_targets_direction(tmp_path, teachers):
    trainer = MultiDomainTrainer(_config(tmp_path / "r"), clip_models=teachers)
    img_train, img_frozen, (dirs, embs) = trainer.render_batch()
    assert img_train.shape == img_frozen.shape == (6, 3, 32, 32)
    table = trainer.objective.directions[0]  # [T, D]
    rows = dirs[0]
    assert rows.shape == (6, table.shape[1])
    for row in rows:  # every row is one of the targets' directions (no blending by default)
        assert (table - row).abs().amax(dim=1).min() < 1e-6
    assert len({tuple(r.tolist()) for r in rows}) == 3  # batch 6 is split among three targets
    assert (img_train - img_frozen).abs().max() < 1e-5  # the untrained model renders the base generator


def test_a_trained_model_renders_each_target_and_new_texts(trained, teachers, tmp_path):
    model = load_multidomain(trained.run_dir)  # the run folder or its file
    assert trained.generator_path.name == "multidomain.safetensors" and model.targets == TARGETS
    G0 = load_generator(GENERATOR)
    base = _render(G0)
    blue = model.generator_for(G0, "a blue shape")  # a training target needs no CLIP
    green = model.generator_for(G0, "a green shape")
    assert (_render(blue) - base).abs().max() > 1e-3
    assert (_render(blue) - _render(green)).abs().max() > 1e-3
    with pytest.raises(StylenadaError, match="needs the model's CLIP teachers"):
        model.generator_for(G0, "a purple shape")
    purple = model.generator_for(G0, "a purple shape", teachers)
    assert (_render(purple) - base).abs().max() > 1e-3
    blended = model.generator_for(G0, "a purple shape", teachers, new_text="blend")
    assert (_render(blended) - _render(purple)).abs().max() > 1e-4  # another input than the text's own
    # A new text enters the model at the trained input nearest to it: a target's own direction gives the
    # target, a blend of two targets' directions gives that blend.
    dirs = model.teacher_directions()
    cond, blend = model.nearest_blend([d[1] for d in dirs])
    assert blend == {"a green shape": 1.0} and torch.allclose(cond, model.conditions[1], atol=1e-5)
    mixed = [torch.nn.functional.normalize(0.3 * d[0] + 0.7 * d[2], dim=-1) for d in dirs]
    _, blend = model.nearest_blend(mixed)
    assert set(blend) == {"a blue shape", "a yellow shape"} and abs(blend["a blue shape"] - 0.3) < 0.051
    # A target's offsets are a domain: saved, reloaded and applied, it renders the same images.
    path = save_domain(model.domain("a blue shape"), tmp_path / "blue.safetensors")
    assert (_render(apply_domains(G0, [(load_domain(path), 1.0)])) - _render(blue)).abs().max() <= 1e-6
    with pytest.raises(CheckpointError, match="not a multi-domain model"):
        load_multidomain(GENERATOR)


def test_a_multi_domain_run_resumes_where_it_stopped(tmp_path, teachers):
    cfg = _config(tmp_path / "r", iters=2, checkpoint_every=1)
    adapt(cfg, clip_models=teachers, progress=False)
    more = resume(cfg.out, iters=4, clip_models=teachers, progress=False)
    assert more.metrics["steps"] == 4
    straight = adapt(dataclasses.replace(cfg, out=str(tmp_path / "s"), iters=4), clip_models=teachers, progress=False)
    a, b = load_multidomain(more.generator_path), load_multidomain(straight.generator_path)
    for (k, v), w in zip(a.hypernet.state_dict().items(), b.hypernet.state_dict().values(), strict=True):
        assert torch.allclose(v, w, atol=1e-5), k


def test_train_and_generate_from_the_command_line(tmp_path, capsys):
    targets = tmp_path / "targets.txt"
    targets.write_text("# colours\na blue shape\n\na green shape\n")
    out = tmp_path / "run"
    assert main(["train", "--generator", str(GENERATOR), "--source", "a red shape", "--targets", str(targets),
                 "--clip", "tiny-shapes", "--templates", "none", "--iters", "2", "--batch", "4", "--layers", "late",
                 "--k", "2", "--out", str(out), "--device", "cpu", "--no-tensorboard", "--sample-every", "0"]) == 0
    assert "model:" in capsys.readouterr().out
    grid = tmp_path / "grid.png"
    assert main(["generate", "--model", str(out), "--target", "a blue shape", "--target", "a purple shape",
                 "--seeds", "0-3", "--out", str(grid), "--new-text", "blend"]) == 0
    assert "'a purple shape' is a new text: rendered at the trained blend nearest to it" in capsys.readouterr().out
    from stylenada.utils.images import load_image

    assert load_image(grid).shape[-2:] == (2 * 32 + 3 * 2, 4 * 32 + 5 * 2)  # a row per target, a column per seed
    assert main(["generate", str(GENERATOR), "--target", "a blue shape", "--out", str(tmp_path / "x.png")]) == 1
    assert "--model" in capsys.readouterr().err
    empty = tmp_path / "empty.txt"
    empty.write_text("\n# nothing\n")
    assert main(["train", "--generator", str(GENERATOR), "--targets", str(empty), "--out", str(tmp_path / "e")]) == 1
    assert "no target text" in capsys.readouterr().err
    assert main(["train", "--generator", str(GENERATOR), "--targets", str(tmp_path / "missing.txt")]) == 1
    assert "no such file" in capsys.readouterr().err


def test_a_compact_scope_offsets_only_its_parameters(tmp_path, teachers):
    """--params affine with --layers late: the model's offsets cover the affine layers of the last W+ entries
    and nothing else, and a rendered target changes only those tensors of the base generator."""
    res = adapt(_config(tmp_path / "r", layers="late", iters=2, selection={"k": 2, "params": "affine"}),
                clip_models=teachers, progress=False)
    model = load_multidomain(res.generator_path)
    names = list(model.hypernet.shapes)
    assert names and all(".affine." in n for n in names)
    G0 = load_generator(GENERATOR)
    G1 = model.generator_for(G0, "a blue shape")
    changed = {n for (n, p), q in zip(G0.synthesis.named_parameters(), G1.synthesis.parameters(), strict=True)
               if not torch.equal(p, q)}
    assert changed and changed <= set(names)
    last = {slot.name for slot in G0.cfg.layout() if slot.w_index >= G0.num_ws - 2}
    assert all(any(n.startswith(layer + ".") for layer in last) for n in names)
