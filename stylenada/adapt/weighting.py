"""Loss weightings: how the lambdas of the named loss terms (clip, l2, and any other weighted term)
combine them each step. Each weighting is built from the initial lambdas, ``{term: lambda}``.

``fixed``: the user's lambdas.

``learned``: the lambdas are parameters with their own optimiser (``optimizer_lambda``). Gradient
descent on ``sum(lambda_i * L_i)`` would drive every lambda to zero, so they are not trained on the
generator's loss. Each is the user's initial value times a bounded factor,

    lambda_i = lambda_i^0 * exp(s_i),   s_i = S * tanh(theta_i)   (so lambda_i^0 e^-S <= lambda_i <= lambda_i^0 e^S)

for every weighted term i (any number of them),

and ``theta`` ascends, with its own Adam, the concave problem

    J(s) = sum_i g_i * s_i - s_i^2 / (2 * tau),   g_i = tanh(log((L_i + eps) / (EMA(L_i) + eps)))

whose maximiser is ``s_i = tau * g_i``. ``g_i`` says how much a term has grown relative to its own
recent average (scale-free, bounded in (-1, 1), defined when a loss starts at 0): a term that grows
gains weight within a few steps, a term that falls loses some, and when the losses are steady every
lambda returns to the value the user gave. Positive, bounded, and no fixed point at zero.

``constrained``: minimise the other terms subject to ``L2 <= l2_budget``; lambda_l2 is the Lagrange
multiplier, kept positive as ``exp(log_mu)`` (clamped), and raised by dual ascent while the constraint
is violated, lowered while it holds; the other lambdas stay as given.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch

from ..errors import StylenadaError

WEIGHTINGS: dict[str, type[LossWeighting]] = {}


def register_weighting(name: str) -> Callable[[type[LossWeighting]], type[LossWeighting]]:
    def deco(cls: type[LossWeighting]) -> type[LossWeighting]:
        cls.name = name
        WEIGHTINGS[name] = cls
        return cls

    return deco


class LossWeighting:
    """Combines named loss terms; ``update`` is called once per step after the generator's backward."""

    name = "base"

    def __init__(self, initial: dict[str, float]):
        self.initial = {k: _check_lambda(f"lambda_{k}", v) for k, v in initial.items()}
        if self.initial.get("clip", 0) <= 0:
            raise StylenadaError("lambda_clip is 0, so nothing would change: give --lambda-clip > 0")

    @property
    def terms(self) -> tuple[str, ...]:
        return tuple(self.initial)

    def lambdas(self) -> dict[str, float]:
        return dict(self.initial)

    def lambda_tensors(self) -> dict[str, torch.Tensor]:
        return {k: torch.tensor(v) for k, v in self.lambdas().items()}

    def combine(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        missing = set(self.initial) - set(losses)
        if missing:
            raise ValueError(f"no value for the weighted loss term(s) {sorted(missing)}")
        lam = self.lambda_tensors()
        return sum(lam[k].to(losses[k].dtype).to(losses[k].device) * losses[k] for k in self.initial)

    def update(self, losses: dict[str, float]) -> None:
        """Adapt the lambdas to the step's (detached) loss values."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def _check_lambda(name: str, value: float) -> float:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise StylenadaError(f"{name} must be a finite number >= 0, got {value}")
    return float(value)


@register_weighting("fixed")
class FixedWeighting(LossWeighting):
    """The user's lambdas, unchanged."""

    def __init__(self, initial: dict[str, float], **_: object):
        super().__init__(initial)


@register_weighting("learned")
class LearnedWeighting(LossWeighting):
    """lambda_i = lambda_i^0 * exp(S * tanh(theta_i)), theta ascending J (module docstring) with its own Adam."""

    BOUND = math.log(10.0)  # S: each lambda stays within 10x of its initial value
    EPS = 1e-8  # loss floor of the growth signal (a loss that starts at exactly 0 is steady, not infinite)

    def __init__(self, initial: dict[str, float], lambda_lr: float = 0.05, temperature: float = 2.0,
                 ema_beta: float = 0.9, **_: object):
        super().__init__(initial)
        zero = [k for k, v in self.initial.items() if v <= 0]
        if zero:
            raise StylenadaError(f"learned weighting needs every initial lambda > 0; give --lambda-{zero[0]} > 0 "
                                 "(it scales what is learned)")
        if temperature <= 0 or not 0 <= ema_beta < 1:
            raise StylenadaError("learned weighting needs --lambda-temperature > 0 and 0 <= ema_beta < 1")
        self.start = torch.tensor(list(self.initial.values()), dtype=torch.float64)
        self.temperature, self.ema_beta = temperature, ema_beta
        self.theta = torch.nn.Parameter(torch.zeros(len(self.initial), dtype=torch.float64))
        self.optimizer_lambda = torch.optim.Adam([self.theta], lr=lambda_lr)
        self.ema: torch.Tensor | None = None

    def log_factors(self) -> torch.Tensor:
        return self.BOUND * torch.tanh(self.theta)

    def lambda_tensors(self) -> dict[str, torch.Tensor]:
        lam = self.start * self.log_factors().detach().exp()
        return {k: lam[i].float() for i, k in enumerate(self.initial)}

    def lambdas(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.lambda_tensors().items()}

    def growth(self, values: torch.Tensor) -> torch.Tensor:
        """g_i in (-1, 1): the log-ratio of each loss to its running average, squashed."""
        return torch.tanh(torch.log((values + self.EPS) / (self.ema + self.EPS)))

    def objective(self, growth: torch.Tensor) -> torch.Tensor:
        s = self.log_factors()
        return (growth * s).sum() - s.square().sum() / (2 * self.temperature)

    def update(self, losses: dict[str, float]) -> None:
        values = torch.tensor([losses[k] for k in self.initial], dtype=torch.float64).clamp_min(0)
        if not torch.isfinite(values).all():
            return
        if self.ema is None:
            self.ema = values.clone()
        self.optimizer_lambda.zero_grad()
        (-self.objective(self.growth(values))).backward()  # ascent on J
        self.optimizer_lambda.step()
        self.ema = self.ema_beta * self.ema + (1 - self.ema_beta) * values

    def state_dict(self) -> dict:
        return {"theta": self.theta.detach().clone(), "optimizer": copy.deepcopy(self.optimizer_lambda.state_dict()),
                "ema": None if self.ema is None else self.ema.clone()}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.theta.copy_(state["theta"])
        self.optimizer_lambda.load_state_dict(state["optimizer"])
        self.ema = state["ema"]


@register_weighting("constrained")
class ConstrainedWeighting(LossWeighting):
    """lambda_l2 = exp(log_mu) is a Lagrange multiplier for L2 <= l2_budget; the other lambdas are fixed."""

    LOG_MU_RANGE = (math.log(1e-4), math.log(1e4))

    def __init__(self, initial: dict[str, float], lambda_lr: float = 0.05, l2_budget: float = 0.05, **_: object):
        super().__init__(initial)
        l2 = self.initial.get("l2", 0.0)
        if l2 <= 0 or l2_budget <= 0:
            raise StylenadaError("constrained weighting needs --lambda-l2 > 0 and --l2-budget > 0")
        self.budget = l2_budget
        self.log_mu = torch.nn.Parameter(torch.tensor(math.log(l2), dtype=torch.float64))
        self.optimizer_lambda = torch.optim.Adam([self.log_mu], lr=lambda_lr)

    def lambdas(self) -> dict[str, float]:
        return {**self.initial, "l2": float(self.log_mu.detach().exp())}

    def update(self, losses: dict[str, float]) -> None:
        violation = (losses["l2"] - self.budget) / self.budget
        if not math.isfinite(violation):
            return
        self.optimizer_lambda.zero_grad()
        (-(self.log_mu.exp() * violation)).backward()  # dual ascent on mu * (L2 - budget)
        self.optimizer_lambda.step()
        with torch.no_grad():
            self.log_mu.clamp_(*self.LOG_MU_RANGE)

    def state_dict(self) -> dict:
        return {"log_mu": self.log_mu.detach().clone(), "optimizer": copy.deepcopy(self.optimizer_lambda.state_dict())}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.log_mu.copy_(state["log_mu"])
        self.optimizer_lambda.load_state_dict(state["optimizer"])


def make_weighting(name: str, initial: dict[str, float], **kwargs: object) -> LossWeighting:
    """Weighting ``name`` over the terms of ``initial`` ({term: initial lambda})."""
    if name not in WEIGHTINGS:
        raise StylenadaError(f"unknown weighting {name!r}; choose one of {', '.join(WEIGHTINGS)}")
    return WEIGHTINGS[name](initial, **kwargs)
