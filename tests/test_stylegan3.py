"""StyleGAN3 behind the family interface: config, W+ layout, forward, formats, command line, layer strategies.

Exactness against NVIDIA's code is tests/test_golden_sg3.py.
"""

import json

import pytest
import torch

from stylenada.errors import CheckpointError
from stylenada.formats import inspect_checkpoint, load_generator, save_generator
from stylenada.models import get_family
from stylenada.models.family import Generator as GeneratorProtocol
from stylenada.models.ops import filtered_lrelu, setup_filter, upfirdn2d
from stylenada.models.stylegan3 import Generator, StyleGAN3Config, SynthesisInput, SynthesisLayer

TINY = dict(resolution=16, z_dim=16, w_dim=16, channel_base=128, channel_max=16)


def randomize(G: Generator, seed: int = 0) -> Generator:
    """Give the parts that initialise to constants (biases, the input's affine, magnitudes, w_avg) random values."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("bias") or name == "synthesis.input.affine.weight":
                p.add_(0.1 * torch.randn(p.shape, generator=gen))
        for name, b in G.named_buffers():
            if name.endswith("magnitude_ema"):
                b.copy_(torch.rand([], generator=gen) + 0.5)
        G.mapping.w_avg.copy_(torch.randn(G.w_dim, generator=gen))
    return G


@pytest.fixture(params=["T", "R"])
def tiny_sg3(request) -> Generator:
    torch.manual_seed(0)
    r = dict(conv_kernel=1, use_radial_filters=True) if request.param == "R" else {}
    return randomize(Generator(StyleGAN3Config(**TINY, **r))).eval()


def test_output_shape_layout_and_interface(tiny_sg3):
    G = tiny_sg3
    assert isinstance(G, GeneratorProtocol) and G.family == "stylegan3"
    z = torch.randn(3, G.z_dim)
    with torch.no_grad():
        assert G(z).shape == (3, 3, 16, 16)
    assert G.num_ws == 16 == G.cfg.num_ws and G.mapping(z).shape == (3, 16, G.w_dim)
    slots = G.cfg.layout()
    assert [s.w_index for s in slots] == list(range(16))
    assert [s.role for s in slots] == ["input"] + ["conv"] * 14 + ["torgb"]
    assert slots[0].name == "input" and slots[-1].name == "L14_16_3"
    groups = G.synthesis.layers_by_w()
    assert len(groups) == 16 and all(len(g) == 1 for g in groups)
    assert isinstance(groups[0][0][1], SynthesisInput) and all(isinstance(g[0][1], SynthesisLayer) for g in groups[1:])
    assert groups[-1][0][1].is_torgb
    assert G.synthesis.sample_noise(2) == [] and G.synthesis.noise_resolutions() == []


def test_each_w_entry_drives_its_layer(tiny_sg3):
    """Changing W+ entry i changes the output of the module ``layers_by_w()[i]`` names, and no earlier one."""
    G = tiny_sg3
    ws = G.mapping(torch.randn(2, G.z_dim))
    outputs = {}

    def hook(name):
        return lambda m, i, o: outputs.__setitem__(name, o.detach().clone())

    handles = [m.register_forward_hook(hook(n)) for g in G.synthesis.layers_by_w() for n, m in g]
    names = [g[0][0] for g in G.synthesis.layers_by_w()]
    with torch.no_grad():
        G.synthesis(ws)
        base = dict(outputs)
        for i in (0, 5, 15):
            ws2 = ws.clone()
            ws2[:, i] += 1.0
            G.synthesis(ws2)
            changed = [n for n in names if not torch.equal(outputs[n], base[n])]
            assert changed[0] == names[i], (i, changed[:2])
    for h in handles:
        h.remove()


def test_parameter_roles(tiny_sg3):
    roles = {n: tiny_sg3.synthesis.parameter_role(n) for n, _ in tiny_sg3.synthesis.named_parameters()}
    assert roles["input.weight"] == "input" and roles["input.affine.weight"] == "affine"
    assert roles["L0_36_16.affine.bias"] == "affine" and roles["L0_36_16.weight"] == "weight"
    assert roles["L14_16_3.bias"] == "bias" and set(roles.values()) == {"input", "affine", "weight", "bias"}


def test_noise_modes_truncation_and_batch_independence(tiny_sg3):
    G = tiny_sg3
    z = torch.randn(4, G.z_dim)
    with torch.no_grad():
        img = G(z)
        assert all(torch.equal(G(z, noise_mode=m), img) for m in ("random", "none"))
        with pytest.raises(ValueError, match="noise_mode"):
            G(z, noise_mode="fresh")
        ws0 = G.mapping(z, truncation_psi=0.0)
        assert torch.allclose(ws0, G.w_avg.expand_as(ws0))
        same = G(z, truncation_psi=0.0)
        assert (same - same[:1]).abs().max() < 1e-6
        # The styles are normalised per sample: an image does not depend on the rest of its batch.
        torch.testing.assert_close(G(z[1:2]), img[1:2], atol=1e-6, rtol=0)


def test_magnitude_ema_is_tracked_only_when_asked(tiny_sg3):
    G = tiny_sg3
    layer = G.synthesis.layers()[3]
    before = layer.magnitude_ema.clone()
    ws = G.mapping(torch.randn(2, G.z_dim))
    G.synthesis(ws)
    assert torch.equal(layer.magnitude_ema, before)
    G.synthesis(ws, update_emas=True)
    assert not torch.equal(layer.magnitude_ema, before)


def test_backward_reaches_every_synthesis_parameter(tiny_sg3):
    G = tiny_sg3.train()
    G(torch.randn(2, G.z_dim)).square().mean().backward()
    missing = [n for n, p in G.synthesis.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


@pytest.mark.parametrize("field,value", [("resolution", 48), ("resolution", 4), ("z_dim", True), ("conv_clamp", "x"),
                                         ("use_radial_filters", 1), ("num_critical", 14), ("first_cutoff", 9.0),
                                         ("output_scale", float("nan")), ("channel_base", 0), ("margin_size", -1),
                                         ("first_stopband", 1.5), ("conv_kernel", 11)])
def test_config_is_validated(field, value):
    with pytest.raises(ValueError, match=field if field not in ("first_stopband", "first_cutoff") else "cutoff|stop"):
        StyleGAN3Config(**{**TINY, field: value})


def test_config_round_trips_and_presets():
    cfg = StyleGAN3Config(**TINY, conv_clamp=None)
    assert StyleGAN3Config.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="unknown"):
        StyleGAN3Config.from_dict({**cfg.to_dict(), "warp": 1})
    family = get_family("stylegan3")
    t = family.preset(256)
    assert (t.config_name, t.channel_base, t.channel_max, t.conv_kernel) == ("T", 32768, 512, 3)
    r = family.preset(256, 2, "R")
    assert (r.config_name, r.channel_base, r.channel_max, r.conv_kernel) == ("R", 65536, 1024, 1)
    # The layer names NVIDIA's SynthesisNetwork gives these configs (its code, run once).
    names = [s.name for s in family.preset(1024).layer_specs()]
    assert names[:2] == ["L0_36_512", "L1_36_512"] and names[-3:] == ["L12_1044_32", "L13_1024_32", "L14_1024_3"]
    assert [s.name for s in r.layer_specs()][-4:] == ["L11_276_362", "L12_276_256", "L13_256_256", "L14_256_3"]
    assert family.preset(1024).num_ws == 16
    with pytest.raises(ValueError, match="config"):
        StyleGAN3Config.from_channel_multiplier(64, 2, config="Q")


def test_filtered_lrelu_is_its_definition():
    """Bias, zero-insertion upsampling + padding + filter (gain up^2), leaky ReLU * gain, clamp, filter and
    decimation: against a direct computation with a full 2-D filter, and the 2-D path against the separable."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 7, 7, dtype=torch.float64)
    b = torch.randn(3, dtype=torch.float64)
    fu, fd = setup_filter([1, 4, 6, 4, 1, 2]).double(), setup_filter([1, 3, 3, 1]).double()
    got = filtered_lrelu(x, fu, fd, b, up=2, down=2, pad=(3, 2), gain=1.5, slope=0.2, clamp=0.7)
    y = torch.zeros(2, 3, 14, 14, dtype=torch.float64)
    y[:, :, ::2, ::2] = x + b.view(1, -1, 1, 1)
    y = torch.nn.functional.pad(y, [3, 2, 3, 2])
    k = torch.outer(fu, fu).flip([0, 1]) * 4
    y = torch.nn.functional.conv2d(y, k.expand(3, 1, 6, 6), groups=3)
    y = (torch.nn.functional.leaky_relu(y, 0.2) * 1.5).clamp(-0.7, 0.7)
    k = torch.outer(fd, fd).flip([0, 1])
    want = torch.nn.functional.conv2d(y, k.expand(3, 1, 4, 4), groups=3)[:, :, ::2, ::2]
    torch.testing.assert_close(got, want)
    two_d = filtered_lrelu(x, fu, torch.outer(fd, fd), b, up=2, down=2, pad=(3, 2), gain=1.5, slope=0.2, clamp=0.7)
    torch.testing.assert_close(two_d, want)
    torch.testing.assert_close(upfirdn2d(x, None, pad=(1, -2)), torch.nn.functional.pad(x, [1, 0, 1, 0])[..., :-2, :-2])


