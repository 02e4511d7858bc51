"""The training configuration: one typed dataclass, filled from the command line or a YAML file."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..clip.models import DEFAULT_CLIP
from ..clip.templates import TEMPLATE_SETS
from ..errors import StylenadaError
from ..models.family import NOISE_MODES
from .domains import PARAM_SCOPES
from .layers import PARAM_LEVELS, STRATEGIES, SelectionConfig
from .source_text import SOURCE_TEXT_MODES
from .weighting import WEIGHTINGS

PRECISIONS = ("fp32", "bf16")
# How a text that is not one of a multi-domain model's targets enters it: its own direction, or the nearest
# trained blend of two targets (adapt/multidomain.py).
NEW_TEXT_MODES = ("direct", "blend")


def choices() -> dict[str, tuple[str, ...]]:
    """The allowed values of every option that takes a name, from the registries (the CLI offers these)."""
    return {"layers": tuple(STRATEGIES), "weighting": tuple(WEIGHTINGS), "templates": tuple(TEMPLATE_SETS),
            "source_text": SOURCE_TEXT_MODES, "noise_mode": NOISE_MODES, "precision": PRECISIONS,
            "param_level": PARAM_LEVELS, "params": tuple(PARAM_SCOPES)}


def _checked(name: str, value: object, spec: dataclasses.Field) -> object:
    """``value`` if it fits the option's declared type (ints given where floats are wanted are fine),
    else one clear StylenadaError."""
    hint = str(spec.type)
    flag = "--" + name.replace("_", "-")
    if value is None:
        if "None" in hint:
            return None
        raise StylenadaError(f"{flag}: a value is required, got nothing")
    if hint.startswith("dict"):
        if not isinstance(value, dict):
            raise StylenadaError(f"{flag}: expected a mapping of names to numbers, got {value!r}")
        return dict(value)
    if hint.startswith("list"):
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or not all(isinstance(v, str) for v in items):
            raise StylenadaError(f"{flag}: expected text or a list of texts, got {value!r}")
        return list(items)
    if hint.startswith("bool"):
        if not isinstance(value, bool):
            raise StylenadaError(f"{flag}: expected true or false, got {value!r}")
        return value
    if hint.startswith("int"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise StylenadaError(f"{flag}: expected a whole number, got {value!r}")
        return value
    if hint.startswith("float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise StylenadaError(f"{flag}: expected a number, got {value!r}")
        return float(value)
    if hint.startswith("str"):
        if not isinstance(value, (str, Path)):
            raise StylenadaError(f"{flag}: expected text, got {value!r}")
        return str(value)
    return value


@dataclass
class TrainConfig:
    """Everything a NADA run depends on; saved as ``config.json`` in the run folder."""

    generator: str = ""  # checkpoint of the source generator (any supported format)
    source: str = "photo"  # source text (the starting value with dynamic source text)
    target: str = ""  # target text; or leave empty and give target_images
    target_images: str | None = None  # folder of target-domain images (image-guided mode)
    # Several target texts: one run trains one multi-domain model (adapt/multidomain.py) that renders each of
    # them, and new texts between them, instead of one adapted generator (``--targets FILE``, a text a line).
    targets: list[str] = field(default_factory=list)
    multi_rank: int = 8  # multi-domain model: learned basis domains the text embedding mixes
    multi_hidden: int = 256  # multi-domain model: width of the text-to-mixture network
    # multi-domain model: share of the batch's groups trained on a blend of two targets' directions (the inputs a
    # new text is rendered at; benchmarks/multidomain.py)
    target_mixing: float = 0.5
    out: str = "runs/adapt"
    clip: list[str] = field(default_factory=lambda: [DEFAULT_CLIP])  # 'name:pretrained[@weight]'
    templates: str = "imagenet"  # 'imagenet' (80 averaged), 'single' ("a photo of a {}"), 'none' (as given)

    iters: int = 300
    max_seconds: float = 0.0  # stop after the step that passes this much training time (0: no limit)
    batch: int = 2
    lr: float = 0.002  # scaled by g_reg_every / (g_reg_every + 1), as the official code does
    g_reg_every: int = 4
    seed: int = 0
    truncation: float = 1.0  # truncation of the training latents
    mixing: float = 0.0  # style-mixing probability of the training latents
    noise_mode: str = "random"  # fresh noise each step, the same for both generators; 'const': fixed maps
    train_mapping: bool = False
    precision: str = "fp32"  # 'fp32' or 'bf16' (autocast of the generators; CLIP always runs in fp32)
    # Recompute the trainable generator's layer activations in the backward pass instead of storing them:
    # less peak memory for about one more forward pass of time.
    activation_checkpointing: bool = False
    # CPU: return freed memory to the OS after each use instead of recycling it (utils/runtime.py): the least
    # peak memory (recycled blocks fragment the heap), but each step pays the page faults again (much slower).
    release_memory: bool = False

    layers: str = "adaptive"  # one of STRATEGIES
    selection: SelectionConfig = field(default_factory=SelectionConfig)

    weighting: str = "fixed"  # one of WEIGHTINGS
    lambda_clip: float = 1.0
    lambda_l2: float = 0.0
    lambda_global: float = 0.0  # optional global CLIP loss (image vs target text)
    lambdas: dict[str, float] = field(default_factory=dict)  # weights of further registered loss terms
    lambda_lr: float = 0.05  # step size of optimizer_lambda (learned / constrained weighting)
    l2_budget: float = 0.05  # constrained weighting: allowed mean squared pixel change
    lambda_temperature: float = 2.0  # learned weighting: log-weight change per unit of growth signal

    source_text: str = "static"  # 'static' or 'dynamic'
    source_candidates: str | None = None  # built-in list name or comma-separated captions
    source_interval: int = 50
    source_batch: int = 8

    sample_every: int = 50
    n_samples: int = 8
    sample_truncation: float = 0.7
    checkpoint_every: int = 100  # also one after the first step, so that an early stop can resume
    keep_checkpoints: int = 2  # newest checkpoints kept in checkpoints/ (0: all)
    export_rosinality: bool = False
    tensorboard: bool = True
    device: str = "auto"  # 'auto' (the GPU when there is one), 'cpu', 'cuda', 'cuda:1', ...

    def __post_init__(self) -> None:
        # Paths may be given as Path objects; the saved config holds plain strings.
        for name in ("generator", "out", "target_images"):
            v = getattr(self, name)
            if v is not None and not isinstance(v, str):
                setattr(self, name, str(v))
        if isinstance(self.selection, dict):
            self.selection = SelectionConfig(**self.selection)
        if isinstance(self.clip, str):
            self.clip = [self.clip]
        else:
            self.clip = list(self.clip)

    def loss_weights(self) -> dict[str, float]:
        """Initial weight of each loss term the run evaluates: clip and l2 always, others when weighted."""
        weights = {"clip": self.lambda_clip, "l2": self.lambda_l2}
        if self.lambda_global > 0:
            weights["global"] = self.lambda_global
        weights.update({k: float(v) for k, v in self.lambdas.items() if v > 0})
        return weights

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """From a mapping of option names: the field names or the command line's spellings (``sample-every``,
        ``k``, ``selection-interval``), selection options flat or under ``selection``; each value is checked
        against the option's type."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        sel_fields = {f.name: f for f in dataclasses.fields(SelectionConfig)}
        aliases = {"selection_interval": "interval"}
        top, sel = {}, {}
        nested = d.get("selection") or {}
        if not isinstance(nested, dict):
            if isinstance(nested, SelectionConfig):
                nested = dataclasses.asdict(nested)
            else:
                raise StylenadaError(f"'selection' must be a mapping of selection options, got {nested!r}")
        items = [(k, v, False) for k, v in d.items() if k != "selection"] + [(k, v, True) for k, v in nested.items()]
        unknown = []
        for key, value, in_selection in items:
            name = aliases.get(str(key).replace("-", "_").lstrip("_"), str(key).replace("-", "_").lstrip("_"))
            if name in fields and not in_selection:
                top[name] = _checked(name, value, fields[name])
            elif name in sel_fields:
                sel[name] = _checked(name, value, sel_fields[name])
            else:
                unknown.append(key)
        if unknown:
            raise StylenadaError(f"unknown option(s) {sorted(map(str, unknown))}; valid: {sorted(fields)} and the "
                                 f"selection options {sorted(sel_fields)}")
        return cls(selection=SelectionConfig(**sel), **top)

    @classmethod
    def from_file(cls, path: str | Path) -> TrainConfig:
        path = Path(path)
        if not path.exists():
            raise StylenadaError(f"config file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise StylenadaError(f"{path}: not valid YAML/JSON ({str(e).splitlines()[0]})") from e
        if not isinstance(data, dict):
            raise StylenadaError(f"{path}: expected a mapping of option names to values")
        return cls.from_dict(data)

    def save(self, path: str | Path) -> None:
        from ..utils.io import atomic_write_text

        atomic_write_text(path, json.dumps(self.to_dict(), indent=2))

    def validate(self) -> None:
        """Raise StylenadaError naming the first bad option and how to fix it."""
        if not self.generator:
            raise StylenadaError("no generator given: pass --generator CKPT")
        if not self.source.strip():
            raise StylenadaError("empty source text: give a non-empty --source (e.g. 'photo')")
        if self.target_images is not None:
            folder = Path(self.target_images)
            if not folder.is_dir():
                raise StylenadaError(f"target image folder not found: {folder} (--target-images)")
            if not any(p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp", ".bmp") for p in folder.iterdir()):
                raise StylenadaError(f"no images (.png/.jpg/.webp/.bmp) in {folder}: add target-domain examples")
        if self.targets:
            self._validate_targets()
        elif self.target_images is None and not self.target.strip():
            raise StylenadaError("empty target text: give a non-empty --target, or --target-images DIR")
        if self.target_images is None and not self.targets \
                and self.source.strip().lower() == self.target.strip().lower() and self.source_text == "static":
            raise StylenadaError(f"source and target texts are identical ({self.source!r}): nothing to adapt to")
        for name, allowed in choices().items():
            value = getattr(self.selection if name in ("param_level", "params") else self, name)
            if value not in allowed:
                flag = "--" + name.replace("_", "-")
                raise StylenadaError(f"unknown {flag} {value!r}; choose one of {', '.join(allowed)}")
        if self.train_mapping and self.selection.params != "full":
            raise StylenadaError(f"--params {self.selection.params} trains style offsets of the synthesis network "
                                 "only; drop --train-mapping (or use --params full)")
        if self.keep_checkpoints < 0:
            raise StylenadaError(f"--keep-checkpoints must be >= 0 (0 keeps all), got {self.keep_checkpoints}")
        for name in ("iters", "batch", "n_samples", "source_interval", "source_batch"):
            if getattr(self, name) < 1:
                raise StylenadaError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "lambda_clip", "lambda_l2", "lambda_global", "lambda_lr", "truncation", "mixing",
                     "max_seconds"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise StylenadaError(f"--{name.replace('_', '-')} must be a finite number >= 0, got {v}")
        if self.lr == 0:
            raise StylenadaError("--lr must be > 0")
        if not 0 <= self.mixing <= 1:
            raise StylenadaError(f"--mixing is a probability in [0, 1], got {self.mixing}")
        if not self.clip:
            raise StylenadaError(f"no CLIP model given: pass --clip, e.g. --clip {DEFAULT_CLIP}")
        from .losses import LOSS_TERMS, TEXT_TERMS

        if self.target_images is not None:
            text_terms = sorted(n for n, w in self.loss_weights().items() if w > 0 and n in TEXT_TERMS)
            if text_terms:
                fix = ", ".join("--lambda-global 0" if n == "global" else f"--lambda {n}=0" for n in text_terms)
                raise StylenadaError(f"the {' and '.join(text_terms)} loss term(s) compare images with the target "
                                     f"text, which image-guided mode (--target-images) has none of: drop them ({fix})")
        for name, value in self.lambdas.items():
            if name not in LOSS_TERMS or name in ("clip", "l2", "global"):
                raise StylenadaError(f"lambdas: unknown loss term {name!r}; registered terms besides clip, l2 and "
                                     f"global: {sorted(set(LOSS_TERMS) - {'clip', 'l2', 'global'}) or 'none'}")
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise StylenadaError(f"lambdas: the weight of {name!r} must be a finite number >= 0, got {value!r}")

    def _validate_targets(self) -> None:
        """The multi-domain run's own rules (``targets`` given)."""
        texts = [t.strip() for t in self.targets]
        if self.target.strip() or self.target_images is not None:
            raise StylenadaError("give either --targets FILE (a multi-domain model) or --target / --target-images "
                                 "(one domain), not both")
        if any(not t for t in texts):
            raise StylenadaError("--targets: an empty target text; give one non-empty text per line")
        if len(texts) < 2:
            raise StylenadaError(f"--targets needs at least two target texts for a multi-domain model, got {len(texts)}"
                                 "; for one target use --target")
        seen = {t.lower() for t in texts}
        if len(seen) < len(texts):
            raise StylenadaError("--targets: a target text is given twice; give each target once")
        if self.source.strip().lower() in seen:
            raise StylenadaError(f"--targets: the source text {self.source!r} is among the targets; remove it")
        if self.layers not in ("all", "late"):
            raise StylenadaError(f"a multi-domain model trains a fixed set of layers: use --layers all or late, "
                                 f"not {self.layers!r}")
        if self.source_text != "static" or self.train_mapping:
            raise StylenadaError("a multi-domain model uses a static source text and a frozen mapping network: "
                                 "drop --source-text dynamic / --train-mapping")
        if self.multi_rank < 1 or self.multi_hidden < 1:
            raise StylenadaError("--multi-rank and --multi-hidden must be >= 1")
        if not 0 <= self.target_mixing <= 1:
            raise StylenadaError(f"--target-mixing is a share in [0, 1], got {self.target_mixing}")


# --- presets -------------------------------------------------------------------------------------------
# Named starting configurations (a generator, its CLIP, texts and settings that work together). A plugin
# registers its own: the shapes world registers 'shapes', the default of `stylenada ui` without a generator.
PRESETS: dict[str, Callable[[], TrainConfig]] = {}


def register_preset(name: str, make: Callable[[], TrainConfig]) -> None:
    """Register ``make`` (called when the preset is used, so registering costs no import) under ``name``."""
    PRESETS[name] = make


def preset(name: str) -> TrainConfig:
    """A fresh TrainConfig of the preset ``name``."""
    if name not in PRESETS:
        raise StylenadaError(f"unknown preset {name!r}; registered: {sorted(PRESETS) or 'none'}")
    return PRESETS[name]()

