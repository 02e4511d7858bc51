import pytest
import torch

from stylenada.models.stylegan2 import Generator, GeneratorConfig

TINY = GeneratorConfig(resolution=32, z_dim=32, w_dim=32, mapping_layers=2, channel_base=512, channel_max=16)


def randomize_generator(G: Generator, seed: int = 0) -> Generator:
    """Give the zero/one-initialised parts (biases, noise strengths, w_avg) random values."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("bias") or name.endswith("noise_strength"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen) + (1.0 if "affine" in name else 0.0))
        G.mapping.w_avg.copy_(torch.randn(G.w_dim, generator=gen))
    return G


@pytest.fixture
def tiny_generator() -> Generator:
    torch.manual_seed(0)
    return randomize_generator(Generator(TINY)).eval()
