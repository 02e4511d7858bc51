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


# rosinality D key -> our D key. ``convs.0`` is the 1x1 from-RGB ConvLayer and ``convs.k`` (k >= 1) are the
# residual blocks from the highest resolution down (our ``blocks.{k-1}``). A ConvLayer is an nn.Sequential of
# (Blur,) EqualConv2d, (FusedLeakyReLU), so the index of its weight and bias moves by one when it downsamples.
ROSINALITY_D_KEYS = {
    "convs.0.0.weight": "fromrgb.weight",
    "convs.0.1.bias": "fromrgb.bias",
    "final_conv.0.weight": "conv.weight",
    "final_conv.1.bias": "conv.bias",
    "final_linear.0.weight": "fc.weight",
    "final_linear.0.bias": "fc.bias",
    "final_linear.1.weight": "out.weight",
    "final_linear.1.bias": "out.bias",
}
ROSINALITY_D_BLOCK_KEYS = {
    "conv1.0.weight": "conv0.weight",
    "conv1.1.bias": "conv0.bias",
    "conv2.1.weight": "conv1.weight",
    "conv2.2.bias": "conv1.bias",
    "skip.1.weight": "skip.weight",
}


def rosinality_d_to_native(sd: dict) -> dict:
    """Rename a rosinality ``Discriminator`` state dict to our ``Discriminator``'s keys (values are shared).

    Blur ``kernel`` buffers are dropped: they hold the fixed resample filter, a non-persistent buffer here."""
    out = {}
    for key, value in sd.items():
        block = re.fullmatch(r"convs\.([1-9]\d*)\.(.+)", key)
        if key.endswith(".kernel"):
            continue
        elif block:
            out[f"blocks.{int(block[1]) - 1}.{ROSINALITY_D_BLOCK_KEYS[block[2]]}"] = value
        else:
            out[ROSINALITY_D_KEYS[key]] = value
    return out


def test_discriminator_matches_rosinality():
    ckpt = torch.load(GOLDEN / "rosinality_tiny_train.pt", map_location="cpu", weights_only=False)
    ref = np.load(GOLDEN / "rosinality_tiny_d.npz")
    # rosinality's D was built with 16 channels at every resolution: channel_base 256 gives min(256 // r, 16) = 16.
    D = Discriminator(DiscriminatorConfig(resolution=16, channel_base=256, channel_max=16)).eval()
    D.load_state_dict(rosinality_d_to_native(ckpt["d"]), strict=True)
    f = D.blocks[0].conv1.resample_filter  # separable 1-D taps; rosinality stores their 2-D outer product
    for key in (k for k in ckpt["d"] if k.endswith(".kernel")):  # the Blur buffers the key map drops
        torch.testing.assert_close(ckpt["d"][key], torch.outer(f, f), rtol=0, atol=0)
    with torch.no_grad():
        logits = D(torch.from_numpy(ref["images"])).numpy()
    assert logits.shape == ref["logits"].shape
    assert np.abs(logits - ref["logits"]).max() <= 1e-4
