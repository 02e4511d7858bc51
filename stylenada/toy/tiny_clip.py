"""The shapes world's tiny CLIPs: open_clip models of registered small configs, shipped weights.

Two teachers of different architectures, trained from different seeds, so that an ensemble of them is
harder to fool than either (as StyleGAN-NADA pairs ViT-B/32 with ViT-B/16): ``tiny-shapes`` (a small
ViT) and ``tiny-shapes-rn`` (a small ResNet image tower with attention pooling). Loaded through
open_clip's own factory (``create_model(name, pretrained=<file>)``), the same code path as real CLIP
checkpoints; ``--clip tiny-shapes --clip tiny-shapes-rn`` selects both.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import StylenadaError

MODEL_NAME = "tiny-shapes"
ARCHITECTURES = {"vit": "tiny-shapes", "rn": "tiny-shapes-rn"}  # --arch of the trainer -> model name
CONFIG_DIR = Path(__file__).parent / "configs"
WEIGHT_DIR = Path(__file__).parent / "weights"
WEIGHTS = {"tiny-shapes": WEIGHT_DIR / "tiny_clip.safetensors",
           "tiny-shapes-rn": WEIGHT_DIR / "tiny_clip_rn.safetensors"}


def register(arch: str = "vit") -> str:
    """Register the tiny config of ``arch`` ('vit' or 'rn', or a model name) with open_clip (idempotent)."""
    import open_clip

    name = ARCHITECTURES.get(arch, arch)
    if name not in WEIGHTS:
        raise StylenadaError(f"unknown tiny CLIP {arch!r}: choose one of {', '.join(ARCHITECTURES)}")
    if name not in open_clip.list_models():
        open_clip.add_model_config(CONFIG_DIR / f"{name}.json")
    return name


def build_tiny_clip(seed: int = 0, arch: str = "vit") -> torch.nn.Module:
    """A randomly initialised tiny CLIP (for training)."""
    import open_clip

    torch.manual_seed(seed)
    return open_clip.create_model(register(arch))


def load_tiny_clip(device: str | torch.device = "cpu", weights: str | Path | None = None, name: str = MODEL_NAME):
    """(open_clip model, tokenizer) of tiny CLIP ``name`` with the shipped (or given) weights, in eval mode."""
    import open_clip

    name = register(name)
    path = Path(weights) if weights is not None else WEIGHTS[name]
    if not path.exists():
        raise StylenadaError(f"tiny CLIP weights not found at {path}: train them with "
                             f"`python -m stylenada.toy.train_clip --out {path}`")
    model = open_clip.create_model(name, pretrained=str(path), device=device)
    return model.eval(), open_clip.get_tokenizer(name)
