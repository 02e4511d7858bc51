"""CLIP models as frozen teachers: spec parsing, loading through open_clip, image/text encoding.

A CLIP spec is ``NAME[:PRETRAINED][@WEIGHT]``:

- ``ViT-B-32:openai``, ``ViT-B-16:laion2b_s34b_b88k``, ``ViT-B-16-SigLIP:webli`` (open_clip tags; the
  weights are downloaded, so they need network access or a filled Hugging Face cache);
- ``ViT-B-32:/path/to/open_clip_pytorch_model.bin`` (a local ``.pt``/``.bin``/``.pth``/``.safetensors``);
- ``ViT-B-32:openai@0.5`` (a weight in a multi-model ensemble; default 1);
- ``hf-hub:org/repo`` or ``local-dir:/path/to/folder`` (open_clip's own schemas);
- a name registered by a plugin (``register_clip_source``), such as the shapes world's ``tiny-shapes``.

open_clip is imported only when a model is loaded.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import StylenadaError
from .preprocess import PreprocessConfig, preprocess_for_clip
from .templates import fill_template, resolve_templates

DEFAULT_CLIP = "ViT-B-32:openai"  # the teacher when none is named (the paper's)

# Named CLIP sources beside open_clip's hub and files: name -> loader(spec, device, dtype, preprocess_cfg).
# Plugins register theirs (the shapes world: its tiny CLIPs; see stylenada.plugins).
ClipLoader = Callable[..., "ClipModel"]
CLIP_SOURCES: dict[str, ClipLoader] = {}


def register_clip_source(name: str) -> Callable[[ClipLoader], ClipLoader]:
    """Decorator: ``--clip NAME`` (with no weights part) loads through the decorated function, called as
    ``fn(spec, device, dtype, preprocess_cfg)`` and returning a :class:`ClipModel`."""

    def deco(fn: ClipLoader) -> ClipLoader:
        CLIP_SOURCES[name] = fn
        return fn

    return deco


def clip_sources() -> dict[str, ClipLoader]:
    """The registered sources, plugins loaded."""
    from ..plugins import load_plugins

    load_plugins()
    return CLIP_SOURCES
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
_SCHEMAS = ("hf-hub:", "local-dir:")
_LIST_MODELS_HINT = "python -c \"import open_clip; print(open_clip.list_pretrained(as_str=True))\""


# --- specs -------------------------------------------------------------------------------------------


def _check_weight(weight: Any, where: str) -> float:
    try:
        w = float(weight)
    except (TypeError, ValueError):
        w = float("nan")
    if not math.isfinite(w) or w <= 0:
        raise StylenadaError(f"bad CLIP weight {weight!r} for {where}: give a finite number > 0, e.g. @0.5")
    return w


def _looks_like_path(text: str) -> bool:
    """True for anything that cannot be an open_clip tag (tags have no '.', '/' or '\\')."""
    return any(c in text for c in "./\\") or text.startswith("~")


@dataclass(frozen=True)
class ClipSpec:
    """One CLIP model to load: open_clip model name, pretrained tag or file (or None), ensemble weight."""

    name: str
    pretrained: str | None = None
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not self.name:
            raise StylenadaError("empty CLIP model name: use NAME:WEIGHTS, e.g. --clip ViT-B-32:openai")
        object.__setattr__(self, "weight", _check_weight(self.weight, self.model_id))

    @property
    def model_id(self) -> str:
        """``name:pretrained`` (or ``name``), the spec without its weight."""
        return self.name if self.pretrained is None else f"{self.name}:{self.pretrained}"

    def __str__(self) -> str:
        return self.model_id if self.weight == 1.0 else f"{self.model_id}@{self.weight:g}"


def parse_clip_spec(spec: str | ClipSpec) -> ClipSpec:
    """Parse ``NAME[:PRETRAINED][@WEIGHT]`` into a :class:`ClipSpec` (no I/O, no open_clip import).

    The text after the last ``@`` is the weight when it is a number; otherwise it is kept as part of a
    file path. ``ViT-B/32`` is accepted for ``ViT-B-32``.
    """
    if isinstance(spec, ClipSpec):
        return spec
    if not isinstance(spec, str):
        raise StylenadaError(f"a CLIP spec must be a string such as 'ViT-B-32:openai', got {spec!r}")
    body = spec.strip()
    if not body:
        raise StylenadaError("empty CLIP spec: use NAME:WEIGHTS[@WEIGHT], e.g. --clip ViT-B-32:openai")
    weight: Any = 1.0
    if "@" in body:
        head, tail = body.rsplit("@", 1)
        try:
            weight = float(tail)
            body = head.strip()
        except ValueError:
            if not _looks_like_path(head.partition(":")[2]):
                raise StylenadaError(
                    f"bad CLIP weight {tail!r} in {spec!r}: write a number after '@', e.g. ViT-B-32:openai@0.5"
                ) from None
    if body.startswith(_SCHEMAS):
        name, pretrained = body, None
    elif ":" in body:
        name, pretrained = (s.strip() for s in body.split(":", 1))
        if not pretrained:
            raise StylenadaError(
                f"no weights after ':' in CLIP spec {spec!r}: write e.g. {name}:openai or {name}:/path/to/weights.bin"
            )
        name = name.replace("/", "-")
    else:
        name, pretrained = body.replace("/", "-"), None
    if not name:
        raise StylenadaError(f"no model name in CLIP spec {spec!r}: write e.g. ViT-B-32:openai")
    return ClipSpec(name, pretrained, _check_weight(weight, repr(spec)))


# --- the model wrapper -------------------------------------------------------------------------------


def _check_prompt(text: Any) -> str:
    if not isinstance(text, str):
        raise StylenadaError(f"a prompt must be a string, got {type(text).__name__}")
    text = text.strip()
    if not text:
        raise StylenadaError("empty prompt: give a non-empty --source/--target text")
    return text


def _model_preprocess_cfg(model: nn.Module) -> dict:
    """The model's own open_clip ``preprocess_cfg`` (legacy attributes and OpenAI defaults fill gaps)."""
    visual = getattr(model, "visual", model)
    cfg = dict(getattr(visual, "preprocess_cfg", None) or {})
    cfg.setdefault("size", getattr(visual, "image_size", None) or 224)
    cfg.setdefault("mean", getattr(visual, "image_mean", None) or OPENAI_MEAN)
    cfg.setdefault("std", getattr(visual, "image_std", None) or OPENAI_STD)
    return cfg


