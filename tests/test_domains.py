"""Compact domains: --params stylespace trains only style offsets; a domain file applies, adds and exports."""

import pytest
import torch

from stylenada.adapt.config import TrainConfig
from stylenada.adapt.domains import (
    apply_domains,
    extract_domain,
    load_domain,
    parse_domain_spec,
    save_domain,
    scope_members,
)
from stylenada.adapt.layers import SelectionConfig
from stylenada.adapt.trainer import adapt
from stylenada.cli import main
from stylenada.errors import CheckpointError, StylenadaError
from stylenada.formats import load_generator, save_generator
from stylenada.models.stylegan2 import Generator, GeneratorConfig

TINY = GeneratorConfig(resolution=32, z_dim=32, w_dim=32, mapping_layers=2, channel_base=512, channel_max=16)


def _run(gen_path, out, clip, target="a sketch", params="stylespace", **sel):
    cfg = TrainConfig(generator=str(gen_path), source="a photo", target=target, out=str(out), iters=3, batch=2,
                      templates="single", sample_every=0, checkpoint_every=0, tensorboard=False, n_samples=2,
                      lr=0.05, layers="all", selection=SelectionConfig(w_batch=2, params=params, **sel))
    return adapt(cfg, clip_models=[(clip, 1.0)], progress=False)


