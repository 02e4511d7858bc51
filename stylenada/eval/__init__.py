"""``stylenada evaluate``: measure an adapted generator against its frozen source on fixed latents."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..clip.models import DEFAULT_CLIP
from ..errors import StylenadaError
from ..models.sampling import sample_images
from ..utils.rundir import RunDir
from .metrics import METRICS, EvalContext


@dataclass
class EvalTarget:
    """Everything needed to evaluate one adapted generator."""

    adapted: Path
    frozen: Path
    source: str | None
    target: str | None
    clip: list[str]
    templates: str
    run_dir: Path | None


def resolve_target(run_or_ckpt: str | Path, source_generator: str | None = None, source: str | None = None,
                   target: str | None = None, clip: list[str] | None = None,
                   templates: str | None = None) -> EvalTarget:
    """A run folder supplies its frozen generator, texts and CLIP models; a checkpoint needs them given."""
    path = Path(run_or_ckpt)
    if path.is_dir():
        run = RunDir.open(path)
        cfg = run.load_config()
        adapted = run.adapted_generator()
        if adapted is None:
            raise StylenadaError(f"{path} has no generator yet (no generator.safetensors or checkpoint): "
                                 "let the run finish or resume it")
        final_source = json.loads(run.summary.read_text()).get("source_text") if run.summary.exists() else None
        return EvalTarget(adapted, Path(source_generator or cfg["generator"]),
                          source or final_source or cfg.get("source"), target or cfg.get("target"),
                          clip or cfg.get("clip") or [DEFAULT_CLIP], templates or cfg.get("templates", "imagenet"),
                          path)
    if not path.exists():
        raise StylenadaError(f"not found: {path} (pass a run folder or an adapted generator checkpoint)")
    if source_generator is None:
        raise StylenadaError(f"{path} is a checkpoint, not a run folder: pass --source-generator with the "
                             "generator it was adapted from")
    return EvalTarget(path, Path(source_generator), source, target, clip or [DEFAULT_CLIP],
                      templates or "imagenet", None)


# Known-answer metrics of a domain (registered by plugins, e.g. the shapes world's): each hook gets the
# evaluation target, both generators, the CLIP models, n, seed and the --task name, and returns
# (key, metrics) when it knows the run's task, else None.
TaskMetricsHook = Callable[..., "tuple[str, dict] | None"]
TASK_METRICS: list[TaskMetricsHook] = []


def register_task_metrics(fn: TaskMetricsHook) -> TaskMetricsHook:
    TASK_METRICS.append(fn)
    return fn


def task_metric_hooks() -> list[TaskMetricsHook]:
    from ..plugins import load_plugins

    load_plugins()
    return TASK_METRICS


def _face_identity(faces: bool | str, G_frozen):
    """A FaceIdentity when asked for (True), or when "auto" and it is installed and the generator makes faces."""
    from .identity import FaceIdentity

    if faces is False or (faces == "auto" and G_frozen.resolution < 128):
        return None
    try:
        fid = FaceIdentity()
    except StylenadaError:
        if faces is True:
            raise
        return None
    if faces == "auto":
        found = [d is not None for d in fid.descriptors(sample_images(G_frozen, 4, seed=12345, truncation=0.7))]
        return fid if sum(found) >= 2 else None
    return fid


@torch.no_grad()
def evaluate(run_or_ckpt: str | Path, *, source_generator: str | None = None, source: str | None = None,
             target: str | None = None, clip: list[str] | None = None, templates: str | None = None,
             n: int = 64, seed: int = 0, truncation: float = 1.0, reference: str | Path | None = None,
             task: str | None = None, metrics: list[str] | None = None, device: str = "cpu",
             clip_models: list | None = None, faces: bool | str = "auto") -> dict:
    """Every registered metric (or ``metrics``) on ``n`` latents drawn from ``seed``; JSON-ready dict.

    ``faces``: identity similarity with dlib's face-recognition model; "auto" uses it when it is installed
    and the frozen generator's first samples contain faces, True requires it. ``task``: a known-answer task
    of a registered domain (the shapes world's colour, style, shape), else detected from the texts.
    """
    from ..adapt.trainer import load_clip_models, load_target_images
    from ..formats import load_generator

    t = resolve_target(run_or_ckpt, source_generator, source, target, clip, templates)
    G_frozen = load_generator(t.frozen, device=device).eval()
    G_adapted = load_generator(t.adapted, device=device).eval()
    if (G_frozen.resolution, G_frozen.num_ws) != (G_adapted.resolution, G_adapted.num_ws):
        raise StylenadaError(f"{t.adapted} ({G_adapted.resolution} px) was not adapted from {t.frozen} "
                             f"({G_frozen.resolution} px): pass the right --source-generator")
    models = clip_models if clip_models is not None else load_clip_models(t.clip, device)
    ref = load_target_images(reference) if reference is not None else None
    ctx = EvalContext(sample_images(G_frozen, n, seed, truncation), sample_images(G_adapted, n, seed, truncation),
                      models, t.source, t.target, t.templates, ref, face_identity=_face_identity(faces, G_frozen))
    names = metrics or list(METRICS)
    unknown = [m for m in names if m not in METRICS]
    if unknown:
        raise StylenadaError(f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(METRICS)}")
    result: dict = {"adapted": str(t.adapted), "frozen": str(t.frozen), "source": t.source, "target": t.target,
                    "n": n, "seed": seed, "truncation": truncation, "clip": ctx.model_names()}
    for name in names:
        value = METRICS[name](ctx)
        if value:
            result[name] = value
    for hook in task_metric_hooks():
        found = hook(t, G_frozen, G_adapted, models, n, seed, task)
        if found is not None:
            result[found[0]] = found[1]
    return result


def flatten(d: dict, prefix: str = "") -> dict[str, object]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``, for tables."""
    out: dict[str, object] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def format_table(result: dict) -> str:
    rows = [(k, f"{v:.4f}" if isinstance(v, float) else str(v)) for k, v in flatten(result).items()]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


__all__ = ["EvalTarget", "evaluate", "flatten", "format_table", "resolve_target"]
