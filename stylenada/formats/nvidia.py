"""NVIDIA ``.pkl`` network pickles (stylegan2-ada-pytorch, and stylegan3's StyleGAN2 and StyleGAN3
generators), read without executing anything from the file.

These pickles embed Python source, which NVIDIA's own tools ``exec`` on load. Here a restricted
unpickler maps the few globals such a file needs onto fixed, harmless constructors:

- ``torch_utils.persistence._reconstruct_persistent_obj`` -> :class:`PersistentObject`, a record of the
  module's saved attributes (parameters, buffers, sub-modules, constructor kwargs); the embedded source
  is kept as a string and never run;
- torch's tensor/parameter rebuild helpers, with storages read by ``torch.load(weights_only=True)``;
- ``collections.OrderedDict``, ``dnnlib.util.EasyDict`` (as a plain dict) and numpy scalars/dtypes.

Any other global is refused with :class:`UnsafePickleError`. StyleGAN3 snapshots need nothing more: their
networks are persistent objects too, whose extra attributes (sizes, sampling rates) are numpy arrays and
scalars. The ``G_ema`` record is flattened into a state dict whose names equal our native layout (which
follows NVIDIA's); the family is told by its tensors (``synthesis.input.*`` is StyleGAN3's Fourier input).
"""

from __future__ import annotations

import io
import pickle
import pickletools
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError, UnsafePickleError, first_line
from ..models.stylegan2 import GeneratorConfig
from ..models.stylegan3 import StyleGAN3Config
from .registry import CheckpointFormat, infer_channels, register_format