class ClipModel(nn.Module):
    """A frozen open_clip model with its tokenizer and preprocessing, used as a teacher.

    Parameters never require grad and the wrapped model stays in eval mode (``train()`` does not
    change that). Gradients flow from :meth:`encode_image` back to the input images only. Text
    embeddings are computed without grad and cached per (text, templates).

    Args:
        model: an open_clip ``CLIP``/``CustomTextCLIP`` (anything with ``encode_image``/``encode_text``).
        tokenizer: callable ``list[str] -> LongTensor [N, L]``; default: open_clip's ``SimpleTokenizer``
            with the model's context length, created on first use.
        name: shown in messages and logs.
        preprocess_cfg: entries overriding the model's own ``visual.preprocess_cfg``.
        text_cache_size: how many (text, templates) embeddings to keep (least recently used dropped).
    """

    def __init__(self, model: nn.Module, tokenizer: Any = None, *, name: str = "clip",
                 preprocess_cfg: dict | None = None, spec: ClipSpec | None = None, text_cache_size: int = 1024):
        super().__init__()
        self.model = model
        self.model.requires_grad_(False)
        self.model.eval()
        self._tokenizer = tokenizer
        self.name = name
        self.spec = spec
        cfg = _model_preprocess_cfg(model)
        cfg.update(preprocess_cfg or {})
        self.preprocess_config = PreprocessConfig.from_open_clip(cfg)
        p = next(model.parameters(), None)
        dtype = p.dtype if p is not None and p.is_floating_point() else torch.float32
        device = p.device if p is not None else None
        self.register_buffer("mean", torch.tensor(self.preprocess_config.mean, dtype=dtype, device=device)
                             .view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self.preprocess_config.std, dtype=dtype, device=device)
                             .view(1, 3, 1, 1), persistent=False)
        self._text_cache: OrderedDict[tuple[str, tuple[str, ...]], torch.Tensor] = OrderedDict()
        self.text_cache_size = int(text_cache_size)
        self._embed_dim: int | None = None

    def extra_repr(self) -> str:
        c = self.preprocess_config
        return f"name={self.name!r}, image_size={c.image_size}, resize_mode={c.resize_mode!r}"

    # --- properties ---
    @property
    def device(self) -> torch.device:
        return self.mean.device

    @property
    def dtype(self) -> torch.dtype:
        return self.mean.dtype

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) of the model's input."""
        return self.preprocess_config.image_size

    @property
    def embed_dim(self) -> int:
        """Size D of the joint embedding (of encode_image/encode_text outputs)."""
        if self._embed_dim is None:
            dim = getattr(getattr(self.model, "visual", None), "output_dim", None)
            if not dim:
                with torch.no_grad():
                    dim = self.model.encode_image(torch.zeros(1, 3, *self.image_size, device=self.device,
                                                              dtype=self.dtype)).shape[-1]
            self._embed_dim = int(dim)
        return self._embed_dim

    @property
    def logit_scale(self) -> float:
        """The model's learned inverse temperature of image-text cosines (100 for OpenAI's CLIP; 100 when the
        model has none)."""
        scale = getattr(self.model, "logit_scale", None)
        return float(scale.exp()) if isinstance(scale, torch.Tensor) else 100.0

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from open_clip import SimpleTokenizer

            self._tokenizer = SimpleTokenizer(context_length=getattr(self.model, "context_length", None) or 77)
        return self._tokenizer

    def train(self, mode: bool = True) -> ClipModel:
        """The teacher is always in eval mode; this only sets the wrapper's flag."""
        super().train(mode)
        self.model.eval()
        return self

    # --- images ---
    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """NCHW generator output in [-1, 1], any size -> normalised model input (differentiable)."""
        if not images.is_floating_point():
            raise ValueError(f"expected float images in [-1, 1], got dtype {images.dtype}")
        x = preprocess_for_clip(images.to(self.device), self.preprocess_config, self.mean, self.std)
        return x.to(self.dtype)

    def encode_image(self, images: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Image features [N, D] of NCHW images in [-1, 1]; gradients reach ``images``."""
        feats = self.model.encode_image(self.preprocess(images))
        return F.normalize(feats, dim=-1) if normalize else feats

    forward = encode_image

    # --- text ---
    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        return self.tokenizer(list(texts)).to(self.device)

    def encode_text(self, texts: str | Sequence[str], normalize: bool = False) -> torch.Tensor:
        """Text features [N, D], without grad (and without autocast). Not cached."""
        if isinstance(texts, str):
            texts = [texts]
        texts = [_check_prompt(t) for t in texts]
        if not texts:
            raise ValueError("encode_text needs at least one text")
        with torch.no_grad(), torch.autocast(self.device.type, enabled=False):
            feats = self.model.encode_text(self.tokenize(texts))
        return F.normalize(feats, dim=-1) if normalize else feats

    def template_mean(self, text: str, templates: str | Sequence[str] = "imagenet") -> torch.Tensor:
        """Mean over templates of the normalised embeddings of ``text`` [D] (not renormalised). Cached.

        The cache key is ``(text.strip(), tuple(templates))``; one encoder call per key.
        """
        key = (_check_prompt(text), resolve_templates(templates))
        hit = self._text_cache.get(key)
        if hit is None:
            feats = self.encode_text([fill_template(t, key[0]) for t in key[1]], normalize=True)
            hit = feats.mean(dim=0)
            self._text_cache[key] = hit
            while len(self._text_cache) > max(self.text_cache_size, 1):
                self._text_cache.popitem(last=False)
        else:
            self._text_cache.move_to_end(key)
        return hit.to(self.device).clone()

    def text_embedding(self, text: str, templates: str | Sequence[str] = "imagenet") -> torch.Tensor:
        """Unit-norm text embedding [D]: templated embeddings normalised, averaged, renormalised."""
        return F.normalize(self.template_mean(text, templates), dim=-1)

    def text_direction(self, source: str, target: str, templates: str | Sequence[str] = "imagenet") -> torch.Tensor:
        """StyleGAN-NADA's text direction [D]: normalise(mean_t(n(E(target_t)) - n(E(source_t))))."""
        if _check_prompt(source) == _check_prompt(target):
            raise StylenadaError(
                f"source and target texts are the same ({source.strip()!r}): give different --source and --target"
            )
        diff = self.template_mean(target, templates) - self.template_mean(source, templates)
        if not diff.norm() > 0:
            raise StylenadaError(f"CLIP {self.name} gives the same embedding to {source!r} and {target!r}: "
                                 "give more different --source and --target texts")
        return F.normalize(diff, dim=-1)

    def clear_text_cache(self) -> None:
        self._text_cache.clear()


def text_embedding(model: ClipModel, text: str, templates: str | Sequence[str] = "imagenet") -> torch.Tensor:
    """Unit-norm template-averaged text embedding [D] (see :meth:`ClipModel.text_embedding`)."""
    return model.text_embedding(text, templates)


def text_direction(model: ClipModel, source: str, target: str,
                   templates: str | Sequence[str] = "imagenet") -> torch.Tensor:
    """Unit text direction [D] from ``source`` to ``target`` (see :meth:`ClipModel.text_direction`)."""
    return model.text_direction(source, target, templates)


# --- ensembles -----------------------------------------------------------------------------------------


class ClipEnsemble(nn.Module):
    """Several CLIP teachers with weights; iterating yields ``(ClipModel, weight)`` pairs."""

    def __init__(self, models: Sequence[ClipModel], weights: Sequence[float] | None = None):
        super().__init__()
        models = list(models)
        if not models:
            raise StylenadaError("no CLIP model given: pass --clip, e.g. --clip ViT-B-32:openai")
        if weights is None:
            weights = [m.spec.weight if m.spec is not None else 1.0 for m in models]
        weights = list(weights)
        if len(weights) != len(models):
            raise ValueError(f"{len(models)} CLIP models but {len(weights)} weights")
        self.clips = nn.ModuleList(models)
        self.weights = tuple(_check_weight(w, m.name) for m, w in zip(models, weights, strict=True))

    def __iter__(self) -> Iterator[tuple[ClipModel, float]]:
        return iter(zip(self.clips, self.weights, strict=True))

    def __len__(self) -> int:
        return len(self.weights)

    def __getitem__(self, i: int) -> tuple[ClipModel, float]:
        return self.clips[i], self.weights[i]


def load_clip_ensemble(specs: Sequence[str | ClipSpec], device: str | torch.device = "cpu",
                       dtype: torch.dtype = torch.float32) -> ClipEnsemble:
    """Load every spec (a model named twice is loaded once) into a :class:`ClipEnsemble`."""
    if isinstance(specs, str | ClipSpec):
        specs = [specs]
    parsed = [parse_clip_spec(s) for s in specs]
    loaded: dict[str, ClipModel] = {}
    for s in parsed:
        if s.model_id not in loaded:
            loaded[s.model_id] = load_clip(s, device=device, dtype=dtype)
    return ClipEnsemble([loaded[s.model_id] for s in parsed], [s.weight for s in parsed])


# --- loading -------------------------------------------------------------------------------------------


def _short(err: BaseException, limit: int = 200) -> str:
    text = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _unanimous_tag_settings(name: str) -> dict:
    """Preprocessing and quick_gelu shared by every open_clip tag of ``name`` (for local weight files)."""
    import open_clip

    out = {}
    cfgs = [open_clip.get_pretrained_cfg(name, tag) for tag in open_clip.list_pretrained_tags_by_model(name)]
    for key in ("mean", "std", "interpolation", "resize_mode", "quick_gelu"):
        values = {repr(c.get(key)) for c in cfgs}
        if cfgs and len(values) == 1 and cfgs[0].get(key) is not None:
            out[key] = cfgs[0][key]
    return out


def _weights_cached(tag_cfg: dict) -> bool:
    """Whether open_clip would find the tag's weights without downloading (Hugging Face cache or URL cache)."""
    hub = tag_cfg.get("hf_hub", "")
    if hub:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:
            return False
        model_id, filename = os.path.split(hub)
        names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        names += [n.rsplit(".", 1)[0] + ".safetensors" for n in names]
        return any(isinstance(try_to_load_from_cache(model_id, n), str) for n in names)
    url = tag_cfg.get("url", "")
    return bool(url) and os.path.isfile(os.path.expanduser(f"~/.cache/clip/{os.path.basename(url)}"))


def _hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    """A quick TCP connect to the model hub (no request is sent)."""
    import socket

    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _download_hint(name: str, tag_cfg: dict) -> str:
    import open_clip

    hint = name
    if tag_cfg.get("quick_gelu") and not name.endswith("-quickgelu") and f"{name}-quickgelu" in open_clip.list_models():
        hint = f"{name}-quickgelu"  # these weights were trained with QuickGELU
    return f"--clip {hint}:/path/to/open_clip_pytorch_model.bin"


def load_clip(spec: str | ClipSpec, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
              preprocess_cfg: dict | None = None) -> ClipModel:
    """Load a CLIP model (frozen, eval) from a spec string or :class:`ClipSpec`.

    Hub tags are downloaded by open_clip (or read from its cache). For a local weight file, the
    preprocessing (mean/std/resize mode) and QuickGELU setting shared by all of the model's known tags
    are used; ``preprocess_cfg`` overrides preprocessing entries. Raises :class:`StylenadaError` with a
    one-line fix for an unknown name or tag, a missing or unreadable file, or weights that cannot be
    downloaded.
    """
    spec = parse_clip_spec(spec)
    sources = clip_sources()
    if spec.name in sources:
        if spec.pretrained is not None:
            raise StylenadaError(f"{spec.name!r} is a built-in CLIP and takes no weights part: "
                                 f"write --clip {spec.name}")
        clip = sources[spec.name](spec, device, dtype, preprocess_cfg)
        clip.spec, clip.name = spec, spec.model_id
        return clip.to(device=device, dtype=dtype)
    import open_clip

    kwargs: dict[str, Any] = {}
    kind = "schema"
    pretrained = spec.pretrained
    tag_cfg: dict = {}
    if not spec.name.startswith(_SCHEMAS):
        if spec.name not in open_clip.list_models():
            import difflib

            close = difflib.get_close_matches(spec.name, open_clip.list_models(), n=3)
            maybe = f" (did you mean {', '.join(close)}?)" if close else ""
            raise StylenadaError(f"unknown CLIP model {spec.name!r}{maybe}: list valid names with {_LIST_MODELS_HINT}")
        if pretrained is None:
            raise StylenadaError(
                f"no weights given for CLIP {spec.name!r}: write {spec.name}:TAG (e.g. {spec.name}:openai) "
                f"or {spec.name}:/path/to/weights.bin"
            )
        if not _looks_like_path(pretrained) and open_clip.is_pretrained_cfg(spec.name, pretrained):
            kind = "tag"
            tag_cfg = open_clip.get_pretrained_cfg(spec.name, pretrained)
            kwargs["force_quick_gelu"] = bool(tag_cfg.get("quick_gelu", False))
            if not _weights_cached(tag_cfg) and not _hub_reachable():
                # Fail at once, in one line, instead of the hub client's minute of retries.
                raise StylenadaError(
                    f"the CLIP weights for {spec.model_id} are not cached here and the model hub cannot be reached "
                    f"(no network?): download them elsewhere and pass the file, e.g. "
                    f"{_download_hint(spec.name, tag_cfg)}")
        else:
            path = os.path.expanduser(pretrained)
            if not os.path.isfile(path):
                if _looks_like_path(pretrained):
                    raise StylenadaError(f"CLIP weights file not found: {path} (from --clip {spec.model_id})")
                tags = ", ".join(open_clip.list_pretrained_tags_by_model(spec.name)) or "none"
                raise StylenadaError(
                    f"unknown pretrained tag {pretrained!r} for CLIP {spec.name} (known tags: {tags}): "
                    f"use one of them or a local file, e.g. {spec.name}:/path/to/weights.bin"
                )
            kind, pretrained = "file", path
            settings = _unanimous_tag_settings(spec.name)
            kwargs["force_quick_gelu"] = bool(settings.pop("quick_gelu", False))
            kwargs["force_preprocess_cfg"] = settings
    if preprocess_cfg:
        kwargs["force_preprocess_cfg"] = {**kwargs.get("force_preprocess_cfg", {}), **preprocess_cfg}

    try:
        model = open_clip.create_model(spec.name, pretrained=pretrained, device=device, precision="fp32",
                                       require_pretrained=True, **kwargs)
    except ModuleNotFoundError as e:
        raise StylenadaError(f"CLIP {spec.name} needs the Python package {e.name!r}: pip install {e.name}") from e
    except Exception as e:
        if kind == "tag" and "download" in str(e).lower():
            raise StylenadaError(
                f"could not download the CLIP weights for {spec.model_id} (no network?): download them "
                f"elsewhere and pass the local file instead, e.g. {_download_hint(spec.name, tag_cfg)}"
            ) from e
        if kind == "file":
            raise StylenadaError(
                f"could not load CLIP weights {pretrained} into {spec.name} ({_short(e)}): give an open_clip or "
                f"OpenAI checkpoint of that architecture"
            ) from e
        raise StylenadaError(f"could not load CLIP {spec.model_id}: {_short(e)}") from e

    try:
        tokenizer = open_clip.get_tokenizer(spec.name)
    except Exception as e:
        raise StylenadaError(
            f"could not create the tokenizer of CLIP {spec.name} ({_short(e)}): models with a Hugging Face "
            "tokenizer (SigLIP) need `pip install transformers` and the tokenizer files in the Hugging Face cache"
        ) from e
    return ClipModel(model, tokenizer, name=spec.model_id, spec=spec).to(device=device, dtype=dtype)

