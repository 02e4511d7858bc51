"""Generator families and their building blocks. Importing this package registers every family."""

from . import family, stylegan2  # noqa: F401  (stylegan2 registers itself)
from .family import FAMILIES, GeneratorFamily, get_family, mix_styles, register_family
from .stylegan2 import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig, normalize_2nd_moment

__all__ = ["FAMILIES", "Discriminator", "DiscriminatorConfig", "Generator", "GeneratorConfig", "GeneratorFamily",
           "get_family", "mix_styles", "normalize_2nd_moment", "register_family"]
