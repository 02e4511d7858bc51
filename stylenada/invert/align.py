"""FFHQ-style face alignment (the recipe of the FFHQ dataset and of pSp/e4e's ``align_face``).

dlib's 68-point landmarks give the eye and mouth centres; from them an oriented square (the "quad")
around the face is computed, and the image is shrunk, cropped, reflect-padded (with blurred borders)
and warped so that the quad becomes the output square: eyes level, at fixed positions.

The geometry (:func:`face_quad`, :func:`warp_quad`, :func:`to_aligned_coords`) is pure and works from
given landmarks; only :func:`detect_landmarks` needs dlib (``pip install dlib-bin``) and its 68-point
model (Debian/Ubuntu: ``apt-get install libdlib-data``).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import StylenadaError

PREDICTOR_ENV = "STYLENADA_DLIB_LANDMARKS"
PREDICTOR_NAME = "shape_predictor_68_face_landmarks.dat"
PREDICTOR_PATHS = (Path("/usr/share/dlib") / PREDICTOR_NAME, Path.home() / ".cache" / "stylenada" / PREDICTOR_NAME)
MULTIPLE_FACES = ("error", "largest")
DETECT_MAX_SIDE = 2048  # larger photos are downscaled for face detection only (landmarks use full resolution)


@dataclass(frozen=True)
class AlignConfig:
    """How to find and align a face.

    ``multiple_faces``: with several detections, ``"error"`` (default) stops with a message, ``"largest"``
    aligns the largest face. ``transform_size``: the size the quad is warped to before the final resize
    (FFHQ used 4 x output size; pSp/e4e's inference script, and the default here, the output size).
    """

    output_size: int = 256
    transform_size: int | None = None
    predictor_path: str | None = None  # dlib's shape_predictor_68_face_landmarks.dat; None: search defaults
    multiple_faces: str = "error"
    upsample: int = 1  # dlib detector upsampling (the FFHQ recipe uses 1)
    enable_padding: bool = True

    def __post_init__(self) -> None:
        if self.multiple_faces not in MULTIPLE_FACES:
            raise StylenadaError(f"multiple_faces must be one of {MULTIPLE_FACES}, got {self.multiple_faces!r}")
        if self.output_size < 8:
            raise StylenadaError(f"alignment output size must be >= 8, got {self.output_size}")


# --- reading images -------------------------------------------------------------------------------------


def read_image(path: str | os.PathLike) -> Image.Image:
    """An RGB PIL image from a file (EXIF orientation applied), with one clear error per failure."""
    path = Path(path)
    if not path.exists():
        raise StylenadaError(f"image not found: {path} (check the path)")
    if path.is_dir():
        raise StylenadaError(f"{path} is a folder; pass an image file (PNG or JPEG)")
    try:
        img = Image.open(path)
    except UnidentifiedImageError:
        raise StylenadaError(f"{path} is not an image file (not a format PIL can read); pass a PNG or JPEG "
                             "photo") from None
    except OSError as e:
        raise StylenadaError(f"cannot open {path} ({e}); check the file's permissions") from e
    try:
        img.load()
        img = ImageOps.exif_transpose(img)
    except (OSError, SyntaxError, ValueError) as e:
        raise StylenadaError(f"{path}: cannot read the image ({e}); the file is truncated or corrupt, save or "
                             "download it again") from e
    return img.convert("RGB")


def as_pil(image: str | os.PathLike | Image.Image | np.ndarray) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, np.ndarray):
        assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8, (
            f"expected an HxWx3 uint8 array, got {image.shape} {image.dtype}")
        return Image.fromarray(image)
    return read_image(image)


# --- dlib ---------------------------------------------------------------------------------------------------


def import_dlib():
    try:
        import dlib
    except ImportError:
        raise StylenadaError("face alignment needs dlib, which is not installed: pip install dlib-bin (or "
                             "pip install 'stylenada[faces]'); or pass --no-align for already aligned images"
                             ) from None
    return dlib


def find_predictor(path: str | os.PathLike | None = None) -> Path:
    """The 68-point landmark model: ``path``, else $STYLENADA_DLIB_LANDMARKS, else the default locations."""
    how = ("install it with `apt-get install libdlib-data` (Debian/Ubuntu), or download "
           f"{PREDICTOR_NAME}.bz2 from dlib.net, unpack it and pass --landmarks PATH")
    if path is None and os.environ.get(PREDICTOR_ENV):
        path = os.environ[PREDICTOR_ENV]
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise StylenadaError(f"dlib landmark model not found: {p}; {how}")
        return p
    for p in PREDICTOR_PATHS:
        if p.is_file():
            return p
    looked = ", ".join(str(p) for p in PREDICTOR_PATHS)
    raise StylenadaError(f"dlib's 68-point landmark model not found (looked in {looked}); {how}")


@functools.lru_cache(maxsize=2)
def _face_models(predictor: str):
    dlib = import_dlib()
    try:
        shape_predictor = dlib.shape_predictor(predictor)
    except RuntimeError as e:
        raise StylenadaError(f"cannot read the dlib landmark model {predictor} ({str(e).strip()[:200]}); the file "
                             f"is corrupt or not {PREDICTOR_NAME}, download it again") from e
    return dlib, dlib.get_frontal_face_detector(), shape_predictor


def detect_faces(image: np.ndarray, cfg: AlignConfig) -> list[tuple[int, int, int, int]]:
    """Face boxes (left, top, right, bottom) in ``image`` (HxWx3 uint8) found by dlib's HOG detector."""
    dlib, detector, _ = _face_models(str(find_predictor(cfg.predictor_path)))
    scale = min(1.0, DETECT_MAX_SIDE / max(image.shape[:2]))
    small = image
    if scale < 1:
        size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
        small = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
    boxes = []
    for r in detector(np.ascontiguousarray(small), cfg.upsample):
        boxes.append(tuple(round(v / scale) for v in (r.left(), r.top(), r.right(), r.bottom())))
    return boxes


def detect_landmarks(image: np.ndarray, cfg: AlignConfig = AlignConfig(), source: str = "the image") -> np.ndarray:
    """The 68 dlib landmarks [68, 2] (x, y) of the one face in ``image`` (HxWx3 uint8)."""
    assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8, (image.shape, image.dtype)
    dlib, _, predictor = _face_models(str(find_predictor(cfg.predictor_path)))
    boxes = detect_faces(image, cfg)
    if not boxes:
        raise StylenadaError(f"no face found in {source}: pass a photo with a clearly visible, roughly frontal "
                             "face, or --no-align if the image is already an aligned face crop")
    if len(boxes) > 1 and cfg.multiple_faces == "error":
        raise StylenadaError(f"found {len(boxes)} faces in {source}: pass --largest-face to align the largest, "
                             "or crop the photo to one face")
    box = max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
    shape = predictor(np.ascontiguousarray(image), dlib.rectangle(*box))
    return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)


