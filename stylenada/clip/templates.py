"""Prompt templates for the text side of CLIP guidance.

``IMAGENET_TEMPLATES`` are the 80 ImageNet prompt templates published with CLIP (Radford et al., 2021,
"Prompt_Engineering_for_ImageNet" notebook), which StyleGAN-NADA averages over. Each holds one ``{}``
that the text fills.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import StylenadaError

IMAGENET_TEMPLATES: tuple[str, ...] = (
    "a bad photo of a {}.",
    "a photo of many {}.",
    "a sculpture of a {}.",
    "a photo of the hard to see {}.",
    "a low resolution photo of the {}.",
    "a rendering of a {}.",
    "graffiti of a {}.",
    "a bad photo of the {}.",
    "a cropped photo of the {}.",
    "a tattoo of a {}.",
    "the embroidered {}.",
    "a photo of a hard to see {}.",
    "a bright photo of a {}.",
    "a photo of a clean {}.",
    "a photo of a dirty {}.",
    "a dark photo of the {}.",
    "a drawing of a {}.",
    "a photo of my {}.",
    "the plastic {}.",
    "a photo of the cool {}.",
    "a close-up photo of a {}.",
    "a black and white photo of the {}.",
    "a painting of the {}.",
    "a painting of a {}.",
    "a pixelated photo of the {}.",
    "a sculpture of the {}.",
    "a bright photo of the {}.",
    "a cropped photo of a {}.",
    "a plastic {}.",
    "a photo of the dirty {}.",
    "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.",
    "a photo of the {}.",
    "a good photo of the {}.",
    "a rendering of the {}.",
    "a {} in a video game.",
    "a photo of one {}.",
    "a doodle of a {}.",
    "a close-up photo of the {}.",
    "a photo of a {}.",
    "the origami {}.",
    "the {} in a video game.",
    "a sketch of a {}.",
    "a doodle of the {}.",
    "a origami {}.",
    "a low resolution photo of a {}.",
    "the toy {}.",
    "a rendition of the {}.",
    "a photo of the clean {}.",
    "a photo of a large {}.",
    "a rendition of a {}.",
    "a photo of a nice {}.",
    "a photo of a weird {}.",
    "a blurry photo of a {}.",
    "a cartoon {}.",
    "art of a {}.",
    "a sketch of the {}.",
    "a embroidered {}.",
    "a pixelated photo of a {}.",
    "itap of the {}.",
    "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.",
    "a plushie {}.",
    "a photo of the nice {}.",
    "a photo of the small {}.",
    "a photo of the weird {}.",
    "the cartoon {}.",
    "art of the {}.",
    "a drawing of the {}.",
    "a photo of the large {}.",
    "a black and white photo of a {}.",
    "the plushie {}.",
    "a dark photo of a {}.",
    "itap of a {}.",
    "graffiti of the {}.",
    "a toy {}.",
    "itap of my {}.",
    "a photo of a cool {}.",
    "a photo of a small {}.",
    "a tattoo of the {}.",
)

SINGLE_TEMPLATE = "a photo of a {}"

# Named template sets accepted wherever ``templates`` is taken.
TEMPLATE_SETS: dict[str, tuple[str, ...]] = {
    "imagenet": IMAGENET_TEMPLATES,
    "single": (SINGLE_TEMPLATE,),
    "none": ("{}",),
}


def resolve_templates(templates: str | Sequence[str]) -> tuple[str, ...]:
    """A template-set name (``"imagenet"``, ``"single"``, ``"none"``) or a list of templates -> a checked tuple.

    Each template must contain ``{}`` exactly once.
    """
    if isinstance(templates, str):
        if templates in TEMPLATE_SETS:
            return TEMPLATE_SETS[templates]
        if "{}" not in templates:
            raise StylenadaError(
                f"unknown template set {templates!r}: use one of {', '.join(TEMPLATE_SETS)} or a list of templates "
                "holding '{}'"
            )
        templates = (templates,)
    out = tuple(templates)
    if not out:
        raise StylenadaError("empty template list: give at least one template such as 'a photo of a {}'")
    for t in out:
        if not isinstance(t, str) or t.count("{}") != 1:
            raise StylenadaError(f"bad prompt template {t!r}: a template must contain '{{}}' exactly once")
    return out


def fill_template(template: str, text: str) -> str:
    """``template`` with its ``{}`` replaced by ``text`` (no other brace is interpreted)."""
    return template.replace("{}", text)
