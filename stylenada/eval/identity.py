"""Identity similarity of faces with dlib's face-recognition network (optional: faces only).

dlib's ResNet maps a face (found by its HOG detector, aligned by the 68-point landmarks) to a 128-D
descriptor; two faces are the same person when their descriptors are closer than 0.6 (dlib's
threshold, 99.38% on LFW). The model file comes with PyPI's ``face-recognition-models`` package, or is
given by path ($STYLENADA_FACE_MODEL).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import torch

from ..errors import StylenadaError

MODEL_NAME = "dlib_face_recognition_resnet_model_v1.dat"
MODEL_ENV = "STYLENADA_FACE_MODEL"
SAME_PERSON_DISTANCE = 0.6


def find_face_model(path: str | os.PathLike | None = None) -> Path:
    """``path``, else $STYLENADA_FACE_MODEL, else the file shipped by ``face-recognition-models``."""
    how = f"pip install face-recognition-models, or pass the path of {MODEL_NAME} (from dlib.net)"
    path = path or os.environ.get(MODEL_ENV)
    if path is not None:
        if not Path(path).is_file():
            raise StylenadaError(f"face-recognition model not found: {path}; {how}")
        return Path(path)
    spec = importlib.util.find_spec("face_recognition_models")  # located, not imported (it needs pkg_resources)
    if spec is not None and spec.submodule_search_locations:
        p = Path(next(iter(spec.submodule_search_locations))) / "models" / MODEL_NAME
        if p.is_file():
            return p
    raise StylenadaError(f"dlib's face-recognition model is not installed; {how}")


class FaceIdentity:
    """128-D dlib face descriptors of images (NCHW in [-1, 1]); ``None`` where no face is found."""

    def __init__(self, model_path: str | os.PathLike | None = None, predictor_path: str | os.PathLike | None = None):
        from ..invert.align import find_predictor, import_dlib

        dlib = import_dlib()
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(find_predictor(predictor_path)))
        self.net = dlib.face_recognition_model_v1(str(find_face_model(model_path)))

    def descriptor(self, image: np.ndarray) -> np.ndarray | None:
        faces = self.detector(image, 1 if max(image.shape[:2]) < 512 else 0)
        if not faces:
            return None
        face = max(faces, key=lambda r: r.width() * r.height())
        return np.asarray(self.net.compute_face_descriptor(image, self.predictor(image, face)))

    def descriptors(self, images: torch.Tensor) -> list[np.ndarray | None]:
        from ..utils.images import to_uint8

        return [self.descriptor(np.ascontiguousarray(im)) for im in to_uint8(images)]


def identity_similarity(a: list[np.ndarray | None], b: list[np.ndarray | None]) -> dict:
    """Mean descriptor distance and share judged the same person, over pairs where both faces are found."""
    pairs = [(x, y) for x, y in zip(a, b, strict=True) if x is not None and y is not None]
    out: dict = {"faces_found": len(pairs) / max(len(a), 1)}
    if pairs:
        d = np.array([np.linalg.norm(x - y) for x, y in pairs])
        out.update(mean_distance=float(d.mean()), same_person=float((d < SAME_PERSON_DISTANCE).mean()))
    return out
