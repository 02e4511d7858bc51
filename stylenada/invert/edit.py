"""Edit real images with adapted generators: align the face, invert it into the source generator's W+
space, and render that latent with the source (the reconstruction) and with every adapted generator.

Adapted generators share the source's latent space (NADA fine-tunes the synthesis network only), so the
same codes give the same person in each new domain.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import StylenadaError
from ..models.family import Generator
from ..utils.rundir import RunDir
from .align import AlignConfig, align_face, as_pil
from .encoders import Encoder, load_encoder, resize_images
from .optimize import Inversion, ProjectConfig, invert

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


# --- generators -------------------------------------------------------------------------------------------


def resolve_generator_path(path: str | os.PathLike) -> Path:
    """A checkpoint path; a run folder (as written by ``stylenada train``) stands for its generator.safetensors."""
    p = Path(path)
    if p.is_dir():
        run = RunDir(p)
        if run.generator.is_file():
            return run.generator
        raise StylenadaError(f"{p} is a folder without {run.generator.name}: pass a finished run folder of "
                             "`stylenada train` or a generator checkpoint file")
    return p


def load_any_generator(path: str | os.PathLike, device: str | torch.device = "cpu") -> Generator:
    """:func:`stylenada.load_generator` that also accepts run folders."""
    from ..formats import load_generator

    return load_generator(resolve_generator_path(path), device=device)


def recorded_source(path: str | os.PathLike) -> Path | None:
    """The source generator a run folder's config.json names (None for checkpoints or when absent)."""
    if not RunDir.is_run(path):
        return None
    try:
        gen = RunDir(Path(path)).load_config().get("generator")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None
    return Path(gen) if gen else None


def generator_label(path: str | os.PathLike) -> str:
    p = Path(path)
    return p.name if p.is_dir() else p.stem


def check_same_space(source: Generator, others: Sequence[Generator], labels: Sequence[str]) -> None:
    for G, label in zip(others, labels, strict=True):
        if (G.num_ws, G.w_dim) != (source.num_ws, source.w_dim):
            raise StylenadaError(f"generator {label} takes {G.num_ws} W+ codes of size {G.w_dim} but the source "
                                 f"takes {source.num_ws} of size {source.w_dim}: pass generators adapted from the "
                                 "source generator")


# --- images ---------------------------------------------------------------------------------------------------


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """RGB PIL image -> [1, 3, H, W] in [-1, 1]."""
    x = torch.from_numpy(np.asarray(img.convert("RGB")).copy()).permute(2, 0, 1).float() / 127.5 - 1
    return x[None]


def centre_square(img: Image.Image, size: int) -> Image.Image:
    """Centre-crop to a square and resize to ``size`` (for images that are already aligned)."""
    w, h = img.size
    s = min(w, h)
    img = img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    return img if s == size else img.resize((size, size), Image.LANCZOS)


def prepare_image(image: str | os.PathLike | Image.Image | np.ndarray | torch.Tensor, size: int,
                  align: AlignConfig | None) -> torch.Tensor:
    """One image as [1, 3, size, size] in [-1, 1]: FFHQ-aligned (``align``) or centre-cropped (None).

    A tensor ([3, H, W] or [1, 3, H, W] in [-1, 1]) is taken as already aligned and only resized.
    """
    if isinstance(image, torch.Tensor):
        x = image[None] if image.ndim == 3 else image
        assert x.ndim == 4 and x.shape[:2] == (1, 3), f"expected a [1, 3, H, W] image, got {tuple(image.shape)}"
        if x.shape[-1] != x.shape[-2]:
            raise StylenadaError(f"image tensors must be square, got {x.shape[-2]}x{x.shape[-1]}")
        return resize_images(x.float(), size)
    if align is not None:
        return pil_to_tensor(align_face(image, replace(align, output_size=size)).image)
    return pil_to_tensor(centre_square(as_pil(image), size))


# --- editing --------------------------------------------------------------------------------------------------


