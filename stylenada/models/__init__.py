"""Generator families and their building blocks. Importing this package registers every family."""

from . import family, stylegan2, stylegan3  # noqa: F401  (each family registers itself)
from .family import FAMILIES, GeneratorFamily, get_family, mix_styles, register_family
from .stylegan2 import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig, normalize_2nd_moment
from .stylegan3 import StyleGAN3Config

__all__ = ["FAMILIES", "Discriminator", "DiscriminatorConfig", "Generator", "GeneratorConfig", "GeneratorFamily",
           "StyleGAN3Config", "get_family", "mix_styles", "normalize_2nd_moment", "register_family"]
