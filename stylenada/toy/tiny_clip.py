"""The shapes world's tiny CLIP: an open_clip model of a registered small config, shipped weights.

Loaded through open_clip's own factory (``create_model(name, pretrained=<file>)``), the same code path
as real CLIP checkpoints; ``--clip tiny-shapes`` selects it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import StylenadaError

MODEL_NAME = "tiny-shapes"
CONFIG_DIR = Path(__file__).parent / "configs"
WEIGHTS = Path(__file__).parent / "weights" / "tiny_clip.safetensors"


def register() -> str:
    """Register the tiny config with open_clip's model registry (idempotent)."""
    import open_clip

    if MODEL_NAME not in open_clip.list_models():
        open_clip.add_model_config(CONFIG_DIR / f"{MODEL_NAME}.json")
    return MODEL_NAME


def build_tiny_clip(seed: int = 0) -> torch.nn.Module:
    """A randomly initialised tiny CLIP (for training)."""
    import open_clip

    torch.manual_seed(seed)
    return open_clip.create_model(register())


def load_tiny_clip(device: str | torch.device = "cpu", weights: str | Path | None = None):
    """(open_clip model, tokenizer) with the shipped (or given) weights, in eval mode."""
    import open_clip

    path = Path(weights) if weights is not None else WEIGHTS
    if not path.exists():
        raise StylenadaError(f"tiny CLIP weights not found at {path}: train them with "
                             "`python -m stylenada.toy.train_clip --out {path}`")
    model = open_clip.create_model(register(), pretrained=str(path), device=device)
    return model.eval(), open_clip.get_tokenizer(MODEL_NAME)
