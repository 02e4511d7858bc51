"""rosinality/stylegan2-pytorch ``.pt`` checkpoints: ``{"g_ema": state_dict, "latent_avg": w, ...}``.

Read with ``torch.load(weights_only=True)``; the ``args`` entry of training checkpoints is an
``argparse.Namespace``, which is explicitly allowed (it only holds plain values).

Key mapping (rosinality -> native), with res = 2**(k+3) for ``convs.{2k}``/``convs.{2k+1}``/``to_rgbs.{k}``:
    style.{i+1}                  -> mapping.fc{i}
    latent_avg                   -> mapping.w_avg
    input.input [1,C,4,4]        -> synthesis.b4.const [C,4,4]
    conv1 / to_rgb1              -> synthesis.b4.conv1 / synthesis.b4.torgb
    convs.{2k} / convs.{2k+1}    -> synthesis.b{res}.conv0 / .conv1
    to_rgbs.{k}                  -> synthesis.b{res}.torgb
    noises.noise_{j}             -> noise_const of the j-th conv layer in W+ order
inside a conv: conv.weight [1,O,I,k,k] -> weight [O,I,k,k]; conv.modulation -> affine;
noise.weight [1] -> noise_strength []; activate.bias -> bias; ToRGB bias [1,3,1,1] -> [3].
"""

from __future__ import annotations

import argparse
import logging
import pickle
import re
import warnings
import zipfile
from pathlib import Path

import torch

from ..errors import CheckpointError, first_line
from ..models.ops import setup_filter
from ..models.stylegan2 import Generator, GeneratorConfig
from ..utils.io import atomic_write
from .registry import CheckpointFormat, build_generator, infer_channels, register_format

log = logging.getLogger(__name__)


