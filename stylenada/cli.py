"""The ``stylenada`` command line: a thin layer over the library. Errors print as one clear line."""

from __future__ import annotations

import functools
import math
import sys
from pathlib import Path

import click

from .adapt.config import NEW_TEXT_MODES
from .adapt.config import choices as config_choices
from .clip.models import DEFAULT_CLIP
from .errors import StylenadaError
from .formats import writable_formats
from .models.family import NOISE_MODES
from .utils.rundir import RunDir


def user_errors(fn):
    """Turn StylenadaError (bad input) and OS errors into ``Error: <message>`` and exit code 1, without a
    traceback (usage errors, from click, exit with 2; Ctrl-C with 130)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except StylenadaError as e:
            raise click.ClickException(str(e)) from None
        except OSError as e:  # a path that cannot be written or read: one line naming it
            where = f" {e.filename}" if getattr(e, "filename", None) else ""
            raise click.ClickException(f"{e.strerror or e}:{where}") from None

    return wrapper


def writable_output(path: Path, force: bool) -> Path:
    """``path`` if it can be written: it does not exist yet (or ``force``), and its folder exists or can be
    made. Checked before anything slow runs, so a mistake costs nothing."""
    import os

    if path.exists() and not force:
        raise StylenadaError(f"{path} exists; pass --force to overwrite it, or choose another name")
    if path.is_dir():
        raise StylenadaError(f"{path} is a folder; give a file name")
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise StylenadaError(f"cannot write {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK):
        raise StylenadaError(f"cannot write {path}: no permission to write in {parent}")
    return path


MAX_GRID_IMAGES = 1024


DOMAIN_OPTION = click.option(
    "--domain", "domains", multiple=True, metavar="FILE[:STRENGTH]",
    help="Apply a domain file (from `train --params stylespace`) at a strength (default 1); repeat to add domains.")


def with_domains(G, specs: tuple[str, ...]):
    """``G`` with the ``--domain FILE[:STRENGTH]`` files added (``G`` itself when there are none)."""
    if not specs:
        return G
    from .adapt.domains import apply_domains, load_domain, parse_domain_spec

    parsed = [parse_domain_spec(spec) for spec in specs]
    return apply_domains(G, [(load_domain(path), strength) for path, strength in parsed],
                         source=", ".join(path for path, _ in parsed))


def parse_lambdas(items: tuple[str, ...]) -> dict[str, float]:
    """``--lambda TERM=WEIGHT`` options as a dict; the loss terms themselves are checked by the config."""
    pairs = [item.partition("=") for item in items]
    try:
        lambdas = {name.strip(): float(value) for name, sep, value in pairs if sep}
    except ValueError:
        raise StylenadaError(f"--lambda takes TERM=WEIGHT with a number, got {list(items)}") from None
    if len(lambdas) != len(pairs):
        raise StylenadaError(f"--lambda takes TERM=WEIGHT, got {list(items)}")
    return lambdas


class FiniteFloat(click.ParamType):
    """A float that must be finite (``nan`` and ``inf`` parse as floats, and break every later step)."""

    name = "number"

    def __init__(self, minimum: float | None = None, strictly_above: bool = False):
        self.minimum, self.strictly_above = minimum, strictly_above

    def convert(self, value, param, ctx):
        try:
            x = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(x):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        if self.minimum is not None and (x <= self.minimum if self.strictly_above else x < self.minimum):
            self.fail(f"{x:g} must be {'>' if self.strictly_above else '>='} {self.minimum:g}", param, ctx)
        return x


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="stylenada")
def cli() -> None:
    """Adapt StyleGAN2 generators to new domains described by text, with CLIP as the teacher."""


@cli.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@user_errors
def info(checkpoint: Path) -> None:
    """Show a checkpoint's format, resolution, W+ size and parameter count."""
    from .formats import inspect_checkpoint

    i = inspect_checkpoint(checkpoint)
    cfg = i.config.to_dict()
    shown = {"resolution", "z_dim", "w_dim"}
    click.echo(f"file:            {i.path}")
    click.echo(f"format:          {i.format}")
    click.echo(f"family:          {i.family}")
    click.echo(f"resolution:      {cfg['resolution']}x{cfg['resolution']}")
    click.echo(f"num_ws:          {len({s.w_index for s in i.config.layout()})}")
    click.echo(f"z_dim / w_dim:   {cfg['z_dim']} / {cfg['w_dim']}")
    for key, value in cfg.items():
        if key not in shown:
            click.echo(f"{key + ':':<16} {value}")
    click.echo(f"stored mean w:   {'yes' if i.has_w_avg else 'no (estimated on load)'}")
    click.echo(f"parameters:      {i.num_params:,}")


