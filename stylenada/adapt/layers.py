"""Layer selection: which parameters of the trainable generator are updated, chosen by name.

``k`` always counts W+ entries, and an entry stands for every layer it drives (its modulated conv and,
with ``train_torgb``, the ToRGB it modulates), so ``k = num_ws`` trains everything the entries drive.

``none``                   nothing trains (the control of a study).
``all``                    every synthesis layer (const, modulated convs and ToRGBs); mapping frozen.
``late``                   the layers driven by the last ``k`` W+ entries (the fine ones), fixed once.
``adaptive``               every ``interval`` steps, optimise W+ codes alone toward the target for a
                           few steps, rank W+ entries by mean |change| and unfreeze the layers the top
                           ``k`` entries drive (the original method).
``adaptive_fine_grained``  the same choice, but only the modulation (affine) and noise-strength
                           parameters of the chosen layers train.
``adaptive_param``         every ``interval`` steps, one normalised gradient step of a copy of the
                           trainable generator on the training objective; the elements (or, at tensor
                           level, the tensors by relative change) that moved most, up to a share of the
                           parameters, are the only ones updated next, through gradient masks.

The selection never runs when it cannot change anything (``k`` covers every entry). Each strategy
returns a :class:`Selection` naming what trains, which the trainer logs.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..errors import StylenadaError
from ..models.family import Generator
from .domains import scope_members

if TYPE_CHECKING:
    from .trainer import NadaObjective

STRATEGIES: dict[str, type[LayerStrategy]] = {}
PARAM_LEVELS = ("element", "tensor")  # adaptive_param: rank single parameters, or whole tensors


def register_strategy(name: str) -> Callable[[type[LayerStrategy]], type[LayerStrategy]]:
    def deco(cls: type[LayerStrategy]) -> type[LayerStrategy]:
        cls.name = name
        STRATEGIES[name] = cls
        return cls

    return deco


@dataclass
class SelectionConfig:
    """Options shared by the strategies (each reads the ones it needs)."""

    k: int | None = None  # W+ entries whose layers train (adaptive, late); None: all (the paper's k=18 @1024)
    # Re-select every this many steps. The paper re-selects every step; on the shapes world every 1, 2, 4 and 8
    # steps gave the same success and preservation (and selecting once did worse), the chosen layers overlap
    # ~0.9 from one selection to the next, and a selection costs more than a step at 256 px
    # (benchmarks/reselection.py, docs/benchmarks.md "Re-selection interval").
    interval: int = 4
    w_steps: int = 1  # W+ optimisation steps per selection (the paper's auto_layer_iters)
    w_batch: int = 8  # latents in the W+ optimisation (auto_layer_batch)
    w_lr: float = 0.01  # SGD step size of the W+ optimisation
    w_loss: str = "global"  # what the W+ codes are optimised on: 'global' (official) or 'directional'
    chunk: int = 2  # latents per forward/backward pass in selection (gradients accumulate; saves memory)
    param_level: str = "element"  # adaptive_param: 'element' or 'tensor'
    param_fraction: float = 0.25  # adaptive_param: share of the candidate parameters (elements) that train
    inner_steps: int = 1  # adaptive_param: normalised gradient steps on the copy
    inner_lr: float = 0.01  # adaptive_param: RMS size of the probe's step (in parameter units)
    train_torgb: bool = True  # the ToRGB layers are driven by W+ entries too, and train with them
    params: str = "full"  # which parameters of the chosen layers train: full or a domains.PARAM_SCOPES scope


@dataclass
class Selection:
    step: int
    layers: list[str]  # synthesis layer names that receive updates
    fraction: dict[str, float] = field(default_factory=dict)  # share of each layer's parameters that trains
    scores: list[float] | None = None  # per W+ entry (adaptive) or per layer (adaptive_param)

    trained_parameters: int = 0  # synthesis parameter elements that receive updates

    def to_json(self) -> dict:
        return {"step": self.step, "layers": self.layers, "fraction": self.fraction, "scores": self.scores,
                "trained_parameters": self.trained_parameters}


def trainable_layers(G: Generator, train_torgb: bool = False) -> dict[str, nn.Module]:
    """The layers a strategy may train: every modulated conv (and the ToRGBs when asked), by name, in the
    generator's layout order. Other roles (StyleGAN3's Fourier ``input``) are not chosen by W+ entry; ``all``
    trains their 'input' parameters, as it does StyleGAN2's const."""
    return {slot.name: G.synthesis.get_submodule(slot.name) for slot in G.cfg.layout()
            if slot.role == "conv" or (train_torgb and slot.role == "torgb")}


