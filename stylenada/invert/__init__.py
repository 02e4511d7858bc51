"""Real-image editing: face alignment, inversion (pSp/e4e encoders or optimisation), and rendering one
latent with the source and the adapted generators.

- :func:`load_encoder` reads official pSp/e4e checkpoints; ``E(images)`` gives W+ codes.
- :func:`invert` inverts images into a generator's W+ space (``method="optimize"`` or an encoder).
- :func:`edit` aligns a photo, inverts it with the first generator and renders it with every generator.
- :func:`align_face` is FFHQ-style alignment with dlib's 68 landmarks (optional dependency).
"""

from .align import AlignConfig, AlignedFace, align_face, align_with_landmarks, detect_landmarks, face_quad, warp_quad
from .edit import edit, load_any_generator, resolve_generator_path
from .encoders import Encoder, EncoderConfig, load_encoder, random_encoder, save_encoder
from .optimize import Inversion, ProjectConfig, invert, project, psnr

__all__ = [
    "AlignConfig",
    "AlignedFace",
    "Encoder",
    "EncoderConfig",
    "Inversion",
    "ProjectConfig",
    "align_face",
    "align_with_landmarks",
    "detect_landmarks",
    "edit",
    "face_quad",
    "invert",
    "load_any_generator",
    "load_encoder",
    "project",
    "psnr",
    "random_encoder",
    "resolve_generator_path",
    "save_encoder",
    "warp_quad",
]
