"""Generator families: the interface every generator offers, and the registry of families.

The rest of the library (training, layer strategies, inversion, figures, ``info``) works through
:class:`Generator` only; ``models/`` and ``formats/`` are the only places that know a family's layer
names. A family is one registered :class:`GeneratorFamily`:

    register_family(GeneratorFamily("stylegan2", GeneratorConfig, Generator))

and checkpoints record its name (native metadata ``family``) so that loading builds the right class.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from ..errors import CheckpointError, first_line

NOISE_MODES = ("random", "const", "none")  # per-pixel noise: fresh each call, the stored maps, or none


@runtime_checkable
class LayoutSlot(Protocol):
    name: str  # a synthesis layer, e.g. "b8.conv0"
    w_index: int  # the W+ entry that drives it
    role: str  # "conv", "torgb", or "input" (StyleGAN3's Fourier features, driven by entry 0)
    resolution: int


class Synthesis(Protocol):
    num_ws: int
    w_dim: int

    def __call__(self, ws: torch.Tensor, noise_mode: str = "const",
                 noise: list[torch.Tensor | None] | None = None) -> torch.Tensor: ...

    def layers_by_w(self) -> list[list[tuple[str, nn.Module]]]: ...

    def parameter_role(self, name: str) -> str: ...

    def sample_noise(self, n: int, generator: torch.Generator | None = None,
                     device: torch.device | str | None = None) -> list[torch.Tensor]: ...

    def noise_resolutions(self) -> list[int]: ...


@runtime_checkable
class Generator(Protocol):
    """What every generator family offers: ``G(z)`` = ``G.synthesis(G.mapping(z))`` with W+ codes
    [N, num_ws, w_dim] in between, images NCHW in about [-1, 1]."""

    family: str
    cfg: Any  # the family's config dataclass: to_dict(), layout() -> list[LayoutSlot]
    z_dim: int
    w_dim: int
    num_ws: int
    resolution: int
    img_channels: int
    mapping: nn.Module  # z [N, z_dim] -> W+ [N, num_ws, w_dim]; its buffer w_avg is the mean w
    synthesis: Synthesis

    def __call__(self, z: torch.Tensor, truncation_psi: float = 1.0, noise_mode: str = "const") -> torch.Tensor: ...


@dataclass(frozen=True)
class GeneratorFamily:
    """A generator architecture: its name, config class (``from_dict``/``to_dict``) and generator class."""

    name: str
    config_class: type
    generator_class: Callable[[Any], nn.Module]
    description: str = ""
    preset: Callable[..., Any] | None = None  # (resolution, channel_multiplier) -> config, for random generators

    def config_from_dict(self, d: dict, source: str) -> Any:
        """The family's config from checkpoint metadata; one CheckpointError line naming what is wrong."""
        if not isinstance(d, dict):
            raise CheckpointError(f"{source}: the {self.name} config is not a mapping")
        try:
            return self.config_class.from_dict(d)
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{source}: bad {self.name} config ({first_line(e)})") from None

    def build(self, cfg: Any) -> nn.Module:
        return self.generator_class(cfg)


FAMILIES: dict[str, GeneratorFamily] = {}


def register_family(family: GeneratorFamily) -> GeneratorFamily:
    FAMILIES[family.name] = family
    return family


def get_family(name: str, source: str = "") -> GeneratorFamily:
    if name not in FAMILIES:
        where = f"{source}: " if source else ""
        raise CheckpointError(f"{where}unknown generator family {name!r} (this stylenada knows "
                              f"{', '.join(FAMILIES)}); upgrade stylenada or convert the file")
    return FAMILIES[name]


def family_of(G: nn.Module) -> GeneratorFamily:
    return get_family(getattr(G, "family", ""), type(G).__name__)


def family_for_config(cfg: Any) -> GeneratorFamily:
    """The family whose config class ``cfg`` is."""
    for family in FAMILIES.values():
        if isinstance(cfg, family.config_class):
            return family
    raise CheckpointError(f"no registered generator family has config class {type(cfg).__name__}")


def mix_styles(ws: torch.Tensor, ws2: torch.Tensor, cutoff: int) -> torch.Tensor:
    """Style mixing of W+ codes [N, num_ws, w_dim]: entries from ``cutoff`` on are taken from ``ws2``."""
    assert ws.shape == ws2.shape and 0 <= cutoff <= ws.shape[1]
    out = ws.clone()
    out[:, cutoff:] = ws2[:, cutoff:]
    return out


__all__ = ["FAMILIES", "NOISE_MODES", "Generator", "GeneratorFamily", "LayoutSlot", "family_for_config", "family_of",
           "get_family", "mix_styles", "register_family"]
