"""The shapes world as a stylenada plugin (entry point ``stylenada.plugins: shapes``).

Registers its two tiny CLIPs as ``--clip`` sources, its caption list for dynamic source text
(``--source-candidates shapes``), the preset ``shapes`` (the default of ``stylenada ui``), its known-answer
metrics for ``stylenada evaluate``, its renders as real images for encoder training (``--real shapes``) and
the ``stylenada demo`` command. Nothing in the library
imports this package: it is found through the entry point (see :mod:`stylenada.plugins`).
"""

from __future__ import annotations

from pathlib import Path

import click

from ..adapt.config import register_preset
from ..adapt.domains import PARAM_SCOPES
from ..adapt.layers import STRATEGIES
from ..adapt.source_text import SOURCE_TEXT_MODES, register_candidates
from ..adapt.weighting import WEIGHTINGS
from ..cli import cli, parse_lambdas, user_errors
from ..clip.models import ClipModel, register_clip_source
from ..errors import StylenadaError
from ..eval import register_task_metrics
from ..invert.train_encoder import REAL_IMAGE_SOURCES
from ..models.family import NOISE_MODES
from .tasks import TASKS
from .tiny_clip import WEIGHTS


def _tiny_clip_loader(name: str):
    def load(spec, device, dtype, preprocess_cfg) -> ClipModel:
        from .tiny_clip import load_tiny_clip

        model, tokenizer = load_tiny_clip(device=device, name=name)
        return ClipModel(model, tokenizer, name=name, preprocess_cfg=preprocess_cfg)

    return load


for _name in WEIGHTS:
    register_clip_source(_name)(_tiny_clip_loader(_name))

register_candidates("shapes", ["a shape", "a filled shape", "a red shape", "an orange shape", "a yellow shape",
                               "a filled red shape", "a circle", "a square", "a triangle", "a cross",
                               "a shape on a white background", "a red circle", "a red square"])


def _shapes_preset():
    """The demo's colour run (red -> blue shapes) as a preset, for `stylenada ui` without a generator."""
    from .demo import DemoConfig, train_config

    cfg = train_config(DemoConfig(), "runs/ui/shapes")
    cfg.device = "auto"
    return cfg


register_preset("shapes", _shapes_preset)


@register_task_metrics
def shapes_task_metrics(target, G_frozen, G_adapted, clip_models, n: int, seed: int, task: str | None):
    """The known-answer metrics (reader, pixel statistics, fooled teachers) of a shapes-world run."""
    from .tasks import TASKS, get_task

    if G_frozen.resolution != 32:
        return None
    if task is not None:
        found = get_task(task)
    else:
        found = next((t for t in TASKS.values() if target.target == t.target and target.source in (None, t.source)),
                     None)
    if found is None:
        return None
    from .reader import load_reader
    from .tasks import task_metrics

    return "shapes", task_metrics(found, G_frozen, G_adapted, load_reader(), clip=[m for m, _ in clip_models],
                                  n=n, seed=seed)


def _shapes_renders(resolution: int):
    from .render import domain_sampler

    if resolution not in (32, 64):
        raise StylenadaError(f"shapes-world renders are 32 or 64 px, the generator is {resolution} px")
    return domain_sampler("source", resolution)


REAL_IMAGE_SOURCES["shapes"] = _shapes_renders


@cli.command("demo")
@click.option("--task", type=click.Choice(list(TASKS)), default="colour", show_default=True,
              help="colour: red -> blue; style: filled -> outline; shape: circle -> square (circles generator).")
@click.option("--family", type=click.Choice(["sg2", "sg3"]), default=None,
              help="The shipped generator to adapt: sg2 (StyleGAN2) or sg3 (StyleGAN3 config T) [default: sg2].")
@click.option("--layers", type=click.Choice(list(STRATEGIES)), default=None,
              help="Layer strategy (see `train --help`) [default: all].")
@click.option("--weighting", type=click.Choice(list(WEIGHTINGS)), default=None, help="[default: fixed]")
@click.option("--iters", type=int, default=None, help="Training steps [default: the demo's].")
@click.option("--k", type=int, default=None, help="W+ entries (of 8) the late and adaptive strategies train.")
@click.option("--lambda-l2", type=float, default=None, help="Weight of the L2 term [default: the demo's].")
@click.option("--lambda", "lambdas", multiple=True, metavar="TERM=WEIGHT",
              help="Weight of a further registered loss term, e.g. --lambda angle=1 (repeatable).")
@click.option("--lr", type=float, default=None, help="Learning rate [default: the demo's].")
@click.option("--params", type=click.Choice(list(PARAM_SCOPES)), default=None,
              help="Which parameters train: full, or a compact domain scope (the choices above) [default: full].")
@click.option("--noise-mode", type=click.Choice(list(NOISE_MODES)), default=None, help="[default: random]")
@click.option("--source-text", type=click.Choice(list(SOURCE_TEXT_MODES)), default=None, help="[default: static]")
@click.option("--seed", type=int, default=None, help="[default: 0]")
@click.option("--generator", type=click.Path(path_type=Path), default=None,
              help="Another generator of the task's source domain, e.g. one trained by `python -m "
                   "stylenada.toy.train_gan` [default: the shipped one].")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/demo"), show_default=True,
              help="Run folder (a numbered sibling is used if it exists).")
@user_errors
def demo(task: str, out: Path, **options) -> None:
    """Adapt a shipped shapes-world generator on the CPU and report known-answer metrics."""
    from .demo import FAMILY_DEFAULTS, DemoConfig, run_demo

    given = {k: v for k, v in options.items() if v is not None and v != ()}
    given = {**FAMILY_DEFAULTS.get(given.get("family", "sg2"), {}), **given}
    if "lambdas" in given:
        given["lambdas"] = parse_lambdas(given["lambdas"])
    if "generator" in given:
        given["generator"] = str(given["generator"])
    cfg = DemoConfig(task=task, out=str(out), **given)
    m = run_demo(cfg)
    click.echo(f"task {m['task']}: {m['source']!r} -> {m['target']!r}, {cfg.layers} layers, {cfg.iters} steps")
    click.echo(f"target success   {m['target_success_before']:.0%} -> {m['target_success']:.0%}"
               f"   (pixel statistics: {m['pixel_success_before']:.0%} -> {m['pixel_success']:.0%})")
    click.echo(f"preservation     {m['preservation']:.0%}")
    click.echo(f"valid images     {m['valid_before']:.0%} -> {m['valid_after']:.0%}")
    click.echo(f"diversity ratio  {m['diversity_ratio']:.2f}")
    if m.get("fooled"):
        click.echo("teacher fooled   " + ", ".join(f"{k} {v:.0%}" for k, v in m["fooled"].items())
                   + "  (teacher says target, reader says not)")
    if "frechet_clip" in m:
        click.echo(f"Frechet (CLIP)   {m['frechet_clip_before']:.3f} -> {m['frechet_clip']:.3f}"
                   "  (distance to true target renders)")
    click.echo(f"time             {m['total_seconds']:.1f} s")
    run_dir = Path(m["run_dir"])
    click.echo(f"wrote {run_dir / 'before_after.png'} (top: before, bottom: after), "
               f"{run_dir / 'demo_metrics.json'}, {run_dir / 'curves.png'}")