# --- formats and the command line ----------------------------------------------------------------------------


def outputs(G, seed=0, psi=0.7):
    z = torch.randn(3, G.z_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return G(z, truncation_psi=psi)


def test_native_round_trip_is_exact(tiny_sg3, tmp_path):
    from stylenada.formats.native import read_metadata

    path = save_generator(tiny_sg3, tmp_path / "g.safetensors")
    meta = read_metadata(path)
    assert meta["family"] == "stylegan3" and meta["config"]["use_radial_filters"] == tiny_sg3.cfg.use_radial_filters
    G = load_generator(path)
    assert type(G) is Generator and G.cfg == tiny_sg3.cfg
    assert torch.equal(outputs(G), outputs(tiny_sg3))
    assert G.synthesis.layers()[2].magnitude_ema == tiny_sg3.synthesis.layers()[2].magnitude_ema
    info = inspect_checkpoint(path)
    assert info.family == "stylegan3" and info.num_params == sum(p.numel() for p in tiny_sg3.parameters())


def test_rosinality_cannot_hold_stylegan3(tiny_sg3, tmp_path):
    with pytest.raises(CheckpointError, match="StyleGAN2 generators only") as e:
        save_generator(tiny_sg3, tmp_path / "g.pt")
    assert "\n" not in str(e.value) and str(tmp_path / "g.pt") in str(e.value)
    assert not (tmp_path / "g.pt").exists()


def test_broken_native_stylegan3_config_is_one_line(tiny_sg3, tmp_path):
    from safetensors.torch import load_file, save_file

    from stylenada.formats.native import META_KEY, read_metadata

    src = save_generator(tiny_sg3, tmp_path / "g.safetensors")
    meta = read_metadata(src)
    for field, value in [("use_radial_filters", "yes"), ("num_layers", 10**6), ("first_cutoff", -1)]:
        bad = tmp_path / f"{field}.safetensors"
        save_file(load_file(str(src)), str(bad),
                  metadata={META_KEY: json.dumps({**meta, "config": {**meta["config"], field: value}})})
        with pytest.raises(CheckpointError, match=f"bad stylegan3 config.*{field}") as e:
            load_generator(bad)
        assert "\n" not in str(e.value) and str(bad) in str(e.value)


def test_cli_info_convert_generate(tmp_path, capsys):
    from pathlib import Path

    from stylenada.cli import main

    pkl = Path(__file__).parent / "data" / "golden" / "sg3r_tiny16.pkl"
    assert main(["info", str(pkl)]) == 0
    out = capsys.readouterr().out
    assert "family:          stylegan3" in out and "num_ws:          16" in out and "use_radial_filters: True" in out
    assert main(["convert", str(pkl), str(tmp_path / "g.safetensors")]) == 0
    assert torch.equal(outputs(load_generator(tmp_path / "g.safetensors")), outputs(load_generator(pkl)))
    assert main(["convert", str(pkl), str(tmp_path / "g.pt")]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "StyleGAN2 generators only" in err
    assert main(["generate", str(tmp_path / "g.safetensors"), "--seeds", "0-3", "--out", str(tmp_path / "grid.png"),
                 "--truncation", "0.7"]) == 0
    assert (tmp_path / "grid.png").stat().st_size > 0
    assert main(["random-generator", str(tmp_path / "r.safetensors"), "--family", "stylegan3", "--resolution", "16",
                 "--channel-multiplier", "1"]) == 0
    assert load_generator(tmp_path / "r.safetensors").cfg.config_name == "T"
    assert main(["random-generator", str(tmp_path / "rr.safetensors"), "--family", "stylegan3", "--resolution", "16",
                 "--channel-multiplier", "1", "--variant", "R"]) == 0
    assert load_generator(tmp_path / "rr.safetensors").cfg.config_name == "R"
    capsys.readouterr()
    assert main(["random-generator", str(tmp_path / "rx.safetensors"), "--family", "stylegan3", "--variant", "X"]) == 1
    assert "config must be one of" in capsys.readouterr().err
    assert main(["random-generator", str(tmp_path / "s2.safetensors"), "--variant", "R"]) == 1
    assert "drop --variant" in capsys.readouterr().err


def test_layer_strategies_see_the_input_as_stylegan2s_const(tiny_sg3):
    """Strategies choose layers by W+ entry among the convs (and ToRGB); the Fourier input is trained by
    ``all`` alone, through its 'input' parameter, like StyleGAN2's const."""
    from stylenada.adapt.layers import STRATEGIES, SelectionConfig, layers_for_w_indices, trainable_layers

    G = tiny_sg3
    layers = trainable_layers(G, train_torgb=True)
    assert "input" not in layers and len(layers) == 15 and list(layers)[-1] == "L14_16_3"
    assert layers_for_w_indices(G, [0], True) == [] and layers_for_w_indices(G, [1, 15], False) == ["L0_36_16"]
    sel = STRATEGIES["all"](G, SelectionConfig()).select(0, None)
    trained = {n for n, p in G.synthesis.named_parameters() if p.requires_grad}
    assert "input.weight" in sel.layers and "input.weight" in trained and "input.affine.weight" not in trained
    late = STRATEGIES["late"](G, SelectionConfig(k=2)).select(0, None)
    assert late.layers == ["L13_16_8", "L14_16_3"]


def test_inversion_fits_codes_only(tiny_sg3):
    """Optimisation inversion runs on StyleGAN3; asked to fit noise maps too, it fits the codes alone."""
    from stylenada.invert.optimize import ProjectConfig, project

    with torch.no_grad():
        images = tiny_sg3(torch.randn(2, tiny_sg3.z_dim, generator=torch.Generator().manual_seed(1))).clamp(-1, 1)
    result = project(images, tiny_sg3, ProjectConfig(steps=4, optimize_noise=True, w_avg_samples=200), progress=False)
    assert result.noise is None and result.ws.shape == (2, 16, tiny_sg3.w_dim) and torch.isfinite(result.psnr).all()


def test_nada_runs_end_to_end_on_stylegan3(tmp_path, random_clip):
    """Every layer strategy trains a StyleGAN3 (and changes only what it selected); the run folder then goes
    through evaluate, report, video and edit like a StyleGAN2 run."""
    from conftest import save_test_clip

    from stylenada.adapt.config import TrainConfig
    from stylenada.adapt.layers import STRATEGIES, SelectionConfig
    from stylenada.adapt.trainer import adapt
    from stylenada.eval import evaluate
    from stylenada.invert.edit import edit
    from stylenada.viz.report import write_report
    from stylenada.viz.video import latent_walk_video

    torch.manual_seed(0)
    G = randomize(Generator(StyleGAN3Config(resolution=32, z_dim=16, w_dim=16, channel_base=256, channel_max=16,
                                            num_layers=4)))
    path = save_generator(G, tmp_path / "sg3.safetensors")
    spec = save_test_clip(random_clip, tmp_path)
    late_layers = {slot.name for slot in G.cfg.layout()[-2:]}  # k = 2: the last conv and the ToRGB
    runs = {}
    for layers in STRATEGIES:
        cfg = TrainConfig(generator=str(path), source="photo", target="sketch", out=str(tmp_path / layers), iters=2,
                          batch=2, lr=0.01, layers=layers, clip=[spec], templates="single", sample_every=1,
                          checkpoint_every=0, tensorboard=False, device="cpu",
                          selection=SelectionConfig(k=2, w_batch=2))
        runs[layers] = adapt(cfg, progress=False)
        before, after = G.state_dict(), load_generator(runs[layers].generator_path).state_dict()
        changed = {k.split(".")[1] for k in before
                   if k.startswith("synthesis.") and not torch.equal(before[k], after[k])}
        assert bool(changed) == (layers != "none"), (layers, changed)
        if layers == "late":
            assert changed == late_layers, changed
    run = runs["adaptive"].run_dir
    result = evaluate(run, n=4, seed=0, device="cpu", faces=False)
    assert result and "error" not in json.dumps(result).lower()
    assert write_report(run).is_file()
    adapted = runs["adaptive"].generator
    assert latent_walk_video(G, [adapted], tmp_path / "walk.mp4", n_keyframes=2, frames_per_transition=2) == 4
    rows = edit(torch.zeros(3, 32, 32), [G, adapted], steps=3, align=False)
    assert rows.shape == (3, 3, 32, 32) and torch.isfinite(rows).all()
