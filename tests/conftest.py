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


TEST_CLIP = "stylenada-test-clip"  # tests/data/stylenada-test-clip.json: ViT 32px/patch 8, text width 32


def register_test_clip() -> str:
    from pathlib import Path

    import open_clip

    if TEST_CLIP not in open_clip.list_models():
        open_clip.add_model_config(Path(__file__).parent / "data" / f"{TEST_CLIP}.json")
    return TEST_CLIP


def make_test_clip(seed: int = 0):
    """A tiny random open_clip model wrapped as a frozen ClipModel (no network, no weights file)."""
    import open_clip

    from stylenada.clip import ClipModel

    name = register_test_clip()
    torch.manual_seed(seed)
    return ClipModel(open_clip.create_model(name), open_clip.get_tokenizer(name), name=name)


@pytest.fixture(scope="session")
def random_clip():
    return make_test_clip()


def save_test_clip(clip, folder) -> str:
    """Write ``clip``'s weights under ``folder``; returns the ``--clip`` spec that loads them."""
    from pathlib import Path

    from safetensors.torch import save_file

    name = register_test_clip()
    weights = Path(folder) / "clip.safetensors"
    save_file({k: v.contiguous() for k, v in clip.model.state_dict().items()}, str(weights))
    return f"{name}:{weights}"


def find_chromium() -> str | None:
    """The system's Chromium for Playwright (its own browser downloads need the internet), or None."""
    import os
    import shutil

    for name in (os.environ.get("STYLENADA_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        path = name and shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="session")
def chromium_browser():
    """A headless Chromium driven by Playwright. Skipped, with the reason shown, only where neither Playwright
    nor a Chromium is installed; CI sets STYLENADA_REQUIRE_BROWSER=1 so that there it fails instead."""
    import os

    reason = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright, reason = None, "playwright is not installed (pip install -e '.[dev]')"
    chromium = find_chromium()
    if reason is None and chromium is None:
        reason = "no Chromium found (apt-get install chromium, or set STYLENADA_CHROMIUM)"
    if reason is not None:
        if os.environ.get("STYLENADA_REQUIRE_BROWSER"):
            pytest.fail(reason)
        pytest.skip(reason)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        yield b
        b.close()