@torch.no_grad()
def render(ws: torch.Tensor, generators: Sequence[Generator], noise: list[torch.Tensor] | None = None,
           size: int | None = None) -> list[torch.Tensor]:
    """Images of the same codes from each generator, [N, 3, size, size] in [-1, 1] on the CPU."""
    out = []
    for G in generators:
        dev = G.w_avg.device
        img = G.synthesis(ws.to(dev), noise_mode="const", noise=[m.to(dev) for m in noise] if noise else None)
        out.append(resize_images(img.float().clamp(-1, 1), size or G.resolution).cpu())
    return out


Inverter = str | os.PathLike | Encoder


def edit_images(images: torch.Tensor, generators: Sequence[Generator], inverter: Inverter = "optimize", *,
                steps: int | None = None, config: ProjectConfig | None = None, clip=None, iterations: int = 1,
                progress: bool = False) -> tuple[torch.Tensor, Inversion]:
    """Aligned ``images`` [N, 3, R, R] in [-1, 1] -> rows [N, 1 + len(generators), 3, R, R] and the inversion.

    Each row is the input, the reconstruction by ``generators[0]`` (the source, into which the images are
    inverted) and every later generator's rendering of the same codes (and noise).
    """
    if not generators:
        raise StylenadaError("no generator given: pass the source generator (and adapted ones)")
    source = generators[0]
    check_same_space(source, generators[1:], [f"#{i + 1}" for i in range(1, len(generators))])
    size = source.resolution
    target = resize_images(images.float(), size)
    inv = invert(target.to(source.w_avg.device), source, inverter, steps, config=config, clip=clip,
                 iterations=iterations, progress=progress)
    renders = render(inv.ws, generators, inv.noise, size)
    rows = torch.stack([target.cpu().clamp(-1, 1), *renders], dim=1)
    return rows, inv


def edit(image: str | os.PathLike | Image.Image | np.ndarray | torch.Tensor, generators: Sequence[Generator],
         inverter: Inverter = "optimize", *, align: AlignConfig | bool = True, steps: int | None = None,
         config: ProjectConfig | None = None, clip=None, iterations: int = 1, progress: bool = False) -> torch.Tensor:
    """Edit one image: returns [1 + len(generators), 3, R, R] in [-1, 1]: the aligned input, the source's
    reconstruction (``generators[0]``), then each adapted generator's rendering of the same latent.

    ``inverter``: ``"optimize"``, an :class:`Encoder` or a pSp/e4e checkpoint path (``steps`` > 0 refines an
    encoder's output by optimisation). ``align``: True (FFHQ alignment with dlib), an :class:`AlignConfig`,
    or False (centre crop and resize). Tensor images are taken as already aligned.
    """
    cfg = AlignConfig() if align is True else align or None
    if not generators:
        raise StylenadaError("no generator given: pass the source generator (and adapted ones)")
    x = prepare_image(image, generators[0].resolution, cfg)
    rows, _ = edit_images(x, generators, inverter, steps=steps, config=config, clip=clip, iterations=iterations,
                          progress=progress)
    return rows[0]


# --- the command ---------------------------------------------------------------------------------------------


@dataclass
class EditJob:
    """Everything ``stylenada edit`` needs (paths as given on the command line)."""

    image: Path
    generators: list[Path] = field(default_factory=list)
    source: Path | None = None
    encoder: Path | None = None
    optimize: bool = False
    steps: int | None = None
    project: ProjectConfig = field(default_factory=ProjectConfig)
    clip: str | None = None
    iterations: int = 1
    align: AlignConfig | None = field(default_factory=AlignConfig)
    out: Path | None = None
    outdir: Path | None = None
    device: str = "cpu"
    force: bool = False


@dataclass
class EditRecord:
    image: Path
    psnr: float | None = None
    skipped: str | None = None  # why the image was skipped (batch mode)
    files: list[Path] = field(default_factory=list)


def list_images(path: Path) -> list[Path]:
    """The image itself, or the images (by suffix) in a folder, sorted by name."""
    if not path.exists():
        raise StylenadaError(f"image not found: {path} (check the path)")
    if not path.is_dir():
        return [path]
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise StylenadaError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in the folder {path}")
    return files


