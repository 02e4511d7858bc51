"""Exactness against the public reference implementations, on tiny random networks they built and saved.

tests/data/golden/README.md says how each file was made. Outputs must agree to 1e-4 (max abs).
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from stylenada.formats import inspect_checkpoint, load_generator

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