def freeze_all(G: Generator) -> None:
    """Freeze the synthesis network (the mapping's training is the trainer's business, not a strategy's)."""
    G.synthesis.requires_grad_(False)


def layer_fraction(G: Generator, names: list[str],
                   param_filter: Callable[[str], bool] | None = None) -> dict[str, float]:
    """Share of each named layer's parameter elements that ``param_filter`` (given the parameter's full
    synthesis name) accepts: what trains of each layer."""
    out = {}
    for name in names:
        mod = G.synthesis.get_submodule(name)
        total = sum(p.numel() for p in mod.parameters())
        on = sum(p.numel() for n, p in mod.named_parameters() if param_filter is None or param_filter(f"{name}.{n}"))
        out[name] = on / max(total, 1)
    return out


class LayerStrategy:
    """Base: ``select(step, objective)`` sets requires_grad (and masks) on the trainable generator."""

    name = "base"
    adaptive = False

    def __init__(self, G_train: Generator, cfg: SelectionConfig):
        self.G, self.cfg = G_train, cfg
        self.layers = trainable_layers(G_train, cfg.train_torgb)
        num_ws = G_train.num_ws
        if cfg.k is not None and not 1 <= cfg.k <= num_ws:
            raise StylenadaError(f"--k counts W+ entries: give 1 <= k <= {num_ws} for this {G_train.resolution} px "
                                 f"generator, got {cfg.k}")
        # Entries that drive something trainable (without ToRGB training, the last drives nothing).
        self.entries = [i for i in range(num_ws) if layers_for_w_indices(G_train, [i], cfg.train_torgb)]
        self.k = len(self.entries) if cfg.k is None else min(cfg.k, len(self.entries))
        if cfg.w_loss not in ("global", "directional"):
            raise StylenadaError(f"--w-loss must be 'global' or 'directional', got {cfg.w_loss!r}")
        if cfg.interval < 1:
            raise StylenadaError(f"--selection-interval must be >= 1, got {cfg.interval}")
        self._hooks: list = []
        self._masks: dict[str, torch.Tensor] = {}  # parameter name (in G.synthesis) -> 0/1 gradient mask

    def due(self, step: int) -> bool:
        return step == 0 or (self.adaptive and self.reselects() and step % self.cfg.interval == 0)

    def reselects(self) -> bool:
        """True when a re-selection could choose something else (overridden by the adaptive strategies)."""
        return self.adaptive

    def select(self, step: int, objective: NadaObjective) -> Selection | None:
        if not self.due(step):
            return None
        selection = self._select(step, objective)
        if self.cfg.params != "full":  # a compact domain: only the scope's parameters of the chosen layers
            keep = scope_members(self.G, self.cfg.params)
            for name, p in self.G.synthesis.named_parameters():
                if p.requires_grad and name not in keep:
                    p.requires_grad_(False)
        selection.trained_parameters = self.trained_parameters()
        return selection

    def trained_parameters(self) -> int:
        """Synthesis parameter elements that train now (masked elements of adaptive_param excluded)."""
        return sum(int(self._masks[n].sum()) if n in self._masks else p.numel()
                   for n, p in self.G.synthesis.named_parameters() if p.requires_grad)

    def _select(self, step: int, objective: NadaObjective) -> Selection:
        raise NotImplementedError

    def _train_layers(self, step: int, names: list[str], only: Callable[[str], bool] | None = None,
                      scores: list[float] | None = None) -> Selection:
        """Train the named layers' parameters (those whose role ``only`` accepts, given the role name)."""
        freeze_all(self.G)
        role = self.G.synthesis.parameter_role
        for name in names:
            for pname, p in self.layers[name].named_parameters():
                if only is None or only(role(f"{name}.{pname}")):
                    p.requires_grad_(True)
        keep = (lambda pname: only(role(pname))) if only is not None else None  # noqa: E731
        return Selection(step, list(names), layer_fraction(self.G, names, keep), scores)

    def _set_masks(self, masks: dict[str, torch.Tensor]) -> None:
        """Multiply the gradients of the named synthesis parameters by 0/1 masks (element-level choice)."""
        for h in self._hooks:
            h.remove()
        self._hooks, self._masks = [], dict(masks)
        for name, mask in masks.items():
            self._hooks.append(self.G.synthesis.get_parameter(name).register_hook(lambda g, m=mask: g * m))

    def state_dict(self) -> dict:
        """What trains now, so a resumed run continues with the same choice."""
        return {"trainable": [n for n, p in self.G.named_parameters() if p.requires_grad],
                "masks": {n: m.clone() for n, m in self._masks.items()}}

    def load_state_dict(self, state: dict) -> None:
        keep = set(state["trainable"])
        for n, p in self.G.named_parameters():
            p.requires_grad_(n in keep)
        self._set_masks(state.get("masks", {}))


