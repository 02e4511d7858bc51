"""Exactness against the public reference implementations, on tiny random networks they built and saved.

tests/data/golden/README.md says how each file was made. Outputs must agree to 1e-4 (max abs).
"""

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from stylenada.formats import inspect_checkpoint, load_generator
from stylenada.models.stylegan2 import Discriminator, DiscriminatorConfig

GOLDEN = Path(__file__).parent / "data" / "golden"
CASES = ["rosinality_tiny.pt", "rosinality_tiny_train.pt", "nvidia_tiny.pkl", "nvidia_tiny_proto3.pkl"]


@pytest.mark.parametrize("name", CASES)
def test_images_match_reference(name):
    ref = np.load(GOLDEN / (Path(name).stem + ".npz"))
    G = load_generator(GOLDEN / name)
    if "latent_avg" in ref:  # a training checkpoint stores no average: the reference used this one
        G.mapping.w_avg.copy_(torch.from_numpy(ref["latent_avg"]))
    z = torch.from_numpy(ref["z"])
    with torch.no_grad():
        np.testing.assert_allclose(G.mapping(z).numpy(), ref["ws"], atol=1e-5, rtol=0)
        np.testing.assert_allclose(G.mapping(z, truncation_psi=0.7).numpy(), ref["ws_psi07"], atol=1e-5, rtol=0)
        for key, psi in (("img_psi1", 1.0), ("img_psi07", 0.7)):
            out = G(z, truncation_psi=psi, noise_mode="const").numpy()
            assert np.abs(out - ref[key]).max() <= 1e-4, (name, key)


def test_nvidia_config_is_read():
    info = inspect_checkpoint(GOLDEN / "nvidia_tiny.pkl")
    assert info.format == "nvidia" and info.config.resolution == 32 and info.config.conv_clamp == 256


def test_convert_nvidia_to_rosinality_keeps_images(tmp_path):
    from stylenada.formats import save_generator

    G = load_generator(GOLDEN / "nvidia_tiny.pkl")
    save_generator(G, tmp_path / "g.pt")
    G2 = load_generator(tmp_path / "g.pt")
    z = torch.from_numpy(np.load(GOLDEN / "nvidia_tiny.npz")["z"])
    with torch.no_grad():
        # rosinality's format has no conv_clamp: equal as long as no activation reaches the clamp.
        assert (G(z) - G2(z)).abs().max() <= 1e-5


# rosinality D key -> our D key. ``convs.0`` is the 1x1 from-RGB ConvLayer, ``convs.k`` (k >= 1) the residual
# blocks from the highest resolution down. A ConvLayer is an nn.Sequential: (Blur,) EqualConv2d, (FusedLeakyReLU),
# so the index of the weight and the bias moves by one when the layer downsamples. Blur ``kernel`` buffers have
# no counterpart (our resample filter is a non-persistent buffer).
ROSINALITY_D_KEYS = [
    (r"convs\.0\.0\.weight", r"fromrgb.weight"),
    (r"convs\.0\.1\.bias", r"fromrgb.bias"),
    (r"convs\.(\d+)\.conv1\.0\.(weight)", r"blocks.{0}.conv0.\2"),
    (r"convs\.(\d+)\.conv1\.1\.(bias)", r"blocks.{0}.conv0.\2"),
    (r"convs\.(\d+)\.conv2\.1\.(weight)", r"blocks.{0}.conv1.\2"),
    (r"convs\.(\d+)\.conv2\.2\.(bias)", r"blocks.{0}.conv1.\2"),
    (r"convs\.(\d+)\.skip\.1\.(weight)", r"blocks.{0}.skip.\2"),
    (r"final_conv\.0\.weight", r"conv.weight"),
    (r"final_conv\.1\.bias", r"conv.bias"),
    (r"final_linear\.0\.(weight|bias)", r"fc.\1"),
    (r"final_linear\.1\.(weight|bias)", r"out.\1"),
]


def rosinality_d_to_native(sd: dict) -> dict:
    """Rename a rosinality ``Discriminator`` state dict to our ``Discriminator``'s keys (values are shared)."""
    out = {}
    for key, value in sd.items():
        if key.endswith(".kernel"):  # Blur buffers: the fixed [1, 3, 3, 1] filter
            continue
        for pattern, target in ROSINALITY_D_KEYS:
            m = re.fullmatch(pattern, key)
            if m:
                block = int(m.group(1)) - 1 if m.re.groups == 2 else None  # convs.k is our blocks.(k-1)
                out[m.expand(target.format(block))] = value
                break
        else:
            raise KeyError(f"unmapped rosinality discriminator key {key!r}")
    return out


def test_discriminator_matches_rosinality():
    ckpt = torch.load(GOLDEN / "rosinality_tiny_train.pt", map_location="cpu", weights_only=False)
    ref = np.load(GOLDEN / "rosinality_tiny_d.npz")
    # rosinality's D was built with 16 channels at every resolution: channel_base 256 gives min(256 // r, 16) = 16.
    D = Discriminator(DiscriminatorConfig(resolution=16, channel_base=256, channel_max=16)).eval()
    D.load_state_dict(rosinality_d_to_native(ckpt["d"]), strict=True)
    with torch.no_grad():
        logits = D(torch.from_numpy(ref["images"])).numpy()
    assert logits.shape == ref["logits"].shape
    assert np.abs(logits - ref["logits"]).max() <= 1e-4
