"""The StyleGAN-NADA trainer: two generators from one checkpoint, CLIP as the only teacher.

Each step: sample latents, render them with the frozen generator (the anchor) and the trainable copy,
and update the copy to make the CLIP-space change of its images follow the text direction
``E_T(target) - E_T(source)`` (plus optional L2 and global terms), on the layers the strategy chose.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import StylenadaError
from ..formats import load_generator, save_generator
from ..formats.native import load_tensors
from ..models.family import Generator, mix_styles
from ..utils.images import load_image, make_grid, save_image
from ..utils.io import atomic_write, atomic_write_text
from ..utils.rundir import RunDir
from .config import TrainConfig
from .domains import extract_domain, save_domain
from .layers import LayerStrategy, make_strategy
from .losses import (
    LOSS_TERMS,
    MIN_IMAGE_CHANGE,
    TermInputs,
    directional_loss,
    global_clip_loss,
    image_change,
    image_direction,
)
from .source_text import CaptionScores, best_caption, candidate_list
from .weighting import LossWeighting, make_weighting

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}


@dataclass
class AdaptResult:
    """What a finished run gives: its folder, the adapted generator's file and summary metrics."""

    run_dir: Path
    generator_path: Path
    metrics: dict
    stopped: bool = False  # stopped early by ``run(stop=...)``: generator_path is the checkpoint to resume from

    @property
    def generator(self) -> Generator:
        """The adapted generator, loaded from ``generator_path`` (CPU)."""
        return load_generator(self.generator_path)