@register_strategy("none")
class NoLayers(LayerStrategy):
    """Trains nothing: the control run of a study (the adapted generator stays the source generator)."""

    def _select(self, step, objective):
        return self._train_layers(step, [])


@register_strategy("all")
class AllLayers(LayerStrategy):
    """Every synthesis layer: the baseline (the const input too; ToRGBs with ``train_torgb``)."""

    def _select(self, step, objective):
        sel = self._train_layers(step, list(self.layers))
        for name, p in self.G.synthesis.named_parameters():
            if self.G.synthesis.parameter_role(name) == "input":
                p.requires_grad_(True)
                sel.layers.insert(0, name)
                sel.fraction[name] = 1.0
        return sel


@register_strategy("late")
class LateLayers(LayerStrategy):
    """The layers driven by the last ``k`` W+ entries (default: the later half), chosen once."""

    def _select(self, step, objective):
        k = self.k if self.cfg.k is not None else max(1, len(self.entries) // 2)
        return self._train_layers(step, layers_for_w_indices(self.G, self.entries[-k:], self.cfg.train_torgb))


def w_plus_scores(G_train: Generator, objective: NadaObjective, cfg: SelectionConfig) -> torch.Tensor:
    """Mean |change| of each W+ entry after ``w_steps`` SGD steps of the codes alone toward the target."""
    ws0 = objective.sample_ws(cfg.w_batch).detach()
    w = ws0.clone().requires_grad_(True)
    opt = torch.optim.SGD([w], lr=cfg.w_lr)
    n = len(ws0)
    for _ in range(cfg.w_steps):
        grad = torch.zeros_like(w)
        # The loss is a mean over latents, so chunks of it give the same gradient with less memory.
        # Gradients flow to the codes only: the generator's and CLIP's weights get none.
        for idx in torch.arange(n).split(max(cfg.chunk, 1)):
            wc = w[idx]
            loss = objective.selection_loss(G_train, wc, ws0[idx]) * (len(idx) / n)
            (g,) = torch.autograd.grad(loss, [wc])
            grad[idx] = g
        w.grad = grad
        opt.step()
    return (w.detach() - ws0).abs().mean(dim=-1).mean(dim=0)  # [num_ws]


def layers_for_w_indices(G: Generator, indices: list[int], train_torgb: bool) -> list[str]:
    """The synthesis layers driven by the given W+ indices, in synthesis order (each index drives one
    conv and, from index 1 on, the ToRGB of the block before; the last drives only the final ToRGB)."""
    chosen = set(indices)
    return [slot.name for slot in G.cfg.layout()
            if slot.w_index in chosen and (slot.role == "conv" or (train_torgb and slot.role == "torgb"))]


@register_strategy("adaptive")
class AdaptiveLayers(LayerStrategy):
    adaptive = True
    only: Callable[[str], bool] | None = None

    def reselects(self) -> bool:
        return self.k < len(self.entries)

    def _select(self, step, objective):
        if self.k >= len(self.entries):  # every entry is chosen whatever the scores: skip the W+ optimisation
            names = layers_for_w_indices(self.G, self.entries, self.cfg.train_torgb)
            return self._train_layers(step, names, self.only)
        was = {n: p.requires_grad for n, p in self.G.named_parameters()}
        scores = w_plus_scores(self.G, objective, self.cfg)
        for n, p in self.G.named_parameters():
            p.requires_grad_(was[n])
        ranked = scores[self.entries]
        chosen = [self.entries[i] for i in torch.topk(ranked, self.k).indices.tolist()]
        names = layers_for_w_indices(self.G, chosen, self.cfg.train_torgb)
        return self._train_layers(step, names, self.only, scores.tolist())


def _is_modulation_or_noise(role: str) -> bool:
    return role in ("affine", "noise")


@register_strategy("adaptive_fine_grained")
class AdaptiveFineGrained(AdaptiveLayers):
    only = staticmethod(_is_modulation_or_noise)


@register_strategy("adaptive_param")
class AdaptiveParameters(LayerStrategy):
    adaptive = True

    def __init__(self, G_train: Generator, cfg: SelectionConfig):
        super().__init__(G_train, cfg)
        if cfg.param_level not in PARAM_LEVELS:
            raise StylenadaError(f"--param-level must be 'tensor' or 'element', got {cfg.param_level!r}")
        if not 0 < cfg.param_fraction <= 1:
            raise StylenadaError(f"--param-fraction must be in (0, 1], got {cfg.param_fraction}")

    def reselects(self) -> bool:
        return self.cfg.param_fraction < 1

    def candidates(self) -> dict[str, nn.Parameter]:
        return {f"{ln}.{pn}": p for ln, layer in self.layers.items() for pn, p in layer.named_parameters()}

    def probe_change(self, objective: NadaObjective) -> dict[str, torch.Tensor]:
        """How much each candidate element moves under ``inner_steps`` gradient steps of a copy of the
        trainable generator on the training objective (the one the trainer minimises). Each step is the
        gradient divided by its global RMS (times ``inner_lr``): relative sizes are kept, and the probe
        stays well-behaved when the gradient's scale is extreme (the first step, where the image change
        is zero)."""
        cands = self.candidates()
        probe = copy.deepcopy(self.G)
        probe.requires_grad_(False)
        probe_params = {n: probe.synthesis.get_parameter(n) for n in cands}
        for p in probe_params.values():
            p.requires_grad_(True)
        for _ in range(self.cfg.inner_steps):
            ws = objective.sample_ws(self.cfg.w_batch).detach()
            for p in probe_params.values():
                p.grad = None
            for chunk in ws.split(max(self.cfg.chunk, 1)):  # accumulate: same gradient, less memory
                (objective.objective(probe, chunk) * (len(chunk) / len(ws))).backward()
            grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in probe_params.values()]
            rms = torch.cat([g.flatten() for g in grads]).square().mean().sqrt().clamp_min(1e-30)
            with torch.no_grad():
                for p, g in zip(probe_params.values(), grads, strict=True):
                    p.sub_(self.cfg.inner_lr * g / rms)
        delta = {n: (probe_params[n].detach() - cands[n].detach()).abs() for n in cands}
        del probe
        return delta

    def _select(self, step, objective):
        cands = self.candidates()
        delta = self.probe_change(objective)
        freeze_all(self.G)
        total = sum(p.numel() for p in cands.values())
        budget = max(1, round(self.cfg.param_fraction * total))
        masks = {}
        if self.cfg.param_level == "tensor":
            # Relative change ||delta|| / ||p||: scale-free, so a scalar noise strength or a bias with a large
            # summed gradient does not outrank a weight tensor by raw size. Whole tensors are taken in that
            # order until the parameter budget is spent.
            names = list(delta)
            rel = torch.stack([delta[n].norm() / cands[n].detach().norm().clamp_min(1e-12) for n in names])
            keep, used = set(), 0
            for i in torch.argsort(rel, descending=True).tolist():
                if used >= budget:
                    break
                keep.add(names[i])
                used += cands[names[i]].numel()
            for n in keep:
                cands[n].requires_grad_(True)
            frac_of = {n: float(n in keep) for n in names}
            scores = rel
        else:
            flat = torch.cat([d.flatten() for d in delta.values()])
            threshold = torch.topk(flat, budget).values.min()
            frac_of = {}
            for n, d in delta.items():
                mask = (d >= threshold).to(d.dtype)
                frac_of[n] = float(mask.mean())
                if mask.any():
                    cands[n].requires_grad_(True)
                    masks[n] = mask
            scores = torch.tensor([float(d.mean()) for d in delta.values()])
        self._set_masks(masks)
        layer_names = [ln for ln in self.layers if any(frac_of[n] > 0 for n in cands if n.startswith(ln + "."))]
        fraction = {}
        for ln in self.layers:
            sizes = [(cands[n].numel(), frac_of[n]) for n in cands if n.startswith(ln + ".")]
            fraction[ln] = sum(s * f for s, f in sizes) / max(sum(s for s, _ in sizes), 1)
        return Selection(step, layer_names, fraction, scores.tolist())


def make_strategy(name: str, G_train: Generator, cfg: SelectionConfig) -> LayerStrategy:
    if name not in STRATEGIES:
        raise StylenadaError(f"unknown layer strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    return STRATEGIES[name](G_train, cfg)