def _source_path(job: EditJob, encoder: Encoder | None) -> Path | None:
    if job.source is not None:
        return job.source
    for g in job.generators:
        src = recorded_source(g)
        if src is not None:
            if not src.exists():
                raise StylenadaError(f"the source generator {src} recorded in {g}/config.json was not found: pass "
                                     "--source CKPT (the generator the adapted ones started from)")
            return src
    if encoder is not None and encoder.decoder_state is not None:
        return None  # the encoder's stored decoder
    raise StylenadaError("no source generator: pass --source CKPT (the generator the adapted ones started from), "
                         "a run folder of `stylenada train`, or an encoder checkpoint that stores its generator")


def _labels(paths: Sequence[Path]) -> list[str]:
    labels: list[str] = []
    for p in paths:
        base = generator_label(p)
        label, k = base, 2
        while label in labels or label in ("input", "source", "ws"):
            label, k = f"{base}_{k}", k + 1
        labels.append(label)
    return labels


def _check_outputs(paths: Sequence[Path], force: bool) -> None:
    for p in paths:
        if p.exists() and not force:
            raise StylenadaError(f"{p} exists; choose another name or pass --force to overwrite it")


def run_edit(job: EditJob, progress: bool = True) -> list[EditRecord]:
    """The ``stylenada edit`` command: load everything, edit each image, write the grid and per-image files."""
    from ..utils.images import save_grid, save_image
    from ..utils.io import atomic_write

    images = list_images(job.image)
    batch = job.image.is_dir()
    out = job.out if job.out is not None or job.outdir is not None else Path("edit.png")
    labels = _labels(job.generators)
    planned = [out] if out is not None else []
    if job.outdir is not None:
        for img in images:
            planned += [job.outdir / f"{img.stem}_{name}.png" for name in ("input", "source", *labels)]
            planned.append(job.outdir / f"{img.stem}_ws.pt")
    _check_outputs(planned, job.force)
    if job.steps is not None and job.steps < 0:
        raise StylenadaError(f"--steps must be >= 0, got {job.steps}")
    if job.iterations != 1 and job.encoder is None:
        raise StylenadaError("--iterations applies to iterative encoders: pass --encoder, or drop --iterations")

    encoder = load_encoder(job.encoder, device=job.device) if job.encoder is not None else None
    src_path = _source_path(job, encoder)
    source = load_any_generator(src_path, job.device) if src_path is not None else encoder.decoder(job.device)
    adapted = [load_any_generator(p, job.device) for p in job.generators]
    check_same_space(source, adapted, labels)
    if encoder is not None:
        encoder.check_generator(source)
    clip = None
    if job.clip:
        from ..clip import load_clip

        clip = load_clip(job.clip, device=job.device)
    if encoder is None:
        inverter: Inverter = "optimize"
        steps = job.steps if job.steps is not None else job.project.steps
    else:  # --steps alone also asks for the refinement
        inverter = encoder
        steps = job.steps if job.steps is not None else 100 if job.optimize else 0

    records, rows = [], []
    for path in images:
        try:
            x = prepare_image(path, source.resolution, job.align)
        except StylenadaError as e:
            if not batch:
                raise
            records.append(EditRecord(path, skipped=str(e)))
            continue
        row, inv = edit_images(x, [source, *adapted], inverter, steps=steps, config=job.project, clip=clip,
                               iterations=job.iterations, progress=progress)
        rec = EditRecord(path, psnr=float(inv.psnr[0]))
        rows.append(row[0])
        if job.outdir is not None:
            for name, img in zip(("input", "source", *labels), row[0], strict=True):
                rec.files.append(save_image(img, job.outdir / f"{path.stem}_{name}.png"))
            ws_path = job.outdir / f"{path.stem}_ws.pt"
            atomic_write(ws_path, lambda p, ws=inv.ws: torch.save(ws.detach().cpu().clone(), p))
            rec.files.append(ws_path)
        records.append(rec)
    if not rows:
        raise StylenadaError(f"none of the {len(images)} images in {job.image} could be edited (see the messages "
                             "above); check that they show faces, or pass --no-align for aligned crops")
    if out is not None:
        grid = torch.cat(rows)
        save_grid(grid, out, ncols=rows[0].shape[0])
        for rec in records:
            if rec.skipped is None:
                rec.files.append(out)
    return records