def torch_load_safe(path: Path) -> object:
    """``torch.load`` with ``weights_only=True``; turns every failure into one clear CheckpointError."""
    try:
        # From an open file, not the path: torch.load dispatches on a ".safetensors" name by itself.
        # torch's own warnings about odd files (pickle protocol, sparse tensors) would add lines to the one
        # error line a broken file gets.
        with torch.serialization.safe_globals([argparse.Namespace]), open(path, "rb") as f, \
                warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(f, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
        what = f"it asks for {found.group(1)!r}" if found else first_line(e, 80)
        raise CheckpointError(
            f"{path}: refused to load: the file needs more than plain tensors to unpickle ({what}); "
            "only weights-only checkpoints are read, re-save it with torch.save(state_dict)") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise CheckpointError(
            f"{path}: cannot read the PyTorch checkpoint ({first_line(e, 80).split('. ')[0]}); "
            "the file is truncated or corrupt, download or save it again") from None


def _sniff(path: Path, head: bytes) -> bool:
    # torch.save's zip container (the legacy format starts with a pickle of a magic number).
    return head.startswith(b"PK\x03\x04") or (path.suffix == ".pt" and head[:1] == b"\x80")


def _g_ema_state(ckpt: object, path: Path) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: expected a dict checkpoint, found {type(ckpt).__name__}")
    if "g_ema" in ckpt:
        sd, avg = ckpt["g_ema"], ckpt.get("latent_avg")
    elif "style.1.weight" in ckpt:
        sd, avg = ckpt, None
    else:
        keys = ", ".join(list(map(str, ckpt))[:8])
        if "state_dict" in ckpt:
            hint = " (this looks like an encoder checkpoint: use `--encoder` / load_encoder)"
        else:
            hint = ""
        raise CheckpointError(f"{path}: no 'g_ema' generator in this checkpoint (keys: {keys}){hint}")
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{path}: 'g_ema' is not a state dict of tensors")
    return sd, avg


def infer_config(sd: dict[str, torch.Tensor], path: Path) -> GeneratorConfig:
    try:
        n_mlp = len([k for k in sd if re.fullmatch(r"style\.\d+\.weight", k)])
        w_dim, z_dim = sd["style.1.weight"].shape
        lr_mul = ROSINALITY_LR_MUL  # not recorded in the file (the writer rescales to it)
        n_rgbs = len([k for k in sd if re.fullmatch(r"to_rgbs\.\d+\.bias", k)])
        resolution = 2 ** (n_rgbs + 2)
        channels = {4: sd["conv1.conv.weight"].shape[1]}
        for k in range(n_rgbs):
            channels[2 ** (k + 3)] = sd[f"convs.{2 * k}.conv.weight"].shape[1]
    except KeyError as e:
        raise CheckpointError(f"{path}: 'g_ema' lacks {e}; not a rosinality StyleGAN2 generator") from e
    base, cmax = infer_channels(channels, str(path))
    for k, v in sd.items():
        if k.endswith(".kernel") and not torch.allclose(v / v.sum(), _standard_kernel() / _standard_kernel().sum()):
            raise CheckpointError(f"{path}: {k} is not the [1,3,3,1] blur kernel; unsupported architecture")
    return GeneratorConfig(resolution=resolution, z_dim=z_dim, w_dim=w_dim, mapping_layers=n_mlp,
                           mapping_lr_mul=lr_mul, channel_base=base, channel_max=cmax)


def _standard_kernel() -> torch.Tensor:
    f = setup_filter((1, 3, 3, 1))
    return torch.outer(f, f)


def _key_map(cfg: GeneratorConfig) -> list[tuple[str, str]]:
    """(native prefix, rosinality prefix) of each modulated layer, in the generator's layout order (the
    noise buffers follow the convs in that order): rosinality names the 4x4 block's layers conv1 and
    to_rgb1, and numbers the others convs.{j} and to_rgbs.{k}."""
    pairs, convs, rgbs = [], 0, 0
    for slot in cfg.layout():
        if slot.resolution == 4:
            ros = "conv1" if slot.role == "conv" else "to_rgb1"
        elif slot.role == "conv":
            ros, convs = f"convs.{convs}", convs + 1
        else:
            ros, rgbs = f"to_rgbs.{rgbs}", rgbs + 1
        pairs.append((f"synthesis.{slot.name}", ros))
    return pairs


def to_native(sd: dict[str, torch.Tensor], latent_avg: torch.Tensor | None,
              cfg: GeneratorConfig) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for i in range(cfg.mapping_layers):
        out[f"mapping.fc{i}.weight"] = sd[f"style.{i + 1}.weight"]
        out[f"mapping.fc{i}.bias"] = sd[f"style.{i + 1}.bias"]
    out["synthesis.b4.const"] = sd["input.input"][0]
    noise_idx = 0
    for native, ros in _key_map(cfg):
        out[f"{native}.weight"] = sd[f"{ros}.conv.weight"][0]
        out[f"{native}.affine.weight"] = sd[f"{ros}.conv.modulation.weight"]
        out[f"{native}.affine.bias"] = sd[f"{ros}.conv.modulation.bias"]
        if native.endswith("torgb"):
            out[f"{native}.bias"] = sd[f"{ros}.bias"].reshape(-1)
        else:
            out[f"{native}.bias"] = sd[f"{ros}.activate.bias"]
            out[f"{native}.noise_strength"] = sd[f"{ros}.noise.weight"].reshape(())
            out[f"{native}.noise_const"] = sd[f"noises.noise_{noise_idx}"][0, 0]
            noise_idx += 1
    out["mapping.w_avg"] = latent_avg.reshape(-1) if latent_avg is not None else None
    return out


ROSINALITY_LR_MUL = 0.01  # the mapping's learning-rate multiplier that every reader of the format assumes


def from_native(sd: dict[str, torch.Tensor], cfg: GeneratorConfig) -> dict[str, torch.Tensor]:
    """Native state dict -> rosinality ``g_ema``. The format does not record the mapping's lr multiplier
    and is read with 0.01, so the stored mapping parameters are rescaled to give the same layer outputs
    under 0.01 (equalised lr: the run-time weight is ``stored * lr_mul / sqrt(fan_in)``)."""
    out: dict[str, torch.Tensor] = {}
    rescale = cfg.mapping_lr_mul / ROSINALITY_LR_MUL
    for i in range(cfg.mapping_layers):
        out[f"style.{i + 1}.weight"] = sd[f"mapping.fc{i}.weight"] * rescale
        out[f"style.{i + 1}.bias"] = sd[f"mapping.fc{i}.bias"] * rescale
    out["input.input"] = sd["synthesis.b4.const"][None]
    blur = _standard_kernel() * 4  # rosinality stores the upsampling blur pre-multiplied by factor**2
    noise_idx = 0
    for native, ros in _key_map(cfg):
        out[f"{ros}.conv.weight"] = sd[f"{native}.weight"][None]
        out[f"{ros}.conv.modulation.weight"] = sd[f"{native}.affine.weight"]
        out[f"{ros}.conv.modulation.bias"] = sd[f"{native}.affine.bias"]
        if native.endswith("torgb"):
            out[f"{ros}.bias"] = sd[f"{native}.bias"].reshape(1, -1, 1, 1)
            if ros != "to_rgb1":
                out[f"{ros}.upsample.kernel"] = blur.clone()
        else:
            out[f"{ros}.activate.bias"] = sd[f"{native}.bias"]
            out[f"{ros}.noise.weight"] = sd[f"{native}.noise_strength"].reshape(1)
            out[f"noises.noise_{noise_idx}"] = sd[f"{native}.noise_const"][None, None]
            noise_idx += 1
            if native.endswith("conv0"):
                out[f"{ros}.conv.blur.kernel"] = blur.clone()
    return {k: v.detach().cpu().contiguous() for k, v in out.items()}


def _load(path: Path) -> tuple[GeneratorConfig, dict[str, torch.Tensor]]:
    sd, latent_avg = _g_ema_state(torch_load_safe(path), path)
    cfg = infer_config(sd, path)
    try:
        native = to_native(sd, latent_avg, cfg)
    except KeyError as e:
        raise CheckpointError(f"{path}: 'g_ema' lacks {e}; not a complete rosinality StyleGAN2 generator") from e
    if native["mapping.w_avg"] is None:
        # No stored average: estimated from 4096 seeded z when the generator is built (see load_generator).
        del native["mapping.w_avg"]
    return cfg, native


def _save(G: Generator, path: Path) -> None:
    if getattr(G, "family", "stylegan2") != "stylegan2":
        raise CheckpointError(f"{path}: rosinality's .pt format holds StyleGAN2 generators only (this one is "
                              f"{G.family}): save it as native .safetensors")
    cfg = G.cfg
    if cfg.img_channels != 3 or tuple(cfg.resample_filter) != (1, 3, 3, 1):
        raise CheckpointError(
            f"{path}: rosinality's format holds RGB generators with the [1,3,3,1] filter only (this one has "
            f"{cfg.img_channels} channels, filter {list(cfg.resample_filter)}): save it as native .safetensors")
    standard = cfg.channel_max == 512 and cfg.channel_base % 16384 == 0
    if not standard:
        log.warning("this generator's channel counts match no rosinality channel_multiplier; the file loads "
                    "here and in shape-inferring tools, not in rosinality's Generator class")
    if cfg.conv_clamp is not None:
        log.warning("rosinality's format has no conv_clamp (this generator clamps at %s); outputs differ only "
                    "where an activation reaches the clamp", cfg.conv_clamp)
    state = {"g_ema": from_native(G.state_dict(), cfg), "latent_avg": G.w_avg.detach().cpu().clone()}
    atomic_write(path, lambda p: torch.save(state, p))


ROSINALITY = register_format(CheckpointFormat(
    name="rosinality", description="rosinality stylegan2-pytorch .pt", sniff=_sniff, load=_load, save=_save,
    suffix=".pt"))

__all__ = ["ROSINALITY", "build_generator", "from_native", "to_native", "torch_load_safe"]
