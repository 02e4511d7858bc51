"""``stylenada demo``: adapt the shipped tiny generator to a colour, style or shape it never saw.

Everything is shipped (the shapes-world StyleGAN2, the tiny CLIP, the attribute reader), so the demo
runs on a laptop CPU in well under a minute and reports known-answer metrics.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..adapt.config import TrainConfig
from ..adapt.layers import SelectionConfig
from ..adapt.trainer import adapt, load_clip_models
from ..errors import StylenadaError
from ..formats import load_generator
from ..utils.images import make_grid, save_image
from ..utils.io import atomic_write_text
from ..utils.rundir import RunDir, free_run_dir
from ..viz.curves import load_records, plot_overview
from .reader import load_reader
from .tasks import get_task, sample_images, task_metrics

WEIGHTS = Path(__file__).parent / "weights"
GENERATOR = WEIGHTS / "shapes_gan.safetensors"  # red filled shapes of four kinds on white
# The shipped generators, by family and source domain (the shape task adapts a circles-only generator).
GENERATORS = {("stylegan2", "source"): GENERATOR, ("stylegan2", "circles"): WEIGHTS / "circles_gan.safetensors",
              ("stylegan3", "source"): WEIGHTS / "shapes_gan_sg3.safetensors"}
FAMILY_NAMES = {"sg2": "stylegan2", "sg3": "stylegan3", "stylegan2": "stylegan2", "stylegan3": "stylegan3"}
# The demo's settings for the StyleGAN3 (options the command line does not give): its colour lives in the one
# ToRGB, and training more than that layer blurs the shapes (docs/benchmarks.md, "StyleGAN3 in the shapes world").
FAMILY_DEFAULTS = {"sg3": {"layers": "late", "k": 1, "lr": 0.05, "lambda_l2": 0.0}}
TEACHERS = ["tiny-shapes", "tiny-shapes-rn"]  # the ensemble that trains (two architectures, two seeds)


@dataclass
class DemoConfig:
    task: str = "colour"  # colour | style | shape
    family: str = "sg2"  # the shipped generator's family: sg2 (StyleGAN2) or sg3 (StyleGAN3 config T)
    layers: str = "all"  # the strategy study's best on the shapes world (docs/strategy-study.md)
    weighting: str = "fixed"
    iters: int = 100  # with lr 0.0045: the same figures as the strategy study's 150 steps at 0.003, in 2/3 the time
    batch: int = 8
    lr: float = 0.0045
    k: int = 6  # W+ entries (of the tiny generator's 8) that late and the adaptive strategies train
    selection_interval: int = SelectionConfig.interval  # steps between re-selections of the adaptive strategies
    train_torgb: bool = True  # also train the ToRGB layers of the chosen W+ entries (colour lives there)
    params: str = "full"  # full, or a compact domain scope (domains.PARAM_SCOPES): which parameters train
    lambda_l2: float = 0.1
    lambda_global: float = 0.0
    lambdas: dict[str, float] = field(default_factory=dict)  # further registered loss terms, e.g. {"angle": 1}
    source_text: str = "static"  # 'dynamic': the tiny CLIP captions the frozen generator's samples
    seed: int = 0
    out: str = "runs/demo"
    n_eval: int = 128  # fixed latents the reader judges (the strategy study uses 128 too)
    generator: str = ""  # the frozen source generator (default: the shipped one of the task's source domain)
    clip: tuple[str, ...] = tuple(TEACHERS)
    noise_mode: str = "random"
    max_seconds: float = 0.0  # stop training after this much time (0: run every step)

    def source_generator(self) -> str:
        if self.generator:
            if not Path(self.generator).is_file():
                raise StylenadaError(f"generator not found: {self.generator}; give the path of a generator of the "
                                     f"{get_task(self.task).source_domain!r} domain, or leave --generator out for "
                                     "the shipped one")
            return self.generator
        family, domain = FAMILY_NAMES[self.family], get_task(self.task).source_domain
        if (family, domain) not in GENERATORS:
            shipped = ", ".join(f"{f} {d}" for f, d in GENERATORS)
            raise StylenadaError(f"no {family} generator of the {domain!r} domain is shipped (the {self.task} task "
                                 f"needs one); shipped: {shipped}")
        return str(GENERATORS[family, domain])


def save_training_curves(metrics_jsonl: Path, out: Path) -> Path:
    """Loss terms, lambdas and directional agreement per step, from a run's metrics.jsonl."""
    return plot_overview(load_records(metrics_jsonl), out)


def train_config(cfg: DemoConfig, out: str | Path) -> TrainConfig:
    """The training run of the demo (also the 'shapes' preset, the default of ``stylenada ui``)."""
    task = get_task(cfg.task)
    return TrainConfig(
        generator=cfg.source_generator(), source=task.source, target=task.target, out=str(out), clip=list(cfg.clip),
        templates="none", iters=cfg.iters, batch=cfg.batch, lr=cfg.lr, seed=cfg.seed, layers=cfg.layers,
        weighting=cfg.weighting, lambda_l2=cfg.lambda_l2, lambda_global=cfg.lambda_global, lambdas=dict(cfg.lambdas),
        source_text=cfg.source_text, source_candidates="shapes",
        source_interval=max(cfg.iters // 3, 1), sample_every=max(cfg.iters // 3, 1), checkpoint_every=0,
        n_samples=8, sample_truncation=1.0, noise_mode=cfg.noise_mode, device="cpu", max_seconds=cfg.max_seconds,
        selection=SelectionConfig(k=cfg.k, w_batch=8, train_torgb=cfg.train_torgb, params=cfg.params,
                                  interval=cfg.selection_interval))


def run_demo(cfg: DemoConfig, progress: bool = True) -> dict:
    """Adapt, evaluate and write grid, metrics and curves into a fresh run folder; returns the metrics."""
    t0 = time.perf_counter()
    task = get_task(cfg.task)
    cfg.source_generator()  # a missing generator fails here, before a run folder is made
    out = free_run_dir(cfg.out)
    clip_models = load_clip_models(list(cfg.clip), "cpu")
    train_cfg = train_config(cfg, out)
    generator = train_cfg.generator
    result = adapt(train_cfg, clip_models=clip_models, progress=progress)
    G_frozen, G_adapted = load_generator(generator), load_generator(result.generator_path)
    metrics = task_metrics(task, G_frozen, G_adapted, load_reader(), clip=[m for m, _ in clip_models], n=cfg.n_eval)
    metrics["train_seconds"] = result.metrics["seconds"]
    before, after = sample_images(G_frozen, 12, seed=100), sample_images(G_adapted, 12, seed=100)
    save_image(make_grid(torch.cat([before, after]), ncols=12), out / "before_after.png")
    save_training_curves(RunDir(out).metrics, out / "curves.png")
    metrics["total_seconds"] = time.perf_counter() - t0
    atomic_write_text(RunDir(out).demo_metrics, json.dumps(metrics, indent=2))
    metrics["run_dir"] = str(out)
    return metrics
