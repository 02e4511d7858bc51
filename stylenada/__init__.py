"""stylenada: text-driven domain adaptation of StyleGAN2 generators with CLIP (StyleGAN-NADA).

Importing the package is cheap; the public functions load their modules on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "load_generator": "stylenada.formats",
    "save_generator": "stylenada.formats",
    "inspect_checkpoint": "stylenada.formats",
    "Generator": "stylenada.models.stylegan2",
    "GeneratorConfig": "stylenada.models.stylegan2",
    "Discriminator": "stylenada.models.stylegan2",
    "DiscriminatorConfig": "stylenada.models.stylegan2",
    "StylenadaError": "stylenada.errors",
    "adapt": "stylenada.adapt.trainer",
    "resume": "stylenada.adapt.trainer",
    "TrainConfig": "stylenada.adapt.config",
    "edit": "stylenada.invert",
    "load_encoder": "stylenada.invert",
}

if TYPE_CHECKING:
    from .adapt.config import TrainConfig
    from .adapt.trainer import adapt, resume
    from .errors import StylenadaError
    from .formats import inspect_checkpoint, load_generator, save_generator
    from .models.stylegan2 import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'stylenada' has no attribute {name!r}")


__all__ = sorted(_LAZY)