def _render(G, seed=0):
    z = torch.randn(4, G.z_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return G(z, noise_mode="const")


@pytest.fixture
def base(tmp_path):
    torch.manual_seed(0)
    return save_generator(Generator(TINY), tmp_path / "g.safetensors")


def test_stylespace_run_trains_only_style_offsets_and_its_domain_reproduces_it(base, tmp_path, random_clip):
    res = _run(base, tmp_path / "r", random_clip)
    G0, G1 = load_generator(base), load_generator(res.generator_path)
    changed = [n for (n, p), q in zip(G0.state_dict().items(), G1.state_dict().values(), strict=True)
               if not torch.equal(p, q)]
    assert changed and all(n.endswith(".affine.bias") for n in changed)
    domain = load_domain(res.run_dir / "domain.safetensors")
    assert domain.size == sum(G0.synthesis.get_parameter(n.removeprefix("synthesis.")).numel() for n in changed)
    assert (res.run_dir / "domain.safetensors").stat().st_size < 100_000
    assert (_render(apply_domains(G0, [(domain, 1.0)])) - _render(G1)).abs().max() <= 1e-5
    assert torch.equal(_render(apply_domains(G0, [(domain, 0.0)])), _render(G0))


def test_stylespace_torgb_scope_adds_the_torgb_layers_and_nothing_else(base, tmp_path, random_clip):
    members = scope_members(load_generator(base), "stylespace_torgb")
    assert {"b8.conv0.affine.bias", "b8.torgb.affine.bias", "b8.torgb.weight", "b32.torgb.bias"} <= members
    assert not members & {"b8.torgb.affine.weight", "b8.conv0.weight", "b4.const"}
    scope = members.__contains__
    res = _run(base, tmp_path / "r", random_clip, params="stylespace_torgb")
    G0, G1 = load_generator(base), load_generator(res.generator_path)
    changed = {n.removeprefix("synthesis.") for (n, p), q in zip(G0.state_dict().items(), G1.state_dict().values(),
                                                                 strict=True) if not torch.equal(p, q)}
    assert any(n.endswith(".torgb.weight") for n in changed) and all(scope(n) for n in changed)
    domain = load_domain(res.run_dir / "domain.safetensors")
    assert domain.scope == "stylespace_torgb" and set(domain.deltas) == changed
    assert (_render(apply_domains(G0, [(domain, 1.0)])) - _render(G1)).abs().max() <= 1e-5


def test_scopes_follow_layer_roles_in_every_family():
    """A StyleGAN3 ToRGB is named like its convs (L<i>_<size>_<channels>): the scope finds it by its role."""
    from stylenada.models.stylegan3 import Generator as SG3
    from stylenada.models.stylegan3 import StyleGAN3Config

    G = SG3(StyleGAN3Config(resolution=16, z_dim=16, w_dim=16, channel_base=256, channel_max=16, mapping_layers=2))
    torgb = G.cfg.layout()[-1].name
    extra = scope_members(G, "stylespace_torgb") - scope_members(G, "stylespace")
    assert extra == {f"{torgb}.weight", f"{torgb}.bias"}
    # the convs' style offsets alone: every style offset but the ToRGB's
    assert scope_members(G, "stylespace") - scope_members(G, "stylespace_conv") == {f"{torgb}.affine.bias"}


def test_stylespace_conv_scope_leaves_the_torgb_layers_alone(base):
    G = load_generator(base)
    members = scope_members(G, "stylespace_conv")
    assert {"b8.conv0.affine.bias", "b32.conv1.affine.bias"} <= members and all(
        n.endswith(".affine.bias") and ".torgb." not in n for n in members)
    assert members == {n for n in scope_members(G, "stylespace") if ".torgb." not in n}


def test_domains_add_up_and_refuse_another_architecture(base, tmp_path, random_clip):
    a = load_domain(_run(base, tmp_path / "a", random_clip, target="a sketch").run_dir / "domain.safetensors")
    b = load_domain(_run(base, tmp_path / "b", random_clip, target="a painting").run_dir / "domain.safetensors")
    G = load_generator(base)
    both = apply_domains(G, [(a, 1.0), (b, 0.5)])
    one_then_other = apply_domains(apply_domains(G, [(a, 1.0)]), [(b, 0.5)])
    assert (_render(both) - _render(one_then_other)).abs().max() <= 1e-6
    other = Generator(GeneratorConfig(resolution=16, z_dim=32, w_dim=32, mapping_layers=2, channel_base=256,
                                      channel_max=16))
    with pytest.raises(StylenadaError, match="trained on a stylegan2 generator of 32px"):
        apply_domains(other, [(a, 1.0)])


def test_domain_from_two_generators_and_the_file_checks(base, tmp_path):
    G0 = load_generator(base)
    G1 = load_generator(base)
    with torch.no_grad():
        G1.synthesis.b8.conv0.affine.bias.add_(0.3)
        G1.synthesis.b8.conv0.weight.add_(0.3)  # outside the scope: not part of the domain
    d = extract_domain(G0, G1, "stylespace")
    assert list(d.deltas) == ["b8.conv0.affine.bias"]
    path = save_domain(d, tmp_path / "d.safetensors")
    assert torch.equal(load_domain(path).deltas["b8.conv0.affine.bias"], d.deltas["b8.conv0.affine.bias"])
    with pytest.raises(CheckpointError, match="not a domain"):
        load_domain(base)
    with pytest.raises(StylenadaError, match="compact"):
        extract_domain(G0, G1, "full")
    assert parse_domain_spec("x.safetensors:0.7") == ("x.safetensors", 0.7)
    assert parse_domain_spec("x.safetensors") == ("x.safetensors", 1.0)


def test_generate_and_convert_take_domains(base, tmp_path, random_clip, capsys):
    res = _run(base, tmp_path / "r", random_clip)
    dom = str(res.run_dir / "domain.safetensors")
    assert main(["convert", str(base), str(tmp_path / "full.pt"), "--domain", f"{dom}:1"]) == 0
    exported = load_generator(tmp_path / "full.pt")
    assert (_render(exported) - _render(load_generator(res.generator_path))).abs().max() <= 1e-5
    assert main(["generate", str(base), "--seeds", "0-3", "--domain", f"{dom}:0.5", "--out",
                 str(tmp_path / "half.png")]) == 0
    assert main(["generate", str(base), "--seeds", "0", "--domain", str(base), "--out", str(tmp_path / "x.png")]) == 1
    assert "not a domain" in capsys.readouterr().err
