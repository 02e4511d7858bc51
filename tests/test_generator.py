"""Generator behaviour: shapes, truncation, style mixing, noise modes, the W+ -> layer map, D."""

import pytest
import torch

from stylenada.models.stylegan2 import (
    Discriminator,
    DiscriminatorConfig,
    GeneratorConfig,
    SynthesisLayer,
    ToRGBLayer,
    mix_styles,
)


def test_output_shape_and_num_ws(tiny_generator):
    G = tiny_generator
    z = torch.randn(3, G.z_dim)
    img = G(z)
    assert img.shape == (3, 3, 32, 32)
    assert G.num_ws == 8 == G.cfg.num_ws
    assert G.mapping(z).shape == (3, 8, G.w_dim)


@pytest.mark.parametrize("res,num_ws", [(32, 8), (64, 10), (256, 14), (1024, 18)])
def test_num_ws_follows_resolution(res, num_ws):
    assert GeneratorConfig(resolution=res).num_ws == num_ws


def test_bad_resolution_is_rejected():
    with pytest.raises(ValueError, match="power of two"):
        GeneratorConfig(resolution=100)


def test_channel_multiplier_matches_rosinality_table():
    cfg = GeneratorConfig.from_channel_multiplier(1024, 2)
    assert [cfg.channels(r) for r in cfg.resolutions] == [512, 512, 512, 512, 512, 256, 128, 64, 32]
    cfg = GeneratorConfig.from_channel_multiplier(1024, 1)
    assert [cfg.channels(r) for r in cfg.resolutions] == [512, 512, 512, 512, 256, 128, 64, 32, 16]


def test_truncation_moves_toward_w_avg(tiny_generator):
    G = tiny_generator
    z = torch.randn(4, G.z_dim)
    ws = G.mapping(z)
    ws0 = G.mapping(z, truncation_psi=0.0)
    assert torch.allclose(ws0, G.w_avg.expand_as(ws0))
    ws_half = G.mapping(z, truncation_psi=0.5)
    torch.testing.assert_close(ws_half, 0.5 * (ws + G.w_avg))
    cut = G.mapping(z, truncation_psi=0.0, truncation_cutoff=3)
    torch.testing.assert_close(cut[:, :3], G.w_avg.expand(4, 3, -1))
    torch.testing.assert_close(cut[:, 3:], ws[:, 3:])
    # psi=0 with constant noise: every z gives the same image.
    img = G(z, truncation_psi=0.0)
    assert (img - img[:1]).abs().max() < 1e-5


def test_style_mixing(tiny_generator):
    G = tiny_generator
    a, b = G.mapping(torch.randn(2, G.z_dim)), G.mapping(torch.randn(2, G.z_dim))
    m = mix_styles(a, b, 3)
    assert torch.equal(m[:, :3], a[:, :3]) and torch.equal(m[:, 3:], b[:, 3:])
    # Mixing only the last (finest) entry changes the image, but less than replacing all of them.
    img_a = G.synthesis(a)
    d_fine = (G.synthesis(mix_styles(a, b, G.num_ws - 1)) - img_a).abs().mean()
    d_all = (G.synthesis(b) - img_a).abs().mean()
    assert 0 < d_fine < d_all


def test_noise_modes(tiny_generator):
    G = tiny_generator
    ws = G.mapping(torch.randn(2, G.z_dim))
    c1, c2 = G.synthesis(ws, noise_mode="const"), G.synthesis(ws, noise_mode="const")
    assert torch.equal(c1, c2)
    r1, r2 = G.synthesis(ws, noise_mode="random"), G.synthesis(ws, noise_mode="random")
    assert not torch.equal(r1, r2)
    none = G.synthesis(ws, noise_mode="none")
    assert not torch.allclose(none, c1)
    with torch.no_grad():
        for m in G.modules():
            if isinstance(m, SynthesisLayer):
                m.noise_strength.zero_()
    assert torch.allclose(G.synthesis(ws, noise_mode="random"), G.synthesis(ws, noise_mode="none"))
    with pytest.raises(ValueError, match="noise_mode"):
        G.synthesis(ws, noise_mode="bogus")