@cli.command()
@click.argument("src", type=click.Path(path_type=Path))
@click.argument("dst", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(writable_formats()), default=None,
              help="Output format (default: from DST's suffix: .safetensors native, .pt rosinality).")
@click.option("--force", is_flag=True, help="Overwrite DST if it exists.")
@DOMAIN_OPTION
@user_errors
def convert(src: Path, dst: Path, fmt: str | None, force: bool, domains: tuple[str, ...]) -> None:
    """Convert a generator checkpoint (native, rosinality .pt, NVIDIA .pkl) to native or rosinality, optionally
    with domains applied (a full generator of the domain, for any tool)."""
    from .formats import format_for_output, load_generator, save_generator

    format_for_output(dst, fmt)  # validate before the (slow) load
    writable_output(dst, force)
    G = with_domains(load_generator(src), domains)
    save_generator(G, dst, fmt)
    click.echo(f"wrote {dst} ({fmt or dst.suffix})")


@cli.command()
@click.argument("checkpoint", type=click.Path(path_type=Path), required=False)
@click.option("--seeds", default="0-15", show_default=True, help="Seeds, e.g. 0-15 or 1,5,9.")
@click.option("--truncation", type=FiniteFloat(), default=1.0, show_default=True,
              help="Truncation psi toward the mean w.")
