"""stylenada: text-driven domain adaptation of StyleGAN2 generators with CLIP (StyleGAN-NADA).

Importing the package is cheap; the public functions load their modules on first use.

    import stylenada
    G = stylenada.load_generator("ffhq-config-f.pt")
    result = stylenada.train(stylenada.TrainConfig(generator="ffhq-config-f.pt", source="photo",
                                                   target="pencil sketch", out="runs/sketch"))
    result.generator                      # the adapted generator (loaded from result.generator_path)
    stylenada.resume("runs/sketch", iters=600)

The subpackages (``stylenada.adapt``, ``stylenada.clip``, ``stylenada.models``, ...) hold the rest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {  # public name -> (module, attribute)
    "load_generator": ("stylenada.formats", "load_generator"),
    "save_generator": ("stylenada.formats", "save_generator"),
    "inspect_checkpoint": ("stylenada.formats", "inspect_checkpoint"),
    "Generator": ("stylenada.models", "Generator"),
    "GeneratorConfig": ("stylenada.models", "GeneratorConfig"),
    "Discriminator": ("stylenada.models", "Discriminator"),
    "DiscriminatorConfig": ("stylenada.models", "DiscriminatorConfig"),
    "StylenadaError": ("stylenada.errors", "StylenadaError"),
    "train": ("stylenada.adapt.trainer", "adapt"),  # not 'adapt': that name is the subpackage's
    "AdaptResult": ("stylenada.adapt.trainer", "AdaptResult"),
    "SelectionConfig": ("stylenada.adapt.layers", "SelectionConfig"),
    "resume": ("stylenada.adapt.trainer", "resume"),
    "TrainConfig": ("stylenada.adapt.config", "TrainConfig"),
    "edit": ("stylenada.invert", "edit"),
    "load_encoder": ("stylenada.invert", "load_encoder"),
}

if TYPE_CHECKING:
    from .adapt.config import TrainConfig
    from .adapt.layers import SelectionConfig
    from .adapt.trainer import AdaptResult, resume
    from .adapt.trainer import adapt as train
    from .errors import StylenadaError
    from .formats import inspect_checkpoint, load_generator, save_generator
    from .models import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'stylenada' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = sorted(_LAZY)