class PersistentObject:
    """What a persistent NVIDIA class instance was, as data: class name, source text, saved state."""

    def __init__(self, meta: dict):
        if not isinstance(meta, dict) or meta.get("type") != "class":
            raise UnsafePickleError("malformed persistent object in the pickle")
        self.class_name: str = meta.get("class_name", "?")
        self.module_src: str = meta.get("module_src", "")
        self.state: dict = meta.get("state") or {}

    def __repr__(self) -> str:
        return f"PersistentObject({self.class_name})"

    @property
    def init_kwargs(self) -> dict:
        # The persistence decorator records the constructor's keyword arguments as ``_init_kwargs``.
        return dict(self.state.get("_init_kwargs") or self.state.get("init_kwargs") or {})

    def named_tensors(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """Parameters and persistent buffers of this module and its sub-modules, by qualified name."""
        out: dict[str, torch.Tensor] = {}
        non_persistent = set(self.state.get("_non_persistent_buffers_set") or ())
        for group in ("_parameters", "_buffers"):
            for name, t in (self.state.get(group) or {}).items():
                if t is not None and name not in non_persistent:
                    out[prefix + name] = t.detach() if isinstance(t, torch.Tensor) else t
        for name, sub in (self.state.get("_modules") or {}).items():
            if isinstance(sub, PersistentObject):
                out.update(sub.named_tensors(f"{prefix}{name}."))
            elif sub is not None:
                raise UnsafePickleError(f"unexpected sub-module type {type(sub).__name__} in the pickle")
        return out


class EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict``: a plain dict (attribute access is not needed here)."""


def _load_storage_bytes(b: bytes) -> Any:
    return torch.load(io.BytesIO(b), map_location="cpu", weights_only=True)


def _numpy_scalar(dtype: np.dtype, data: bytes | None = None) -> Any:
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise UnsafePickleError("numpy object scalars are not allowed in a network pickle")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


def _numpy_dtype(obj: str, align: bool = False, copy: bool = False) -> np.dtype:
    dt = np.dtype(obj, align=align)
    if dt.hasobject:
        raise UnsafePickleError("numpy object dtypes are not allowed in a network pickle")
    return dt


def _numpy_reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    if subtype is not np.ndarray:
        raise UnsafePickleError("only plain numpy arrays are allowed in a network pickle")
    return np.ndarray.__new__(np.ndarray, shape, dtype)


_ALLOWED: dict[str, Any] = {
    "torch_utils.persistence._reconstruct_persistent_obj": PersistentObject,
    "dnnlib.util.EasyDict": EasyDict,
    "collections.OrderedDict": OrderedDict,
    "torch._utils._rebuild_tensor_v2": torch._utils._rebuild_tensor_v2,
    "torch._utils._rebuild_parameter": torch._utils._rebuild_parameter,
    "torch.storage._load_from_bytes": _load_storage_bytes,
    "numpy.core.multiarray.scalar": _numpy_scalar,
    "numpy._core.multiarray.scalar": _numpy_scalar,
    "numpy.dtype": _numpy_dtype,
    "numpy.core.multiarray._reconstruct": _numpy_reconstruct,
    "numpy._core.multiarray._reconstruct": _numpy_reconstruct,
    "numpy.ndarray": np.ndarray,
    "builtins.set": set,  # protocol <= 3 pickles spell sets as a call to set()
    "builtins.frozenset": frozenset,
}
_ALLOWED.update({f"torch.{n}": getattr(torch, n) for n in
                 ("float32", "float16", "float64", "bfloat16", "int64", "int32", "uint8", "bool")})


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that only knows the globals in ``_ALLOWED``; everything else is refused."""

    def find_class(self, module: str, name: str) -> Any:
        key = f"{module}.{name}"
        if key in _ALLOWED:
            return _ALLOWED[key]
        raise UnsafePickleError(
            f"refused to load: the pickle asks for {key!r}, which a StyleGAN2/StyleGAN3 network pickle never "
            "needs; it may be malicious or not an NVIDIA network file")

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("refused to load: unexpected persistent reference in the pickle")


_MEMO_OPS = {"BINPUT", "LONG_BINPUT", "BINGET", "LONG_BINGET", "PUT", "GET"}


def check_pickle_sizes(data: bytes, path: Path) -> None:
    """Scan the opcodes (nothing is built) for sizes no file of this length can mean: a memo index beyond
    the file's length would make the unpickler allocate a table of that many entries."""
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name in _MEMO_OPS and int(arg) > len(data):
                raise CheckpointError(f"{path}: corrupt network pickle (memo index {arg} in a file of {len(data)} "
                                      "bytes); download it again")
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: corrupt network pickle ({first_line(e, 80)}); download it again") from None


def safe_load_pickle(path: Path) -> Any:
    try:
        # From memory, not the open file: a corrupt length field then reads what is there instead of first
        # allocating the gigabytes it declares.
        data = path.read_bytes()
        check_pickle_sizes(data, path)
        return RestrictedUnpickler(io.BytesIO(data)).load()
    except UnsafePickleError as e:
        raise UnsafePickleError(f"{path}: {e}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            RuntimeError) as e:
        raise CheckpointError(
            f"{path}: cannot read the network pickle ({type(e).__name__}: {first_line(e, 120)}); "
            "the file is truncated or corrupt, download it again") from e


def _sniff(path: Path, head: bytes) -> bool:
    return head[:1] == b"\x80" and path.suffix != ".pt"


def _kwargs(G: PersistentObject, sd: dict[str, torch.Tensor], path: Path) -> tuple[dict, dict, dict]:
    """The generator's constructor arguments: all, the synthesis network's, the mapping network's.
    stylegan2-ada nests the synthesis arguments in ``synthesis_kwargs``; stylegan3 (both families) passes
    them as the generator's own keyword arguments."""
    kw = G.init_kwargs
    syn = {**kw, **dict(kw.get("synthesis_kwargs") or {})}
    mapk = dict(kw.get("mapping_kwargs") or {})
    if int(kw.get("c_dim", 0) or 0) != 0 or "mapping.embed.weight" in sd:
        raise CheckpointError(f"{path}: a class-conditional generator (c_dim > 0); only unconditional ones "
                              "are supported")
    return kw, syn, mapk


def infer_config(G: PersistentObject, sd: dict[str, torch.Tensor], path: Path) -> GeneratorConfig:
    kw, syn, mapk = _kwargs(G, sd, path)
    if syn.get("architecture", "skip") != "skip":
        raise CheckpointError(f"{path}: generator architecture {syn['architecture']!r}; only 'skip' "
                              "(StyleGAN2 config F) is supported")
    try:
        n_layers = len([k for k in sd if re.fullmatch(r"mapping\.fc\d+\.weight", k)])
        w_dim, z_dim = sd["mapping.fc0.weight"].shape
        w_dim = sd[f"mapping.fc{n_layers - 1}.weight"].shape[0]
        res_list = sorted(int(m.group(1)) for k in sd if (m := re.fullmatch(r"synthesis\.b(\d+)\.conv1\.weight", k)))
        channels = {r: sd[f"synthesis.b{r}.conv1.weight"].shape[0] for r in res_list}
        img_channels = sd[f"synthesis.b{res_list[-1]}.torgb.weight"].shape[0]
    except (KeyError, IndexError) as e:
        raise CheckpointError(f"{path}: G_ema lacks {e}; not a StyleGAN2 generator") from e
    base, cmax = infer_channels(channels, str(path))
    lr_mul = float(mapk.get("lr_multiplier", 0.01))
    # Without the argument, stylegan2-ada's blocks do not clamp; the stylegan3 repository's (whose generator
    # takes the synthesis arguments flattened, no ``synthesis_kwargs``) clamp at 256.
    clamp = syn.get("conv_clamp", None if "synthesis_kwargs" in kw else 256)
    cfg = GeneratorConfig(resolution=res_list[-1], z_dim=int(z_dim), w_dim=int(w_dim), mapping_layers=n_layers,
                          mapping_lr_mul=lr_mul, channel_base=base, channel_max=cmax, img_channels=int(img_channels),
                          conv_clamp=None if clamp is None else float(clamp),
                          resample_filter=tuple(int(x) for x in syn.get("resample_filter", (1, 3, 3, 1))),
                          w_avg_beta=float(mapk.get("w_avg_beta", 0.995) or 0.995))
    res_kw = kw.get("img_resolution")
    if res_kw is not None and int(res_kw) != cfg.resolution:
        raise CheckpointError(f"{path}: img_resolution {res_kw} disagrees with the weights ({cfg.resolution}px)")
    return cfg


# StyleGAN3 constructor arguments (Generator's own and SynthesisNetwork's/SynthesisLayer's, which stylegan3
# passes through it) -> our config fields; the mapping network's come from ``mapping_kwargs``.
_SG3_SYNTHESIS_KWARGS = {
    "channel_base": int, "channel_max": int, "num_critical": int, "first_cutoff": float,
    "first_stopband": float, "last_stopband_rel": float, "margin_size": int, "output_scale": float,
    "conv_kernel": int, "filter_size": int, "lrelu_upsampling": int, "use_radial_filters": bool,
    "magnitude_ema_beta": float,
}
_SG3_MAPPING_KWARGS = {"num_layers": ("mapping_layers", int), "lr_multiplier": ("mapping_lr_mul", float),
                       "w_avg_beta": ("w_avg_beta", float)}


def _plain(value: Any, kind: type, name: str) -> Any:
    """A constructor argument as a plain Python number (numpy scalars included); anything else is refused."""
    if kind is bool:
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"{name} must be true or false, got {value!r:.40}")
        return bool(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r:.40}")
    if kind is int and float(value) != int(value):
        raise ValueError(f"{name} must be an integer, got {value!r:.40}")
    return kind(value)


def infer_config_sg3(G: PersistentObject, sd: dict[str, torch.Tensor], path: Path) -> StyleGAN3Config:
    """A StyleGAN3 generator's config from its tensors (dimensions, resolution, image channels, layer count,
    kernel size, radial filters) and its constructor arguments (NVIDIA's defaults where absent, as its code
    would use them); ``build_generator`` then checks every name and shape against the architecture this
    describes."""
    kw, syn, mapk = _kwargs(G, sd, path)
    layers = sorted((int(m.group(1)), int(m.group(2)), k) for k in map(str, sd)
                    if (m := re.fullmatch(r"synthesis\.L(\d+)_(\d+)_\d+\.weight", k)))
    n_map = len([k for k in map(str, sd) if re.fullmatch(r"mapping\.fc\d+\.weight", k)])
    try:
        w_dim, z_dim = sd["mapping.fc0.weight"].shape
        w_dim = sd[f"mapping.fc{n_map - 1}.weight"].shape[0]
        fields: dict[str, Any] = {"resolution": layers[-1][1], "z_dim": int(z_dim), "w_dim": int(w_dim),
                                  "img_channels": int(sd[layers[-1][2]].shape[0]), "num_layers": len(layers) - 1,
                                  "mapping_layers": n_map, "conv_kernel": int(sd[layers[0][2]].shape[-1]),
                                  # config R's downsampling filters are 2-D (radial), T's separable taps
                                  "use_radial_filters": any(str(k).endswith(".down_filter") and v.ndim == 2
                                                            for k, v in sd.items())}
    except (KeyError, IndexError, ValueError, AttributeError) as e:
        what = f"tensor {e}" if isinstance(e, KeyError) else "its synthesis layers"
        raise CheckpointError(f"{path}: G_ema lacks {what}; not a complete StyleGAN3 generator") from None
    try:
        for name, kind in _SG3_SYNTHESIS_KWARGS.items():
            if name in syn:
                fields[name] = _plain(syn[name], kind, name)
        for name, (field, kind) in _SG3_MAPPING_KWARGS.items():
            if name in mapk:
                fields[field] = _plain(mapk[name], kind, f"mapping_kwargs.{name}")
        if "conv_clamp" in syn:  # NVIDIA's layers clamp at 256 unless told otherwise (None: no clamp)
            fields["conv_clamp"] = None if syn["conv_clamp"] is None else _plain(syn["conv_clamp"], float, "conv_clamp")
        for name, field in (("img_resolution", "resolution"), ("img_channels", "img_channels"),
                            ("num_layers", "num_layers"), ("z_dim", "z_dim"), ("w_dim", "w_dim")):
            if name in syn and _plain(syn[name], int, name) != fields[field]:
                raise ValueError(f"{name} {syn[name]!r:.20} disagrees with the weights ({fields[field]})")
        return StyleGAN3Config(**fields)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: bad StyleGAN3 constructor arguments ({first_line(e, 120)})") from None


def load_network_pickle(path: Path, key: str = "G_ema") -> PersistentObject:
    data = safe_load_pickle(path)
    if not isinstance(data, dict) or key not in data:
        keys = list(data)[:6] if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(f"{path}: no {key!r} network in this pickle (found {keys})")
    net = data[key]
    if not isinstance(net, PersistentObject):
        raise CheckpointError(f"{path}: {key!r} is not a network")
    return net


def _load(path: Path) -> tuple[GeneratorConfig | StyleGAN3Config, dict[str, torch.Tensor]]:
    G = load_network_pickle(path)
    sd = G.named_tensors()
    if any(str(k).startswith("synthesis.input.") for k in sd):  # StyleGAN3: its filters are persistent buffers
        return infer_config_sg3(G, sd, path), sd
    sd = {k: v for k, v in sd.items() if not k.endswith("resample_filter")}
    return infer_config(G, sd, path), sd


NVIDIA = register_format(CheckpointFormat(
    name="nvidia", description="NVIDIA stylegan2-ada / stylegan3 .pkl", sniff=_sniff, load=_load, suffix=".pkl"))