@click.option("--noise-mode", type=click.Choice(list(NOISE_MODES)), default="const", show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Write one grid image here.")
@click.option("--outdir", type=click.Path(path_type=Path), default=None, help="Write one PNG per seed here.")
@click.option("--batch", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--force", is_flag=True, help="Overwrite existing output files.")
@DOMAIN_OPTION
@click.option("--model", "model_path", type=click.Path(path_type=Path), default=None,
              help="A multi-domain model (the run folder of `train --targets`, or its multidomain.safetensors); "
                   "CHECKPOINT may then be left out (the model's base generator is used).")
@click.option("--target", "targets", multiple=True, metavar="TEXT",
              help="With --model: the target text to render, one of its targets or a new one (repeatable: one "
                   "grid row each).")
@click.option("--new-text", type=click.Choice(list(NEW_TEXT_MODES)), default="direct", show_default=True,
              help="With --model, a text that is not one of its targets enters at its own CLIP direction (direct) "
                   "or at the trained blend of two targets nearest to it (blend).")
@user_errors
def generate(checkpoint: Path | None, seeds: str, truncation: float, noise_mode: str, out: Path | None,
             outdir: Path | None, batch: int, device: str, force: bool, domains: tuple[str, ...],
             model_path: Path | None, targets: tuple[str, ...], new_text: str) -> None:
    """Render images for a list of seeds, as a grid (--out) or one file per seed (--outdir), optionally with
    domains applied to the generator, or with a multi-domain model (--model) for each --target text."""
    import torch
    from tqdm import tqdm

    from .adapt.trainer import resolve_device
    from .formats import load_generator
    from .utils.images import save_grid, save_image
    from .utils.seeds import parse_seeds, z_from_seeds

    seed_list = parse_seeds(seeds)
    if out is None and outdir is None:
        out = Path("grid.png")
    if out is not None:
        if len(seed_list) > MAX_GRID_IMAGES:
            raise StylenadaError(f"{len(seed_list)} seeds make too large a grid (at most {MAX_GRID_IMAGES}): give "
                                 "fewer seeds, or --outdir DIR for one file per seed")
        writable_output(out, force)
    if outdir is not None:
        clash = [s for s in seed_list if (outdir / f"seed{s:04d}.png").exists()]
        if clash and not force:
            raise StylenadaError(f"{len(clash)} of the files exist in {outdir} (e.g. seed{clash[0]:04d}.png); pass "
                                 "--force to overwrite them, or choose another --outdir")
        writable_output(outdir / "probe", True)
    if model_path is None and targets:
        raise StylenadaError("--target renders a multi-domain model: give it with --model RUN_DIR")
    if model_path is None and checkpoint is None:
        raise StylenadaError("no generator given: pass CHECKPOINT (or --model RUN_DIR for a multi-domain model)")
    device = str(resolve_device(device))
    if model_path is not None:
        generators, names = multidomain_generators(model_path, checkpoint, targets, domains, device, new_text)
    else:
        generators, names = [with_domains(load_generator(checkpoint, device=device), domains)], [""]
    z = z_from_seeds(seed_list, generators[0].z_dim).to(device)
    rows = []
    with torch.no_grad():
        for G in generators:
            chunks = range(0, len(seed_list), batch)
            rows.append(torch.cat([G(z[i : i + batch], truncation_psi=truncation, noise_mode=noise_mode).cpu()
                                   for i in tqdm(chunks, desc="generate", unit="batch", disable=len(chunks) <= 1)]))
    if outdir is not None:
        outdir.mkdir(parents=True, exist_ok=True)
        for k, imgs in enumerate(rows):
            prefix = f"target{k}-" if len(rows) > 1 else ""
            for s, img in zip(seed_list, imgs, strict=True):
                save_image(img, outdir / f"{prefix}seed{s:04d}.png")
        click.echo(f"wrote {len(seed_list) * len(rows)} images to {outdir}")
    if out is not None:
        save_grid(torch.cat(rows), out, ncols=len(seed_list) if len(rows) > 1 else None)
        click.echo(f"wrote {out}" + (f" (rows: {'; '.join(names)})" if len(rows) > 1 else ""))


def multidomain_generators(model_path: Path, checkpoint: Path | None, targets: tuple[str, ...],
                           domains: tuple[str, ...], device: str, new_text: str = "direct") -> tuple[list, list[str]]:
    """One generator per --target text of a multi-domain model (each of its own targets when none is given),
    on its base generator (CHECKPOINT when given) with any --domain files added."""
    from .adapt.multidomain import load_base_generator, load_multidomain
    from .adapt.trainer import load_clip_models

    model = load_multidomain(model_path, device)
    texts = list(targets) or list(model.targets)
    for text in texts:
        if not text.strip():
            raise StylenadaError("--target: an empty text; give the target to render")
    clip_models = load_clip_models(model.clip, device) if model.needs_clip(texts) else None
    base = with_domains(load_base_generator(model, checkpoint, device), domains)
    for text in texts:
        if new_text == "blend" and model.needs_clip([text]):
            _, weights = model.nearest_blend(model.text_directions(text, clip_models))
            blend = " + ".join(f"{w:.2f} x {t!r}" for t, w in weights.items())
            click.echo(f"{text!r} is a new text: rendered at the trained blend nearest to it, {blend}")
    return [model.generator_for(base, text, clip_models, new_text=new_text) for text in texts], texts


@cli.command("random-generator")
@click.argument("dst", type=click.Path(path_type=Path))
@click.option("--family", default=None, help="Generator family [default: the first registered, StyleGAN2].")
@click.option("--resolution", type=int, default=256, show_default=True)
@click.option("--channel-multiplier", type=int, default=2, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--variant", default=None, help="The family's configuration, where it has several: StyleGAN3's T "
                                              "(default) or R.")
@click.option("--force", is_flag=True, help="Overwrite DST if it exists.")
@user_errors
def random_generator(dst: Path, family: str | None, resolution: int, channel_multiplier: int, seed: int,
                     variant: str | None, force: bool) -> None:
    """Write a randomly initialised generator (for benchmarks and trying the tools)."""
    import inspect

    import torch

    from .formats import save_generator
    from .models import FAMILIES, get_family

    writable_output(dst, force)
    family = family or next(iter(FAMILIES))
    if family not in FAMILIES or FAMILIES[family].preset is None:
        raise StylenadaError(f"unknown generator family {family!r}; choose one of "
                             f"{', '.join(n for n, f in FAMILIES.items() if f.preset is not None)}")
    fam = get_family(family)
    extra = {}
    if variant is not None:
        if "config" not in inspect.signature(fam.preset).parameters:
            raise StylenadaError(f"the {family} family has one configuration: drop --variant")
        extra["config"] = variant
    try:
        cfg = fam.preset(resolution, channel_multiplier, **extra)
    except ValueError as e:
        hint = "use --resolution 32, 64, ..., 1024" if variant is None else "check --resolution and --variant"
        raise StylenadaError(f"{e}: {hint}") from None
    torch.manual_seed(seed)
    save_generator(fam.build(cfg), dst)
    what = f"{family} {variant}" if variant else family
    click.echo(f"wrote {dst} ({what}, {resolution}px, channel multiplier {channel_multiplier}, seed {seed})")


def _config_options(fn):
    """Add one option per TrainConfig / SelectionConfig field (default None = not given)."""
    import dataclasses

    from .adapt.config import TrainConfig
    from .adapt.layers import SelectionConfig

    choices = config_choices()
    renamed = {"k": "--k", "interval": "--selection-interval"}
    fields = [f for f in dataclasses.fields(TrainConfig) if f.name != "selection"]
    fields += list(dataclasses.fields(SelectionConfig))
    for f in reversed(fields):
        flag = renamed.get(f.name, "--" + f.name.replace("_", "-"))
        default = f.default if f.default is not dataclasses.MISSING else None
        if f.name == "targets":
            opt = click.option("--targets", "targets", type=click.Path(path_type=Path), default=None, metavar="FILE",
                               help="A text file of target texts, one a line: train one multi-domain model for all "
                                    "of them (instead of --target).")
        elif f.name == "lambdas":
            opt = click.option("--lambda", "lambdas", multiple=True, default=None, metavar="TERM=WEIGHT",
                               help="Weight of a further registered loss term, e.g. --lambda my_term=0.5 "
                                    "(repeatable).")
        elif f.name == "clip":
            opt = click.option("--clip", multiple=True, default=None,
                               help=f"CLIP model 'name:pretrained[@weight]', repeatable (default {DEFAULT_CLIP}).")
        elif isinstance(default, bool):
            opt = click.option(f"{flag}/--no-{flag[2:]}", f.name, default=None)
        elif f.name in choices:
            opt = click.option(flag, f.name, type=click.Choice(list(choices[f.name])), default=None,
                               help=f"[default: {default}]")
        else:
            typ = {int: int, float: float}.get(type(default), str)
            if f.name in ("k",):
                typ = int
            opt = click.option(flag, f.name, type=typ, default=None, help=f"[default: {default}]")
        fn = opt(fn)
    return fn


@cli.command()
@click.option("--config", "config_file", type=click.Path(path_type=Path), default=None,
              help="YAML/JSON file with any of these options (command-line values override it).")
@click.option("--resume", "resume_dir", type=click.Path(path_type=Path), default=None,
              help="Continue the run in this folder from its last checkpoint (--iters may extend it).")
@_config_options
@user_errors
def train(config_file: Path | None, resume_dir: Path | None, **options) -> None:
    """Adapt a generator to the domain described by --target (or --target-images); with --targets FILE, train
    one multi-domain model for every text in FILE (render it with `generate --model`)."""
    import dataclasses

    from .adapt.config import TrainConfig
    from .adapt.layers import SelectionConfig
    from .adapt.trainer import adapt, resume
    from .utils.runtime import set_allocator

    given = {k: v for k, v in options.items() if v is not None and v != ()}
    if "lambdas" in given:
        given["lambdas"] = parse_lambdas(given["lambdas"])
    if "targets" in given:
        given["targets"] = read_targets(given["targets"])
    if resume_dir is not None:
        extra = sorted(set(given) - {"iters"})
        if extra:
            raise StylenadaError(f"--resume continues a run with its saved config; drop {extra} (only --iters may "
                                 "change)")
        set_allocator(TrainConfig.from_dict(RunDir.open(resume_dir).load_config()).release_memory)
        result = resume(resume_dir, iters=given.get("iters"))
    else:
        cfg = TrainConfig.from_file(config_file) if config_file else TrainConfig()
        sel_names = {f.name for f in dataclasses.fields(SelectionConfig)}
        sel = dataclasses.replace(cfg.selection, **{k: v for k, v in given.items() if k in sel_names})
        top = {k: (list(v) if k == "clip" else v) for k, v in given.items() if k not in sel_names}
        cfg = dataclasses.replace(cfg, selection=sel, **top)
        set_allocator(cfg.release_memory)
        result = adapt(cfg)
    m = result.metrics
    click.echo(f"done: {m['steps']} steps, {m['seconds_per_step']:.2f} s/step, CLIP loss "
               f"{m['initial_clip_loss']:.3f} -> {m['final_clip_loss']:.3f}")
    what = "model:    " if result.generator_path == RunDir(result.run_dir).multidomain else "generator:"
    click.echo(f"{what} {result.generator_path}")
    click.echo(f"samples:   {result.run_dir / 'samples'}")


def read_targets(path: Path) -> list[str]:
    """The target texts of a ``--targets`` file: one a line; blank lines and lines starting with # are skipped."""
    if not path.is_file():
        raise StylenadaError(f"--targets {path}: no such file; give a text file with one target text a line")
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError:
        raise StylenadaError(f"--targets {path}: not a text file; give one target text a line") from None
    texts = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not texts:
        raise StylenadaError(f"--targets {path}: the file holds no target text; give one target text a line")
    return texts


@cli.command("edit")
@click.argument("image", type=click.Path(path_type=Path))
@click.option("--generator", "generators", multiple=True, type=click.Path(path_type=Path),
              help="An adapted generator: a run folder of `stylenada train` or a checkpoint; repeatable.")
@click.option("--source", type=click.Path(path_type=Path), default=None,
              help="The generator the adapted ones started from [default: the one in the first run folder's "
                   "config.json, else the encoder checkpoint's stored generator].")
@click.option("--encoder", type=click.Path(path_type=Path), default=None,
              help="Invert with a pSp/e4e checkpoint (e.g. e4e_ffhq_encode.pt).")
@click.option("--optimize", "optimize_", is_flag=True,
              help="Invert by optimisation (the default without --encoder; with --encoder, refine its output).")
@click.option("--steps", type=int, default=None,
              help="Optimisation steps [default: 500; with --encoder: 100 if --optimize, else none].")
@click.option("--space", type=click.Choice(["w", "w+"]), default="w+", show_default=True)
@click.option("--optimize-noise", is_flag=True, help="Also fit the noise maps (closer, but less editable).")
@click.option("--clip", "clip_spec", default=None,
              help="Add a CLIP image-feature loss with this model, e.g. ViT-B-32:openai.")
@click.option("--iterations", type=int, default=1, show_default=True,
              help="Refinement passes of a ReStyle-style (6-channel) encoder; official pSp/e4e are single-pass.")
@click.option("--no-align", is_flag=True, help="The image is an aligned face crop: only centre-crop and resize.")
@click.option("--largest-face", is_flag=True, help="With several faces in a photo, align the largest (default: "
                                                   "stop with an error).")
@click.option("--landmarks", type=click.Path(path_type=Path), default=None,
              help="dlib's shape_predictor_68_face_landmarks.dat [default: /usr/share/dlib/, from "
                   "`apt-get install libdlib-data`].")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Write the grid here (a row per image: input, reconstruction, each generator) [default: "
                   "edit.png unless --outdir].")
@click.option("--outdir", type=click.Path(path_type=Path), default=None,
              help="Write each image's input, reconstruction, renderings and codes (_ws.pt) here.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--force", is_flag=True, help="Overwrite existing output files.")
@user_errors
def edit_command(image: Path, generators: tuple[Path, ...], source: Path | None, encoder: Path | None,
                 optimize_: bool, steps: int | None, space: str, optimize_noise: bool, clip_spec: str | None,
                 iterations: int, no_align: bool, largest_face: bool, landmarks: Path | None, out: Path | None,
                 outdir: Path | None, device: str, seed: int, force: bool) -> None:
    """Edit a real photo (or a folder of them): invert it into the source generator and render the same
    latent with each adapted generator."""
    from .invert.align import AlignConfig
    from .invert.edit import EditJob, run_edit
    from .invert.optimize import ProjectConfig

    align = None if no_align else AlignConfig(predictor_path=str(landmarks) if landmarks else None,
                                              multiple_faces="largest" if largest_face else "error")
    job = EditJob(image=image, generators=list(generators), source=source, encoder=encoder, optimize=optimize_,
                  steps=steps, project=ProjectConfig(space=space, optimize_noise=optimize_noise, seed=seed),
                  clip=clip_spec, iterations=iterations, align=align, out=out, outdir=outdir, device=device,
                  force=force)
    records = run_edit(job)
    for rec in records:
        if rec.skipped:
            click.echo(f"skipped {rec.image}: {rec.skipped}")
        else:
            click.echo(f"{rec.image}: reconstruction PSNR {rec.psnr:.2f} dB")
    written = sorted({str(f) for rec in records for f in rec.files})
    click.echo(f"wrote {len(written)} files" + (f" ({written[0]})" if len(written) == 1 else ""))
    skipped = sum(bool(rec.skipped) for rec in records)
    if skipped:
        raise click.ClickException(f"{skipped} of {len(records)} images were skipped (reasons above)")


@cli.command()
@click.argument("run_or_ckpt", type=click.Path(path_type=Path))
@click.option("--source-generator", default=None, help="Frozen generator (needed when RUN_OR_CKPT is a checkpoint).")
@click.option("--source", default=None, help="Source text (default: the run's).")
@click.option("--target", default=None, help="Target text (default: the run's).")
@click.option("--clip", "clip_specs", multiple=True, help="CLIP model(s), e.g. ViT-B-32:openai (default: the run's).")
@click.option("--templates", default=None, help="Text templates: imagenet, single or none (default: the run's).")
@click.option("--n", type=int, default=64, show_default=True, help="Number of fixed latents.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--truncation", type=FiniteFloat(), default=1.0, show_default=True)
@click.option("--reference", type=click.Path(path_type=Path), default=None,
              help="Folder of target-domain images: adds Frechet distance and KID in CLIP space.")
@click.option("--task", "task", default=None,
              help="Shapes-world task for the known-answer metrics (detected from the texts by default).")
@click.option("--metric", "metric_names", multiple=True, help="Only these metrics (default: all).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="JSON file to write (default: RUN/eval.json for a run folder).")
@click.option("--device", default="cpu", show_default=True)
@user_errors
def evaluate(run_or_ckpt: Path, source_generator: str | None, source: str | None, target: str | None,
             clip_specs: tuple[str, ...], templates: str | None, n: int, seed: int, truncation: float,
             reference: Path | None, task: str | None, metric_names: tuple[str, ...], out: Path | None,
             device: str) -> None:
    """Metrics of an adapted generator against its frozen source, printed and written as JSON."""
    import json

    from .eval import evaluate as run_evaluate
    from .eval import format_table
    from .utils.io import atomic_write_text

    result = run_evaluate(run_or_ckpt, source_generator=source_generator, source=source, target=target,
                          clip=list(clip_specs) or None, templates=templates, n=n, seed=seed,
                          truncation=truncation, reference=reference, task=task,
                          metrics=list(metric_names) or None, device=device)
    click.echo(format_table(result))
    if out is None and run_or_ckpt.is_dir():
        out = RunDir(run_or_ckpt).eval
    if out is not None:
        atomic_write_text(out, json.dumps(result, indent=2))
        click.echo(f"wrote {out}")


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=None, help="HTML file [default: RUN/report.html].")
@click.option("--clip", "clip_specs", multiple=True, help="CLIP model for the directions figure (default: the run's).")
@click.option("--device", default="cpu", show_default=True)
@click.option("--force", is_flag=True, help="Overwrite the page if it exists.")
@user_errors
def report(run_dir: Path, out: Path | None, clip_specs: tuple[str, ...], device: str, force: bool) -> None:
    """One self-contained HTML page of a run: config, metrics, curves, layers, CLIP directions, samples."""
    from .viz.report import write_report

    RunDir.open(run_dir)
    out = writable_output(out or run_dir / "report.html", force)
    click.echo(f"wrote {write_report(run_dir, out, list(clip_specs) or None, device)}")


@cli.command()
@click.argument("run_dirs", metavar="RUN...", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--kind", type=click.Choice(["walk", "cross"]), default="walk", show_default=True,
              help="walk: a latent walk, frozen and adapted side by side; cross: weights morph source -> adapted.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="mp4 file [default: RUN/<kind>.mp4].")
@click.option("--frames", type=int, default=24, show_default=True, help="Frames per transition (walk) or per model.")
@click.option("--keyframes", type=int, default=4, show_default=True, help="Random latents visited by a walk.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--truncation", type=FiniteFloat(), default=0.7, show_default=True)
@click.option("--fps", type=FiniteFloat(0, strictly_above=True), default=24, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--force", is_flag=True, help="Overwrite the video if it exists.")
@user_errors
def video(run_dirs: tuple[Path, ...], kind: str, out: Path | None, frames: int, keyframes: int, seed: int,
          truncation: float, fps: float, device: str, force: bool) -> None:
    """Render an mp4 of one run (or several runs of the same source generator) as H.264."""
    from .formats import load_generator
    from .viz.curves import load_config
    from .viz.video import cross_model_video, latent_walk_video

    out = writable_output(out or run_dirs[0] / f"{kind}.mp4", force)
    sources = {str(load_config(run)["generator"]) for run in run_dirs}
    if len(sources) != 1:
        raise StylenadaError(f"the runs start from different generators ({', '.join(sorted(sources))}): "
                             "give runs of one source generator")
    missing = [str(run) for run in run_dirs if not RunDir(run).generator.is_file()]
    if missing:
        raise StylenadaError(f"no generator.safetensors in {', '.join(missing)}: the run has not finished")
    G_source = load_generator(sources.pop(), device=device)
    adapted = [load_generator(RunDir(run).generator, device=device) for run in run_dirs]
    if kind == "walk":
        n = latent_walk_video(G_source, adapted, out, n_keyframes=keyframes, frames_per_transition=frames,
                              seed=seed, truncation=truncation, fps=fps)
    else:
        n = cross_model_video(G_source, adapted, out, frames=frames, seed=seed, truncation=truncation, fps=fps)
    click.echo(f"wrote {out} ({n} frames at {fps:g} fps)")


@cli.command()
@click.argument("generator", required=False, type=click.Path(path_type=Path))
@click.option("--clip", "clip_specs", multiple=True, help="CLIP model(s) to offer [default: the preset's or "
                                                          f"{DEFAULT_CLIP}].")
@click.option("--runs", type=click.Path(path_type=Path), default=Path("runs/ui"), show_default=True,
              help="Folder for the UI's run folders (Explore and Edit list the runs in it).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to serve on (0.0.0.0: every interface).")
@click.option("--port", type=click.IntRange(0, 65535), default=7860, show_default=True)
@click.option("--share", is_flag=True, help="Also open a public Gradio link (off unless asked).")
@click.option("--device", default="auto", show_default=True, help="Device the training runs on.")
@user_errors
def ui(generator: Path | None, clip_specs: tuple[str, ...], runs: Path, host: str, port: int, share: bool,
       device: str) -> None:
    """A browser UI: adapt (live samples and curves, stop/resume, downloads), edit photos, explore runs. Without
    GENERATOR it opens on the shapes world."""
    from .utils.runtime import require_extra

    require_extra("gradio", "ui", "stylenada ui")
    from .ui.app import UISettings, launch

    settings = UISettings.create(str(generator) if generator else None, list(clip_specs) or None, runs, device)
    launch(settings, host=host, port=port, share=share)


@cli.command()
@click.argument("targets_file", metavar="TARGETS.yaml", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Sweep folder: one run folder per row, sweep.json, index.html [default: runs/<file name>].")
@click.option("--address", default=None,
              help="Run on this Ray cluster (e.g. auto, or ray://head:10001) [default: a local Ray].")
@click.option("--num-cpus", type=click.IntRange(min=1), default=None,
              help="Core budget of the local Ray [default: every core this process may use].")
@click.option("--cpus-per-row", type=click.IntRange(min=1), default=1, show_default=True,
              help="Cores (threads) of each row; a CUDA row also takes one GPU.")
@click.option("--eval-n", type=click.IntRange(min=0), default=64, show_default=True,
              help="Latents each finished row is evaluated on (eval.json); 0: no evaluation.")
@click.option("--dry-run", is_flag=True, help="Validate the rows and print what would run; run nothing.")
@user_errors
def sweep(targets_file: Path, out: Path | None, address: str | None, num_cpus: int | None, cpus_per_row: int,
          eval_n: int, dry_run: bool) -> None:
    """Adapt to many targets: each row of TARGETS.yaml (train options, under optional 'defaults') is a run
    folder OUT/<name>, run in parallel on Ray. Finished rows are skipped and interrupted ones resumed; an
    invalid or failed row is reported and the others go on (exit code 1 when any did not finish)."""
    from .sweep import SUCCEEDED, RayOptions, plan_sweep, run_sweep

    out = out or Path("runs") / targets_file.stem

    def show(row) -> None:
        took = f" in {row.seconds:.1f} s" if row.seconds is not None else ""
        click.echo(f"{row.status:<8} {row.name}{took}" + (f": {row.error}" if row.error else ""))

    if dry_run:
        rows = plan_sweep(targets_file, out, eval_n)
        for row in rows:
            show(row)
        invalid = [row.name for row in rows if row.status == "invalid"]
        if invalid:
            raise StylenadaError(f"{len(invalid)} of {len(rows)} rows are invalid ({', '.join(invalid)})")
        return
    rows = run_sweep(targets_file, out, RayOptions(address, num_cpus, cpus_per_row), eval_n, on_row=show)
    click.echo(f"wrote {out / 'index.html'} and {out / 'sweep.json'}")
    unfinished = [row.name for row in rows if row.status not in SUCCEEDED]
    if unfinished:
        raise StylenadaError(f"{len(unfinished)} of {len(rows)} rows did not finish ({', '.join(unfinished)}): "
                             "see above or sweep.json, fix them and run the sweep again")


def _load_plugin_commands() -> None:
    """Plugins add their commands to ``cli`` when loaded (the shapes world adds ``demo``)."""
    from .plugins import load_plugins

    load_plugins()


_load_plugin_commands()


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 1 bad input, 2 usage error, 130 interrupted)."""
    try:
        cli.main(args=argv, prog_name="stylenada", standalone_mode=False)
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("Aborted.", err=True)
        return 130  # the shell's code for Ctrl-C
    return 0


if __name__ == "__main__":
    sys.exit(main())