def test_layers_by_w_drives_the_right_layers(tiny_generator):
    """Perturbing W+ entry i changes exactly the outputs of the layers layers_by_w()[i] names."""
    G = tiny_generator
    groups = G.synthesis.layers_by_w()
    assert len(groups) == G.num_ws
    names = [n for g in groups for n, _ in g]
    assert names[:4] == ["b4.conv1", "b4.torgb", "b8.conv0", "b8.conv1"]
    assert len(set(names)) == len(names)
    ws = G.mapping(torch.randn(1, G.z_dim))
    for i, group in enumerate(groups):
        seen = {}
        hooks = [m.affine.register_forward_hook(lambda mod, inp, out, n=n, s=seen: s.__setitem__(n, inp[0].clone()))
                 for n, m in G.synthesis.named_modules() if isinstance(m, (SynthesisLayer, ToRGBLayer))]
        G.synthesis(ws)
        before = dict(seen)
        ws2 = ws.clone()
        ws2[:, i] += 1.0
        G.synthesis(ws2)
        for h in hooks:
            h.remove()
        changed = {n for n in seen if not torch.equal(seen[n], before[n])}
        assert changed == {n for n, _ in group}, (i, changed)


def test_conv_layers_by_w(tiny_generator):
    convs = tiny_generator.synthesis.conv_layers_by_w()
    assert [n for n, _ in convs] == ["b4.conv1", "b8.conv0", "b8.conv1", "b16.conv0", "b16.conv1", "b32.conv0",
                                     "b32.conv1"]


def test_config_roundtrip():
    cfg = GeneratorConfig(resolution=64, conv_clamp=256.0)
    assert GeneratorConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown"):
        GeneratorConfig.from_dict({**cfg.to_dict(), "bogus": 1})


def test_discriminator_shapes_and_grad():
    D = Discriminator(DiscriminatorConfig(resolution=32, channel_base=512, channel_max=16))
    x = torch.randn(4, 3, 32, 32, requires_grad=True)
    out = D(x)
    assert out.shape == (4, 1)
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_generator_backward_reaches_synthesis(tiny_generator):
    G = tiny_generator
    G.requires_grad_(True)
    G(torch.randn(2, G.z_dim)).square().mean().backward()
    for name, p in G.synthesis.named_parameters():
        assert p.grad is not None, name


def backward_with_saved_bytes(G, ws: torch.Tensor, noise_mode: str, noise) -> tuple[int, dict]:
    """Bytes autograd keeps for the backward pass of one synthesis forward, and the gradients it gives."""
    G.zero_grad(set_to_none=True)
    ws = ws.clone().requires_grad_(True)
    saved: list[int] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        img = G.synthesis(ws, noise_mode=noise_mode, noise=noise)
    img.square().mean().backward()
    grads = {n: p.grad.clone() for n, p in G.synthesis.named_parameters()}
    grads["ws"] = ws.grad
    return sum(saved), grads


@pytest.mark.parametrize("family", ["stylegan2", "stylegan3"])
@pytest.mark.parametrize("noise_mode", ["random", "const"])
def test_activation_checkpointing_gives_the_same_gradients_from_less_memory(family, noise_mode, tiny_generator):
    from stylenada.models.stylegan3 import Generator as SG3
    from stylenada.models.stylegan3 import StyleGAN3Config

    torch.manual_seed(0)
    G = tiny_generator if family == "stylegan2" else SG3(StyleGAN3Config(
        resolution=16, z_dim=16, w_dim=16, channel_base=256, channel_max=16, mapping_layers=2))
    G.requires_grad_(True)
    ws = G.mapping(torch.randn(2, G.z_dim)).detach()
    noise = G.synthesis.sample_noise(2, torch.Generator().manual_seed(1)) if noise_mode == "random" else None
    plain_bytes, plain = backward_with_saved_bytes(G, ws, noise_mode, noise)
    G.synthesis.checkpointing = True
    ckpt_bytes, ckpt = backward_with_saved_bytes(G, ws, noise_mode, noise)
    assert plain.keys() == ckpt.keys()
    for name in plain:
        torch.testing.assert_close(ckpt[name], plain[name], rtol=1e-5, atol=1e-6, msg=name)
    assert ckpt_bytes < 0.5 * plain_bytes, (ckpt_bytes, plain_bytes)
    with torch.no_grad():  # no autograd: the flag changes nothing
        torch.testing.assert_close(G.synthesis(ws, noise_mode="const"), G.synthesis(ws, noise_mode="const"))