# --- geometry (pure) -------------------------------------------------------------------------------------------


def eye_mouth_centres(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(left eye centre, right eye centre, mouth centre) from 68 dlib landmarks (image left/right)."""
    lm = np.asarray(landmarks, dtype=np.float64)
    assert lm.shape == (68, 2), f"expected 68 (x, y) landmarks, got shape {lm.shape}"
    eye_left, eye_right = lm[36:42].mean(axis=0), lm[42:48].mean(axis=0)
    mouth = (lm[48] + lm[54]) * 0.5  # outer mouth corners
    return eye_left, eye_right, mouth


def face_quad(landmarks: np.ndarray) -> tuple[np.ndarray, float]:
    """The FFHQ crop square: corners [4, 2] (top-left, bottom-left, bottom-right, top-right) and side length.

    Its x axis is the eye-to-eye direction corrected by the eye-to-mouth direction; its half-size is
    max(2 x eye distance, 1.8 x eye-to-mouth distance); its centre sits 0.1 of the way from the eyes'
    midpoint to the mouth.
    """
    eye_left, eye_right, mouth = eye_mouth_centres(landmarks)
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    eye_to_mouth = mouth - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    quad = np.stack([c - x - y, c - x + y, c + x + y, c + x - y])
    return quad, float(np.hypot(*x) * 2)


def to_aligned_coords(points: np.ndarray, quad: np.ndarray, output_size: int) -> np.ndarray:
    """Where image points [K, 2] land in the aligned output (the quad maps affinely onto the output square)."""
    origin, right, down = quad[0], quad[3] - quad[0], quad[1] - quad[0]
    basis = np.stack([right, down], axis=1)  # columns: the output's x and y axes in image coordinates
    uv = np.linalg.solve(basis, (np.asarray(points, dtype=np.float64) - origin).T).T
    return uv * output_size


def _reflect_pad_blend(img: Image.Image, pad: tuple[int, int, int, int], qsize: float) -> Image.Image:
    """Reflect-pad by (left, top, right, bottom), blurring and fading the padding toward the median colour."""
    from scipy.ndimage import gaussian_filter

    arr = np.pad(np.float32(img), ((pad[1], pad[3]), (pad[0], pad[2]), (0, 0)), "reflect")
    h, w, _ = arr.shape
    y, x, _ = np.ogrid[:h, :w, :1]
    with np.errstate(divide="ignore", invalid="ignore"):
        mask = np.maximum(1.0 - np.minimum(np.float32(x) / pad[0], np.float32(w - 1 - x) / pad[2]),
                          1.0 - np.minimum(np.float32(y) / pad[1], np.float32(h - 1 - y) / pad[3]))
    mask = np.nan_to_num(mask, nan=0.0)
    blur = qsize * 0.02
    arr += (gaussian_filter(arr, [blur, blur, 0]) - arr) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
    arr += (np.median(arr, axis=(0, 1)) - arr) * np.clip(mask, 0.0, 1.0)
    return Image.fromarray(np.uint8(np.clip(np.rint(arr), 0, 255)), "RGB")


def warp_quad(img: Image.Image, quad: np.ndarray, qsize: float, output_size: int, transform_size: int | None = None,
              enable_padding: bool = True) -> Image.Image:
    """Warp the ``quad`` region of ``img`` to an ``output_size`` square: shrink, crop, pad, transform, resize."""
    quad = np.array(quad, dtype=np.float64)
    transform_size = transform_size or output_size
    # Shrink (for large faces: a cheap box-filtered downscale first).
    shrink = int(np.floor(qsize / output_size * 0.5))
    if shrink > 1:
        rsize = (int(np.rint(float(img.size[0]) / shrink)), int(np.rint(float(img.size[1]) / shrink)))
        img = img.resize(rsize, Image.LANCZOS)
        quad /= shrink
        qsize /= shrink
    # Crop to the quad plus a border.
    border = max(int(np.rint(qsize * 0.1)), 3)
    crop = (int(np.floor(min(quad[:, 0]))), int(np.floor(min(quad[:, 1]))), int(np.ceil(max(quad[:, 0]))),
            int(np.ceil(max(quad[:, 1]))))
    crop = (max(crop[0] - border, 0), max(crop[1] - border, 0), min(crop[2] + border, img.size[0]),
            min(crop[3] + border, img.size[1]))
    if crop[2] - crop[0] < img.size[0] or crop[3] - crop[1] < img.size[1]:
        img = img.crop(crop)
        quad -= crop[0:2]
    # Pad where the quad leaves the image.
    pad = (int(np.floor(min(quad[:, 0]))), int(np.floor(min(quad[:, 1]))), int(np.ceil(max(quad[:, 0]))),
           int(np.ceil(max(quad[:, 1]))))
    pad = (max(-pad[0] + border, 0), max(-pad[1] + border, 0), max(pad[2] - img.size[0] + border, 0),
           max(pad[3] - img.size[1] + border, 0))
    if enable_padding and max(pad) > border - 4:
        pad = tuple(np.maximum(pad, int(np.rint(qsize * 0.3))))
        img = _reflect_pad_blend(img, pad, qsize)
        quad += pad[:2]
    # Transform the quad to a square, then resize.
    img = img.transform((transform_size, transform_size), Image.QUAD, tuple((quad + 0.5).flatten()), Image.BILINEAR)
    if output_size != transform_size:
        img = img.resize((output_size, output_size), Image.LANCZOS)
    return img


def align_with_landmarks(image: Image.Image, landmarks: np.ndarray, cfg: AlignConfig = AlignConfig()) -> Image.Image:
    """Align ``image`` given its 68 landmarks (no dlib needed)."""
    quad, qsize = face_quad(landmarks)
    return warp_quad(image.convert("RGB"), quad, qsize, cfg.output_size, cfg.transform_size, cfg.enable_padding)


@dataclass(frozen=True)
class AlignedFace:
    image: Image.Image  # output_size x output_size RGB
    landmarks: np.ndarray  # [68, 2] in the original image
    quad: np.ndarray  # [4, 2] crop corners in the original image


def align_face(image: str | os.PathLike | Image.Image | np.ndarray, cfg: AlignConfig = AlignConfig()) -> AlignedFace:
    """Detect the face in ``image`` (a path, PIL image or HxWx3 uint8 array) and align it FFHQ-style."""
    source = str(image) if isinstance(image, str | os.PathLike) else "the image"
    import_dlib()
    find_predictor(cfg.predictor_path)
    pil = as_pil(image)
    lm = detect_landmarks(np.asarray(pil), cfg, source)
    quad, _ = face_quad(lm)
    return AlignedFace(align_with_landmarks(pil, lm, cfg), lm, quad)
