"""CLIP guidance through open_clip: frozen teachers, differentiable preprocessing, cached text embeddings.

open_clip itself is imported only when a model is loaded.
"""

from .models import (
    CLIP_SOURCES,
    ClipEnsemble,
    ClipModel,
    ClipSpec,
    load_clip,
    load_clip_ensemble,
    parse_clip_spec,
    register_clip_source,
    text_direction,
    text_embedding,
)
from .preprocess import PreprocessConfig, preprocess_for_clip
from .templates import IMAGENET_TEMPLATES, SINGLE_TEMPLATE, TEMPLATE_SETS, resolve_templates

__all__ = [
    "IMAGENET_TEMPLATES",
    "SINGLE_TEMPLATE",
    "TEMPLATE_SETS",
    "CLIP_SOURCES",
    "ClipEnsemble",
    "ClipModel",
    "ClipSpec",
    "PreprocessConfig",
    "load_clip",
    "load_clip_ensemble",
    "parse_clip_spec",
    "preprocess_for_clip",
    "register_clip_source",
    "resolve_templates",
    "text_direction",
    "text_embedding",
]
