"""Many domains in one model: a small network from a target text to the generator's change.

One run over a list of target texts (``stylenada train --targets FILE``) trains a *multi-domain model* in
the spirit of HyperDomainNet (NeurIPS'22) and HyperGAN-CLIP: the text's CLIP direction from the source
text, ``c = concat_teachers(normalise(E_T(target) - E_T(source)))``, goes through a small MLP to ``rank``
mixing weights ``h(c)`` (normalised to RMS 1), and the generator's offsets are ``delta(c) = h(c) @ B /
sqrt(rank)`` for a learned basis ``B`` of ``rank`` domains over the parameters that the run trains (the layers
of ``--layers all|late`` and the ``--params`` scope). Each step trains on a few targets at once, every latent
of the batch under its own target's directional loss, so that one model learns them all; ``target_mixing``
also trains on blends of two targets' directions, which teaches the model the space between its targets.

A new text is rendered without training (zero-shot): its direction is computed with the run's teachers
and goes through the same network. A target's offsets are an ordinary :class:`~.domains.Domain`, so they
can be saved as a domain file, added to other domains or exported to a full generator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import CheckpointError, StylenadaError
from ..formats import load_generator
from ..formats.native import load_checked_tensors, read_metadata, save_tensors
from ..formats.registry import check_file
from ..models.family import Generator
from ..utils.images import make_grid
from ..utils.rundir import RunDir
from .config import NEW_TEXT_MODES
from .domains import Domain, apply_domains
from .trainer import Trainer, generator_optimizer

MULTIDOMAIN_VERSION = 1
GRID_TARGETS = 6  # targets shown in a run's sample grids (one row each)


def text_condition(directions: list[torch.Tensor]) -> torch.Tensor:
    """The model's input for text directions given per teacher ([D_t] or [T, D_t]): the unit directions
    concatenated, each scaled by sqrt(D_t) so that its entries are about 1 in size."""
    parts = [F.normalize(d.float(), dim=-1) * math.sqrt(d.shape[-1]) for d in directions]
    return torch.cat(parts, dim=-1)


class DomainHypernet(nn.Module):
    """Text condition [T, C] -> parameter offsets [T, P]: an MLP to ``rank`` mixing weights of a learned basis
    of ``rank`` domains (zero at the start, so the model starts as the base generator)."""

    def __init__(self, cond_dim: int, shapes: dict[str, tuple[int, ...]], rank: int = 8, hidden: int = 256):
        super().__init__()
        self.shapes = {name: tuple(int(s) for s in shape) for name, shape in shapes.items()}
        self.sizes = [math.prod(shape) for shape in self.shapes.values()]
        self.rank = rank
        self.encoder = nn.Sequential(nn.Linear(cond_dim, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, rank))
        self.basis = nn.Parameter(torch.zeros(rank, sum(self.sizes)))

    @property
    def cond_dim(self) -> int:
        return self.encoder[0].in_features

    def mixture(self, cond: torch.Tensor) -> torch.Tensor:
        """The mixing weights [T, rank], normalised to RMS 1: the encoder chooses the mix, the basis holds the
        size of the change (an unnormalised mix let the encoder's steps grow the change without bound)."""
        return F.normalize(self.encoder(cond), dim=-1) * math.sqrt(self.rank)

    def forward(self, cond: torch.Tensor) -> torch.Tensor:
        return self.mixture(cond) @ self.basis / math.sqrt(self.rank)

    def split(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """One row of offsets [P] as {parameter name: tensor of its shape}."""
        return {name: t.view(shape) for (name, shape), t in zip(self.shapes.items(), flat.split(self.sizes),
                                                                strict=True)}


@dataclass
class MultiDomainModel:
    """A trained multi-domain model: the network, the base generator it offsets and how texts enter it."""

    hypernet: DomainHypernet
    family: str
    config: dict  # the base generator's config
    generator: str  # the base generator's file (as trained)
    clip: list[str]  # the teachers, whose text directions are the input
    templates: str
    source: str
    targets: list[str]
    conditions: torch.Tensor  # [T, C] the training targets' inputs (rendering them needs no CLIP)
    _cond_dims: tuple[int, ...] = ()  # each teacher's share of C (its embedding width)

    def condition(self, text: str, clip_models: list | None = None, new_text: str = "direct") -> torch.Tensor:
        """The input [C] for ``text``: stored for a training target; a new text's direction computed with the
        teachers, as it is (``new_text='direct'``) or replaced by the trained blend of two targets nearest to
        it (``'blend'``, :meth:`nearest_blend`)."""
        if new_text not in NEW_TEXT_MODES:
            raise StylenadaError(f"unknown new-text mode {new_text!r}; choose one of {', '.join(NEW_TEXT_MODES)}")
        for i, t in enumerate(self.targets):
            if t.strip().lower() == text.strip().lower():
                return self.conditions[i]
        directions = self.text_directions(text, clip_models)
        return self.nearest_blend(directions)[0] if new_text == "blend" else text_condition(directions)

    def text_directions(self, text: str, clip_models: list | None) -> list[torch.Tensor]:
        """``text``'s unit direction from the model's source text, per teacher."""
        if clip_models is None:
            raise StylenadaError(f"{text!r} is not one of the model's targets ({', '.join(self.targets)}): a new text "
                                 f"needs the model's CLIP teachers ({', '.join(self.clip)})")
        device = self.conditions.device
        directions = [m.text_direction(self.source, text, self.templates).to(device) for m, _ in clip_models]
        if len(directions) != len(self.cond_dims):
            raise StylenadaError(f"the model was trained with {len(self.cond_dims)} CLIP teacher(s), got "
                                 f"{len(directions)}: load its teachers ({', '.join(self.clip)})")
        return directions

    def teacher_directions(self) -> list[torch.Tensor]:
        """The training targets' unit directions per teacher, [T, D_t] each (from the stored inputs)."""
        return [F.normalize(part, dim=-1) for part in self.conditions.split(self.cond_dims, dim=1)]

    def nearest_blend(self, directions: list[torch.Tensor], steps: int = 20) -> tuple[torch.Tensor, dict]:
        """The input of the trained blend ``normalise(a d_i + (1 - a) d_j)`` of two targets' directions (per
        teacher; a in steps of 1/steps, a = 1 being target i itself) most aligned with ``directions`` (summed
        cosine over the teachers), and which blend it is. A new text enters the model where the model was
        trained (its targets and, with ``target_mixing``, the blends between them) instead of at an input it
        never saw."""
        train = self.teacher_directions()
        a = torch.linspace(0, 1, steps + 1, device=self.conditions.device)
        best, choice = None, {}
        for i in range(len(self.targets)):
            for j in range(i + 1, len(self.targets)):  # the ends a = 1 and a = 0 are the targets themselves
                blends = [F.normalize(a[:, None] * t[i] + (1 - a[:, None]) * t[j], dim=-1) for t in train]
                score = sum(b @ F.normalize(d.float(), dim=-1) for b, d in zip(blends, directions, strict=True))
                k = int(score.argmax())
                if best is None or score[k] > best[0]:
                    best = (score[k], [b[k] for b in blends])
                    choice = {self.targets[i]: float(a[k]), self.targets[j]: float(1 - a[k])}
        return text_condition(best[1]), {t: w for t, w in choice.items() if w > 0}

    @property
    def cond_dims(self) -> list[int]:
        return list(self._cond_dims)

    @torch.no_grad()
    def domain(self, text: str, clip_models: list | None = None, new_text: str = "direct") -> Domain:
        """The offsets for ``text`` as a domain of the base generator (save it, add it, export it)."""
        offsets = self.hypernet.split(self.hypernet(self.condition(text, clip_models, new_text)[None])[0])
        return Domain({k: v.detach().float().cpu() for k, v in offsets.items()}, self.family, self.config,
                      scope="multidomain", source=self.source, target=text)

    def generator_for(self, G_base: Generator, text: str, clip_models: list | None = None,
                      strength: float = 1.0, new_text: str = "direct") -> Generator:
        """A copy of ``G_base`` adapted to ``text`` (at ``strength``; ``new_text``: see :meth:`condition`)."""
        return apply_domains(G_base, [(self.domain(text, clip_models, new_text), strength)],
                             source="the multi-domain model")

    def needs_clip(self, texts: list[str]) -> bool:
        known = {t.strip().lower() for t in self.targets}
        return any(t.strip().lower() not in known for t in texts)


def save_multidomain(model: MultiDomainModel, path: str | Path) -> Path:
    net = model.hypernet
    meta = {"kind": "multidomain", "version": MULTIDOMAIN_VERSION, "family": model.family, "config": model.config,
            "generator": model.generator, "clip": list(model.clip), "templates": model.templates,
            "source": model.source, "targets": list(model.targets), "rank": net.rank,
            "hidden": net.encoder[0].out_features, "cond_dim": net.cond_dim,
            "shapes": {k: list(v) for k, v in net.shapes.items()}, "cond_dims": model.cond_dims}
    tensors = {f"hypernet.{k}": v for k, v in net.state_dict().items()}
    tensors["conditions"] = model.conditions
    save_tensors(Path(path), tensors, meta)
    return Path(path)


def model_file(path: str | Path) -> Path:
    """The model file of a run folder (or the file itself)."""
    path = Path(path)
    return RunDir(path).multidomain if path.is_dir() else path


def load_multidomain(path: str | Path, device: str | torch.device = "cpu") -> MultiDomainModel:
    path = check_file(model_file(path))
    meta = read_metadata(path)
    if not isinstance(meta, dict) or meta.get("kind") != "multidomain":
        kind = meta.get("kind") if isinstance(meta, dict) else type(meta).__name__
        raise CheckpointError(f"{path}: holds a {kind!r}, not a multi-domain model (made by `stylenada train "
                              "--targets FILE`)")
    if meta.get("version", 1) > MULTIDOMAIN_VERSION:
        raise CheckpointError(f"{path}: written by a newer stylenada (multi-domain version {meta['version']}): "
                              "upgrade stylenada")
    try:
        tensors = load_checked_tensors(path, meta)
        net = DomainHypernet(int(meta["cond_dim"]), {k: tuple(v) for k, v in meta["shapes"].items()},
                             int(meta["rank"]), int(meta["hidden"]))
        net.load_state_dict({k[len("hypernet."):]: v for k, v in tensors.items() if k.startswith("hypernet.")})
        return MultiDomainModel(net.to(device).eval(), str(meta["family"]), dict(meta["config"]),
                                str(meta["generator"]), list(meta["clip"]), str(meta["templates"]),
                                str(meta["source"]), list(meta["targets"]), tensors["conditions"].to(device),
                                tuple(int(d) for d in meta["cond_dims"]))
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: the multi-domain model is incomplete or corrupt ({str(e)[:120]}); train it "
                              "again") from None


def load_base_generator(model: MultiDomainModel, checkpoint: str | Path | None = None,
                        device: str | torch.device = "cpu") -> Generator:
    """The generator the model offsets: ``checkpoint`` when given, else the one it was trained from."""
    path = Path(checkpoint) if checkpoint else Path(model.generator)
    if not path.exists():
        raise StylenadaError(f"the model's base generator {path} is not there: pass the generator it was trained "
                             "from as the CHECKPOINT argument")
    return load_generator(path, device=device)


class MultiDomainTrainer(Trainer):
    """Trains a :class:`MultiDomainModel` over ``cfg.targets`` (the trainer's loop, checkpoints and resume)."""

    def __init__(self, cfg, clip_models: list | None = None, resume: bool = False):
        super().__init__(cfg, clip_models=clip_models, resume=resume)
        # The fixed set of trained tensors: the strategy's layers (all / late k) within the --params scope.
        self.strategy.select(0, self.objective)
        base = dict(self.G_train.synthesis.named_parameters())
        shapes = {n: tuple(p.shape) for n, p in base.items() if p.requires_grad}
        self.G_train.requires_grad_(False)
        self.base = {n: base[n].detach() for n in shapes}
        self.conditions = text_condition(self.objective.directions).to(self.device)  # [T, C]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.hypernet = DomainHypernet(self.conditions.shape[1], shapes, cfg.multi_rank,
                                           cfg.multi_hidden).to(self.device)
        self.optimizer = generator_optimizer(list(self.hypernet.parameters()), cfg, self.device)

    def before_step(self, record: dict) -> None:
        pass  # a static source and a fixed set of layers

    def adapted_parameters(self, cond: torch.Tensor) -> dict[str, torch.Tensor]:
        """The trained tensors under the offsets of one condition [C] (with gradient to the model)."""
        offsets = self.hypernet.split(self.hypernet(cond[None])[0])
        return {name: self.base[name] + d for name, d in offsets.items()}

    def render(self, ws: torch.Tensor, cond: torch.Tensor, noise: list | None) -> torch.Tensor:
        """The adapted images of ``ws`` under the offsets of one condition [C] (with gradient to the model)."""
        with self.objective.autocast():
            return torch.func.functional_call(self.G_train.synthesis, self.adapted_parameters(cond), (ws,),
                                              {"noise_mode": self.cfg.noise_mode, "noise": noise}).float()

    def render_batch(self) -> tuple[torch.Tensor, torch.Tensor, tuple]:
        """The batch split among a few targets (each latent under its own target's direction); with
        ``target_mixing``, a group's direction is a random blend of two targets'."""
        cfg, obj, rng = self.cfg, self.objective, self.rng
        n, T = cfg.batch, len(cfg.targets)
        groups = min(T, max(1, n // 2))
        chosen = torch.randperm(T, generator=rng)[:groups]
        partner = torch.randint(T, (groups,), generator=rng)
        blend = torch.rand(groups, generator=rng)
        blended = torch.rand(groups, generator=rng) < cfg.target_mixing
        owner = torch.arange(n) * groups // n  # latent i belongs to group owner[i]
        ws = obj.sample_ws(n)
        noise = self.G_frozen.synthesis.sample_noise(n, rng, self.device) if cfg.noise_mode == "random" else None
        with torch.no_grad(), obj.autocast():
            img_frozen = self.G_frozen.synthesis(ws, noise_mode=cfg.noise_mode, noise=noise).float()
        directions, embeddings, images = [[] for _ in obj.directions], [[] for _ in obj.directions], []
        for g in range(groups):
            a = float(blend[g]) if blended[g] else 1.0
            i, j = int(chosen[g]), int(partner[g])
            rows = (owner == g).nonzero().squeeze(1).tolist()
            for t, (dirs, embs) in enumerate(zip(obj.directions, obj.target_embeddings, strict=True)):
                directions[t].append(F.normalize(a * dirs[i] + (1 - a) * dirs[j], dim=-1).expand(len(rows), -1))
                embeddings[t].append(F.normalize(a * embs[i] + (1 - a) * embs[j], dim=-1).expand(len(rows), -1))
            cond = text_condition([d[-1][0] for d in directions])
            group_noise = None if noise is None else [m[rows[0] : rows[-1] + 1] for m in noise]
            images.append(self.render(ws[rows[0] : rows[-1] + 1], cond, group_noise))
        return (torch.cat(images), img_frozen,
                ([torch.cat(d) for d in directions], [torch.cat(e) for e in embeddings]))

    def model(self) -> MultiDomainModel:
        cfg = self.cfg
        return MultiDomainModel(self.hypernet, self.G_frozen.family, self.G_frozen.cfg.to_dict(), cfg.generator,
                                list(cfg.clip), cfg.templates, cfg.source, list(cfg.targets), self.conditions,
                                tuple(d.shape[-1] for d in self.objective.directions))

    def save_trainable(self, path: Path) -> None:
        save_multidomain(self.model(), path)

    def load_trainable(self, path: Path) -> None:
        self.hypernet.load_state_dict(load_multidomain(path, self.device).hypernet.state_dict())

    def write_outputs(self) -> Path:
        return save_multidomain(self.model(), self.rundir.multidomain)

    @torch.no_grad()
    def sample_grid(self) -> torch.Tensor:
        """Fixed latents: the frozen generator on the top row, then one row per target (the first few)."""
        rows = [self.G_frozen.synthesis(self.fixed_ws, noise_mode="const")]
        for cond in self.conditions[:GRID_TARGETS]:
            rows.append(torch.func.functional_call(self.G_train.synthesis, self.adapted_parameters(cond),
                                                   (self.fixed_ws,), {"noise_mode": "const"}))
        return make_grid(torch.cat(rows).cpu(), ncols=len(self.fixed_ws))


__all__ = ["NEW_TEXT_MODES", "DomainHypernet", "MultiDomainModel", "MultiDomainTrainer", "load_base_generator",
           "load_multidomain", "save_multidomain", "text_condition"]