class NadaObjective:
    """The frozen/trainable pair, the CLIP guides and their text directions; computes every loss."""

    def __init__(self, G_frozen: Generator, G_train: Generator, clip_models: list, templates: str,
                 cfg: TrainConfig, rng: torch.Generator):
        self.G_frozen, self.G_train = G_frozen, G_train
        self.clip_models = clip_models  # [(ClipModel, weight)]
        self.templates, self.cfg, self.rng = templates, cfg, rng
        self.device = next(G_train.parameters()).device
        self.source = cfg.source
        self.directions: list[torch.Tensor] = []
        self.target_embeddings: list[torch.Tensor | None] = []
        self.source_embeddings: list[torch.Tensor | None] = []
        self.logit_scales = [model.logit_scale for model, _ in clip_models]  # read once: a GPU sync each
        self.weighting: LossWeighting = make_weighting("fixed", cfg.loss_weights())  # the trainer sets its own

    # --- text and image directions ---------------------------------------------------------------
    def set_source(self, source: str) -> None:
        self.source = source
        if self.cfg.target_images is not None:
            return  # the image-guided direction does not depend on the source text
        self.directions, self.target_embeddings = [], []
        targets = self.cfg.targets or [self.cfg.target]  # several: a multi-domain run's [T, D] per teacher
        self.source_embeddings = [model.text_embedding(source, self.templates).to(self.device)
                                  for model, _ in self.clip_models]
        for model, _ in self.clip_models:
            dirs = [model.text_direction(source, t, self.templates).to(self.device) for t in targets]
            embs = [model.text_embedding(t, self.templates).to(self.device) for t in targets]
            self.directions.append(torch.stack(dirs) if self.cfg.targets else dirs[0])
            self.target_embeddings.append(torch.stack(embs) if self.cfg.targets else embs[0])

    @torch.no_grad()
    def set_image_direction(self, target_images: list[torch.Tensor], n_source: int = 32) -> None:
        """Direction from the mean CLIP embedding of generated source images to that of target images
        (each target image embedded at its own size: CLIP's preprocessing resizes and crops it)."""
        ws = self.sample_ws(n_source)
        self.directions, self.target_embeddings = [], []
        self.source_embeddings = [None] * len(self.clip_models)
        for model, _ in self.clip_models:
            src = torch.cat([model.encode_image(self.G_frozen.synthesis(w, noise_mode="const"))
                             for w in ws.split(8)])
            tgt = torch.cat([model.encode_image(t.to(self.device)) for t in target_images])
            self.directions.append(image_direction(src, tgt))
            self.target_embeddings.append(None)

    # --- latents ---------------------------------------------------------------------------------
    @torch.no_grad()
    def sample_z(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None, int]:
        """``n`` fresh latents from the run's generator: (z, z2, cutoff) with z2 the style-mixing partner
        entered from W+ entry ``cutoff`` on (None without mixing)."""
        G = self.G_frozen
        z = torch.randn(n, G.z_dim, generator=self.rng).to(self.device)
        if self.cfg.mixing > 0 and torch.rand((), generator=self.rng) < self.cfg.mixing:
            z2 = torch.randn(n, G.z_dim, generator=self.rng).to(self.device)
            return z, z2, int(torch.randint(1, G.num_ws, (), generator=self.rng))
        return z, None, G.num_ws

    def map_z(self, G: Generator, latents: tuple, truncation: float | None = None) -> torch.Tensor:
        """W+ codes of ``latents`` (from :meth:`sample_z`) through ``G``'s mapping network."""
        psi = self.cfg.truncation if truncation is None else truncation
        z, z2, cutoff = latents
        ws = G.mapping(z, truncation_psi=psi)
        return ws if z2 is None else mix_styles(ws, G.mapping(z2, truncation_psi=psi), cutoff)

    @torch.no_grad()
    def sample_ws(self, n: int, truncation: float | None = None) -> torch.Tensor:
        """W+ codes for ``n`` fresh z from the frozen mapping (with style mixing at the set probability)."""
        return self.map_z(self.G_frozen, self.sample_z(n), truncation)

    # --- losses ----------------------------------------------------------------------------------
    def autocast(self):
        """bf16 autocast of the generators when ``precision='bf16'`` (CLIP always runs in fp32)."""
        if self.cfg.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def losses(self, img_train: torch.Tensor, img_frozen: torch.Tensor, directions: list[torch.Tensor] | None = None,
               target_embeddings: list[torch.Tensor | None] | None = None) -> dict[str, torch.Tensor]:
        """The weighted loss terms (``cfg.loss_weights()``) for a batch rendered by both generators; the text
        directions and target embeddings are the run's unless given (per teacher, [D] or per sample [N, D])."""
        emb_train, emb_frozen = [], []
        for model, _ in self.clip_models:
            # CLIP runs in fp32: it is a small share of the step, and bf16 attention is slow on CPU.
            with torch.no_grad():
                emb_frozen.append(model.encode_image(img_frozen))
            emb_train.append(model.encode_image(img_train))
        self.last_image_change = float(min(image_change(et.detach(), ef) for et, ef in zip(emb_train, emb_frozen,
                                                                                             strict=True)))
        inputs = TermInputs(img_train, img_frozen, emb_train, emb_frozen,
                            self.directions if directions is None else directions,
                            self.target_embeddings if target_embeddings is None else target_embeddings,
                            [w for _, w in self.clip_models], self.source_embeddings, self.logit_scales)
        return {name: LOSS_TERMS[name](inputs) for name in self.cfg.loss_weights()}

    def render_pair(self, G_train: Generator, ws: torch.Tensor,
                    ws_train: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Both generators' images of the same codes under the same noise: with ``noise_mode='random'``
        one set of noise maps is drawn (from the run's generator) and given to both, so the pair differs
        only by what training changed (L2 is 0 and the image change is 0 before the first update).
        ``ws_train``: the trainable generator's own codes of the same z (when its mapping trains)."""
        mode = self.cfg.noise_mode
        noise = self.G_frozen.synthesis.sample_noise(len(ws), self.rng, self.device) if mode == "random" else None
        with torch.no_grad(), self.autocast():
            img_frozen = self.G_frozen.synthesis(ws, noise_mode=mode, noise=noise).float()
        with self.autocast():
            img_train = G_train.synthesis(ws if ws_train is None else ws_train, noise_mode=mode, noise=noise).float()
        return img_train, img_frozen

    def total(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """The training objective: the weighting's combination of the named terms."""
        return self.weighting.combine(losses)

    def objective(self, G_train: Generator, ws: torch.Tensor) -> torch.Tensor:
        """The training objective on ``ws`` for any trainable generator (the trainer's, or adaptive_param's
        probe copy): the same terms, lambdas and noise handling as a training step."""
        return self.total(self.losses(*self.render_pair(G_train, ws)))

    def selection_loss(self, G_train: Generator, w: torch.Tensor, ws0: torch.Tensor) -> torch.Tensor:
        """Loss that the W+ codes are optimised on for layer selection: the global CLIP loss toward the
        target text (``w_loss='global'``, the official choice), or the directional loss between the
        trainable generator's images of ``w`` and the frozen generator's of ``ws0`` (``'directional'``,
        and always in image-guided mode)."""
        with self.autocast():
            img = G_train.synthesis(w, noise_mode="const").float()
        terms = []
        img_frozen = None
        for (model, weight), direction, tgt in zip(self.clip_models, self.directions, self.target_embeddings,
                                                   strict=True):
            e = model.encode_image(img)
            if tgt is not None and self.cfg.selection.w_loss == "global":
                terms.append(weight * global_clip_loss(e, tgt))
            else:
                if img_frozen is None:
                    with torch.no_grad(), self.autocast():
                        img_frozen = self.G_frozen.synthesis(ws0, noise_mode="const").float()
                with torch.no_grad():
                    e0 = model.encode_image(img_frozen)
                terms.append(weight * directional_loss(e, e0, direction))
        return torch.stack(terms).sum()


def generator_optimizer(params: list, cfg: TrainConfig, device: torch.device) -> torch.optim.Adam:
    """Adam with the official settings (lr and betas scaled by g_reg_every / (g_reg_every + 1)), in its fused
    form on CPU and CUDA (on CPU about 4x faster than the per-tensor loop: 0.04 s against 0.16 s per step
    for 28 M parameters on one thread)."""
    ratio = cfg.g_reg_every / (cfg.g_reg_every + 1)
    return torch.optim.Adam(params, lr=cfg.lr * ratio, betas=(0**ratio, 0.99**ratio),
                            fused=device.type in ("cpu", "cuda"))


def load_target_images(folder: str | Path) -> list[torch.Tensor]:
    """The target-domain examples of image-guided mode, each [1, 3, H, W] in [-1, 1] at its own size
    (CLIP's preprocessing resizes and centre-crops each, as it does every image it embeds)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise StylenadaError(f"target image folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise StylenadaError(f"no images (.png/.jpg/.webp/.bmp) in {folder}: add target-domain examples")
    return [load_image(p) for p in files]


def resolve_device(device: str) -> torch.device:
    """'auto' is the GPU when there is one, else the CPU; anything else must be available."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise StylenadaError(f"--device {device}: no CUDA GPU is available here; use --device cpu (or auto)")
    return dev


def load_clip_models(specs: list[str], device: str | torch.device) -> list:
    """[(ClipModel, weight)] for ``--clip`` specs such as 'ViT-B-32:openai@1.0'."""
    from ..clip.models import load_clip_ensemble

    return list(load_clip_ensemble(specs, device=device))


class Trainer:
    """Runs (or resumes) one adaptation run into ``cfg.out``."""

    def __init__(self, cfg: TrainConfig, clip_models: list | None = None, resume: bool = False):
        cfg.validate()
        # The run folder records absolute paths, so that evaluate, report and --resume work from anywhere.
        for name in ("generator", "target_images"):
            value = getattr(cfg, name)
            if value and Path(value).exists():
                setattr(cfg, name, str(Path(value).resolve()))
        self.cfg = cfg
        self.rundir = RunDir(Path(cfg.out))
        self.run_dir = self.rundir.path
        self.device = resolve_device(cfg.device)
        if not resume and RunDir.is_run(self.run_dir):
            raise StylenadaError(f"{self.run_dir} already holds a run: pass --resume {self.run_dir} to continue "
                                 "it, or choose another --out")
        try:  # before anything slow: a run folder that cannot be written is one line, at once
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StylenadaError(f"cannot create the run folder {self.run_dir} ({e.strerror}): choose another "
                                 "--out") from None
        if not os.access(self.run_dir, os.W_OK):
            raise StylenadaError(f"no permission to write in {self.run_dir}: choose another --out")
        # Every random draw of the run (latents, style mixing, noise maps, selection batches) comes from this
        # one generator, saved in checkpoints; the global RNG is neither seeded nor used. It lives on the
        # CPU, so a run draws the same latents and noise on any device.
        self.rng = torch.Generator().manual_seed(cfg.seed)

        G_frozen = load_generator(cfg.generator, device=self.device)
        G_frozen.requires_grad_(False).eval()
        G_train = copy.deepcopy(G_frozen).train()
        G_train.synthesis.checkpointing = cfg.activation_checkpointing  # (copies made from it inherit it)
        self.G_frozen, self.G_train = G_frozen, G_train
        self.clip_models = list(clip_models) if clip_models is not None else load_clip_models(cfg.clip, self.device)
        self.templates = cfg.templates
        self.objective = NadaObjective(G_frozen, G_train, self.clip_models, self.templates, cfg, self.rng)
        if cfg.target_images is not None:
            self.objective.set_image_direction(load_target_images(cfg.target_images))
        else:
            self.objective.set_source(cfg.source)
        self.candidates = candidate_list(cfg.source_candidates) if cfg.source_text == "dynamic" else None
        self.caption_scores = CaptionScores()

        self.strategy: LayerStrategy = make_strategy(cfg.layers, G_train, cfg.selection)
        self.weighting: LossWeighting = make_weighting(
            cfg.weighting, cfg.loss_weights(), lambda_lr=cfg.lambda_lr, l2_budget=cfg.l2_budget,
            temperature=cfg.lambda_temperature)
        self.objective.weighting = self.weighting
        params = list(G_train.synthesis.parameters())
        G_train.mapping.requires_grad_(cfg.train_mapping)  # strategies choose among synthesis layers only
        if cfg.train_mapping:
            params += list(G_train.mapping.parameters())
        self.optimizer = generator_optimizer(params, cfg, self.device)
        # Fixed latents for sample grids: drawn from their own seed so they never depend on training.
        fixed = torch.randn(cfg.n_samples, G_frozen.z_dim, generator=torch.Generator().manual_seed(cfg.seed + 1))
        with torch.no_grad():
            self.fixed_ws = G_frozen.mapping(fixed.to(self.device), truncation_psi=cfg.sample_truncation)
        self.step = 0
        self._writer = None

    # --- one step --------------------------------------------------------------------------------
    def train_step(self) -> dict:
        step = self.step
        t0 = time.perf_counter()
        record: dict = {"step": step}
        self.before_step(record)
        img_train, img_frozen, texts = self.render_batch()
        losses = self.objective.losses(img_train, img_frozen, *texts)
        total = self.objective.total(losses)
        if not torch.isfinite(total):
            raise StylenadaError(f"training diverged at step {step}: the loss is {float(total)}; lower --lr "
                                 "or the lambdas (the last checkpoint is kept)")
        self.optimizer.zero_grad(set_to_none=True)
        if total.requires_grad:  # False only when the strategy trains nothing (the 'none' control)
            total.backward()
            self.optimizer.step()
            if self.objective.last_image_change < MIN_IMAGE_CHANGE:
                # The two generators still agree (the first step): the directional loss's gradient, ~1/|change|,
                # is orders of magnitude above every later one. Adam's first step is scale-free (a sign step
                # of size lr), but left in its second-moment estimate that gradient would shrink every
                # later step for hundreds of steps. So this step does not enter the moment estimates.
                self.optimizer.state.clear()
        record["image_change"] = self.objective.last_image_change
        values = {k: v.item() for k, v in losses.items()}
        lambdas = self.weighting.lambdas()
        self.weighting.update(values)
        record.update({f"loss/{k}": v for k, v in values.items()})
        record["loss/total"] = total.item()
        record.update({f"lambda/{k}": v for k, v in lambdas.items()})
        record["source_text"] = self.objective.source
        record["time"] = time.perf_counter() - t0
        self.step += 1
        return record

    def before_step(self, record: dict) -> None:
        """Re-caption the source (dynamic source text) and re-select the layers when due."""
        cfg, step = self.cfg, self.step
        if self.candidates is not None and step % cfg.source_interval == 0:
            with torch.no_grad():
                imgs = self.G_frozen.synthesis(self.objective.sample_ws(cfg.source_batch), noise_mode="const")
            target = cfg.target if cfg.target_images is None and cfg.target.strip() else None
            text, _ = best_caption(imgs, self.candidates, self.clip_models, self.templates, target,
                                   history=self.caption_scores)
            self.objective.set_source(text)
            record["source"] = text
        selection = self.strategy.select(step, self.objective)
        if selection is not None:
            record["selection"] = selection.to_json()

    def render_batch(self) -> tuple[torch.Tensor, torch.Tensor, tuple]:
        """One batch of fresh latents through both generators: (trainable images, frozen images, (text
        directions, target embeddings) for the loss, or () for the run's own)."""
        latents = self.objective.sample_z(self.cfg.batch)
        ws = self.objective.map_z(self.G_frozen, latents).detach()
        ws_train = self.objective.map_z(self.G_train, latents) if self.cfg.train_mapping else None
        return *self.objective.render_pair(self.G_train, ws, ws_train), ()

    # --- outputs ---------------------------------------------------------------------------------
    @torch.no_grad()
    def sample_grid(self) -> torch.Tensor:
        """Fixed latents: frozen generator on the top row, adapted generator below."""
        a = self.G_frozen.synthesis(self.fixed_ws, noise_mode="const")
        b = self.G_train.synthesis(self.fixed_ws, noise_mode="const")
        return make_grid(torch.cat([a, b]).cpu(), ncols=len(a))

    def writer(self):
        if self._writer is None and self.cfg.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.rundir.tensorboard))
        return self._writer

    def log(self, record: dict) -> None:
        with open(self.rundir.metrics, "a") as f:
            f.write(json.dumps(record) + "\n")
        w = self.writer()
        if w is not None:
            for k, v in record.items():
                if "/" in k and isinstance(v, float):
                    w.add_scalar(k, v, record["step"])
            if "source" in record:
                w.add_text("source_text", record["source"], record["step"])

    def checkpoint(self) -> Path:
        """Write generator + optimiser + weighting + strategy + RNG state for ``--resume``; atomic."""
        name = f"step{self.step:06d}"
        weights, state_path = self.rundir.checkpoint(name)
        self.save_trainable(weights)
        state = {
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "weighting": self.weighting.state_dict(),
            "strategy": self.strategy.state_dict(),
            "rng": self.rng.get_state(),
            "source": self.objective.source,
            "caption_scores": self.caption_scores.state_dict(),
        }
        atomic_write(state_path, lambda p: torch.save(state, p))
        atomic_write_text(self.rundir.latest, json.dumps({"step": self.step, "name": name}))
        self.prune_checkpoints()
        return weights

    def save_trainable(self, path: Path) -> None:
        """Write what this run trains (the adapted generator) to a checkpoint file."""
        save_generator(self.G_train, path)

    def load_trainable(self, path: Path) -> None:
        self.G_train.load_state_dict(load_tensors(path))

    def prune_checkpoints(self) -> None:
        """Keep the newest ``keep_checkpoints`` checkpoints (0 keeps all); older ones are deleted."""
        keep = self.cfg.keep_checkpoints
        if keep <= 0:
            return
        steps = sorted(p.name[: -len(".safetensors")] for p in self.rundir.checkpoints.glob("step*.safetensors"))
        for name in steps[:-keep]:
            for path in self.rundir.checkpoint(name):
                path.unlink(missing_ok=True)

    def restore(self) -> bool:
        """Continue from the newest checkpoint; False (and a fresh start, the log cleared) when the run was
        stopped before its first one. Temporary files of an interrupted write are removed first."""
        for stale in self.run_dir.rglob(".*.tmp"):
            stale.unlink(missing_ok=True)
        name = self.rundir.latest_checkpoint()
        if name is None:
            log.warning("%s has no checkpoint yet: starting it again from step 0", self.run_dir)
            self.rundir.metrics.unlink(missing_ok=True)
            return False
        weights, state_path = self.rundir.checkpoint(name)
        self.load_trainable(weights)
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.weighting.load_state_dict(state["weighting"])
        self.strategy.load_state_dict(state["strategy"])
        self.rng.set_state(state["rng"])
        self.objective.set_source(state["source"])
        if "caption_scores" in state:  # (checkpoints written before the scores were averaged over re-captions)
            self.caption_scores.load_state_dict(state["caption_scores"])
        self.step = int(state["step"])
        # Keep the log consistent with the resumed state: drop records past the checkpoint.
        if self.rundir.metrics.exists():
            kept = [r for r in self.rundir.records() if r["step"] < self.step]
            atomic_write_text(self.rundir.metrics, "".join(json.dumps(r) + "\n" for r in kept))
        return True

    def run(self, progress: bool = True, stop: Callable[[], bool] | None = None) -> AdaptResult:
        """Train to ``cfg.iters`` and write the final outputs. ``stop`` (asked before each step) ends the run
        early with a checkpoint and nothing else: ``--resume`` continues it (the UI's Stop button)."""
        from tqdm import tqdm

        cfg = self.cfg
        self.run_dir.mkdir(parents=True, exist_ok=True)
        cfg.save(self.rundir.config)
        self.rundir.samples.mkdir(exist_ok=True)
        if self.step == 0:
            save_image(self.sample_grid(), self.rundir.sample(0))
        bar = tqdm(total=cfg.iters, initial=self.step, desc="adapt", unit="it", disable=not progress,
                   dynamic_ncols=True)
        t_start = time.perf_counter()
        first_step = self.step
        while self.step < cfg.iters:
            if cfg.max_seconds and time.perf_counter() - t_start >= cfg.max_seconds:
                break
            if stop is not None and stop():
                bar.close()
                weights = self.checkpoint()
                if self._writer is not None:
                    self._writer.close()
                return AdaptResult(self.run_dir, weights, {"steps": self.step}, stopped=True)
            record = self.train_step()
            self.log(record)
            bar.set_postfix({"clip": f"{record['loss/clip']:.3f}", "l2": f"{record['loss/l2']:.4f}",
                             **{f"λ{k}": f"{v:.3g}" for k, v in self.weighting.lambdas().items()}})
            bar.update(1)
            if cfg.sample_every and self.step % cfg.sample_every == 0:
                save_image(self.sample_grid(), self.rundir.sample(self.step))
            if cfg.checkpoint_every and (self.step % cfg.checkpoint_every == 0 or self.step == 1) \
                    and self.step < cfg.iters:
                self.checkpoint()
        bar.close()
        elapsed = time.perf_counter() - t_start
        self.checkpoint()
        gen_path = self.write_outputs()
        save_image(self.sample_grid(), self.rundir.sample("final"))
        metrics = self.summary(elapsed, self.step - first_step)
        atomic_write_text(self.rundir.summary, json.dumps(metrics, indent=2))
        if self._writer is not None:
            self._writer.close()
        return AdaptResult(self.run_dir, gen_path, metrics)

    def write_outputs(self) -> Path:
        """The finished run's products; returns the main one (the adapted generator)."""
        cfg = self.cfg
        save_generator(self.G_train, self.rundir.generator)
        if cfg.export_rosinality:
            save_generator(self.G_train, self.rundir.generator_pt)
        if cfg.selection.params != "full":  # the run's domain alone, a few KB, for `generate --domain`
            save_domain(extract_domain(self.G_frozen, self.G_train, cfg.selection.params, self.objective.source,
                                       cfg.target), self.rundir.domain)
        return self.rundir.generator

    def summary(self, elapsed: float, steps: int) -> dict:
        records = self.rundir.records()
        last = records[-min(10, len(records)):]
        mean = lambda k: sum(r[k] for r in last) / len(last)  # noqa: E731
        return {
            "steps": self.step,
            "seconds": elapsed,
            "seconds_per_step": elapsed / max(steps, 1),
            "final_clip_loss": mean("loss/clip"),
            "final_l2": mean("loss/l2"),
            "initial_clip_loss": records[0]["loss/clip"],
            "lambdas": self.weighting.lambdas(),
            "source_text": self.objective.source,
        }


def adapt(config: TrainConfig | dict, clip_models: list | None = None, progress: bool = True,
          stop: Callable[[], bool] | None = None) -> AdaptResult:
    """Run StyleGAN-NADA as configured; returns the run folder, the final generator and summary metrics."""
    cfg = TrainConfig.from_dict(config) if isinstance(config, dict) else config
    return trainer_class(cfg)(cfg, clip_models=clip_models).run(progress=progress, stop=stop)


def trainer_class(cfg: TrainConfig) -> type[Trainer]:
    """The trainer of a config: one adapted generator, or a multi-domain model when ``targets`` are given."""
    if cfg.targets:
        from .multidomain import MultiDomainTrainer

        return MultiDomainTrainer
    return Trainer


def resume(run_dir: str | Path, iters: int | None = None, clip_models: list | None = None,
           progress: bool = True, stop: Callable[[], bool] | None = None) -> AdaptResult:
    """Continue the run in ``run_dir`` from its last checkpoint (optionally to a new ``iters``)."""
    run = RunDir.open(run_dir)
    cfg = TrainConfig.from_dict(run.load_config())
    cfg.out = str(run.path)
    if iters is not None:
        cfg.iters = iters
    trainer = trainer_class(cfg)(cfg, clip_models=clip_models, resume=True)
    trainer.restore()
    return trainer.run(progress=progress, stop=stop)


__all__ = ["AdaptResult", "NadaObjective", "Trainer", "adapt", "generator_optimizer", "resume"]
