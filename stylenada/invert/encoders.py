"""pSp (GradualStyleEncoder) and e4e (Encoder4Editing) image encoders with an IR-SE50 backbone.

Parameter names and shapes follow the official checkpoints (``psp_ffhq_encode.pt``, ``e4e_ffhq_encode.pt``):
a dict with ``state_dict`` (``encoder.*`` and the rosinality-format generator ``decoder.*``), ``latent_avg``
and ``opts`` (the training options as a plain dict). Both networks share one layout:

- ``input_layer``: 3x3 conv (no bias), BatchNorm, PReLU at 256x256;
- ``body``: 24 IR-SE bottleneck units in 4 stages of (3, 4, 14, 3) units, each stage halving the size;
  the ends of stages 2, 3 and 4 (body indices 6, 20, 23) feed a feature pyramid;
- ``styles.{i}``: one ``GradualStyleBlock`` per W+ entry (strided 3x3 convs down to 1x1, then an
  equalised-lr linear layer); entries 0-2 read the coarse 16x16 map, 3-6 the 32x32 map (``latlayer1``),
  7 and later the 64x64 map (``latlayer2``).

pSp outputs every W+ entry from its block; e4e outputs entry 0's code for every entry plus a delta from
each later block. Both add the checkpoint's ``latent_avg`` when trained with ``start_from_latent_avg``.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError, StylenadaError
from ..models.family import Generator

log = logging.getLogger(__name__)

INPUT_SIZE = 256  # every official encoder reads 256x256 images
STAGE_UNITS = (3, 4, 14, 3)  # IR-50 layout: units per stage; the first unit of each stage has stride 2
TAPS = (6, 20, 23)  # body indices whose outputs feed the pyramid (ends of stages 2, 3, 4)
COARSE_END, MIDDLE_END = 3, 7  # W+ entries [0, 3) coarse, [3, 7) middle, [7, n) fine
KINDS = {"psp": "GradualStyleEncoder", "e4e": "Encoder4Editing"}


@dataclass(frozen=True)
class EncoderConfig:
    """Architecture of a pSp/e4e encoder; the official FFHQ encoders are the defaults (18 W+ entries)."""

    kind: str = "psp"  # "psp" (GradualStyleEncoder) or "e4e" (Encoder4Editing)
    num_styles: int = 18  # W+ entries produced: 2 * log2(resolution) - 2 of the matching generator
    style_dim: int = 512  # size of each code (the generator's w_dim)
    input_nc: int = 3  # 3 for RGB; 6 for ReStyle-style iterative encoders (image + current reconstruction)
    depths: tuple[int, int, int, int] = (64, 128, 256, 512)  # channels of the 4 backbone stages
    se: bool = True  # IR-SE units (squeeze-and-excitation); False for plain IR units
    se_reduction: int = 16
    start_from_latent_avg: bool = True  # add latent_avg to the network output
    input_size: int = INPUT_SIZE  # images are resized to this; the official encoders read 256x256

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"encoder kind must be one of {sorted(KINDS)}, got {self.kind!r}")
        if self.num_styles < 1:
            raise ValueError(f"num_styles must be >= 1, got {self.num_styles}")
        object.__setattr__(self, "depths", tuple(int(d) for d in self.depths))

    @property
    def resolution(self) -> int:
        """Resolution of the generator this encoder feeds (num_styles = 2 * log2(resolution) - 2)."""
        return 2 ** ((self.num_styles + 2) // 2)

    @property
    def fpn_dim(self) -> int:
        return self.depths[3]

    def to_dict(self) -> dict:
        return {"kind": self.kind, "num_styles": self.num_styles, "style_dim": self.style_dim,
                "input_nc": self.input_nc, "depths": list(self.depths), "se": self.se,
                "se_reduction": self.se_reduction, "start_from_latent_avg": self.start_from_latent_avg,
                "input_size": self.input_size}


# --- network ---------------------------------------------------------------------------------------------


class SqueezeExcite(nn.Module):
    """Channel gating: global average, 1x1 conv down, ReLU, 1x1 conv up, sigmoid, multiply."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, bias=False)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(s))))


class IRUnit(nn.Module):
    """IR(-SE) bottleneck: BN, 3x3 conv, PReLU, strided 3x3 conv, BN (, SE), plus a shortcut.

    The shortcut is a strided 1x1 max pool (subsampling) when the channel count is kept, otherwise a strided
    1x1 conv and BN.
    """

    def __init__(self, in_ch: int, depth: int, stride: int, se: bool, se_reduction: int):
        super().__init__()
        if in_ch == depth:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(in_ch, depth, 1, stride, bias=False), nn.BatchNorm2d(depth))
        layers = [nn.BatchNorm2d(in_ch), nn.Conv2d(in_ch, depth, 3, 1, 1, bias=False), nn.PReLU(depth),
                  nn.Conv2d(depth, depth, 3, stride, 1, bias=False), nn.BatchNorm2d(depth)]
        if se:
            layers.append(SqueezeExcite(depth, se_reduction))
        self.res_layer = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate (weight scaled by 1/sqrt(fan_in) at run time)."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.scale = 1 / math.sqrt(in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)


class StyleBlock(nn.Module):
    """Map a ``spatial`` x ``spatial`` feature map to one code: log2(spatial) stride-2 convs, then a linear."""

    def __init__(self, in_ch: int, out_ch: int, spatial: int):
        super().__init__()
        self.out_ch = out_ch
        layers: list[nn.Module] = []
        for i in range(int(math.log2(spatial))):
            layers += [nn.Conv2d(in_ch if i == 0 else out_ch, out_ch, 3, 2, 1), nn.LeakyReLU(0.01)]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(out_ch, out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.convs(x).reshape(-1, self.out_ch))


def style_spatial(i: int, input_size: int = INPUT_SIZE) -> int:
    """Size of the pyramid level read by W+ entry ``i`` (16 coarse, 32 middle, 64 fine at 256 px input)."""
    base = max(input_size // 16, 1)
    return base if i < COARSE_END else 2 * base if i < MIDDLE_END else 4 * base


def upsample_add(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Bilinear (align_corners) upsampling of ``x`` to ``y``'s size, plus ``y``: the pyramid's top-down step."""
    return F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=True) + y


class GradualStyleNet(nn.Module):
    """The encoder network proper (keys without the ``encoder.`` prefix): image -> codes [N, num_styles, dim]."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.depths
        self.input_layer = nn.Sequential(nn.Conv2d(cfg.input_nc, d[0], 3, 1, 1, bias=False), nn.BatchNorm2d(d[0]),
                                         nn.PReLU(d[0]))
        units = []
        in_ch = d[0]
        for depth, n in zip(d, STAGE_UNITS, strict=True):
            for j in range(n):
                units.append(IRUnit(in_ch, depth, 2 if j == 0 else 1, cfg.se, cfg.se_reduction))
                in_ch = depth
        self.body = nn.Sequential(*units)
        self.styles = nn.ModuleList(StyleBlock(cfg.fpn_dim, cfg.style_dim, style_spatial(i, cfg.input_size))
                                    for i in range(cfg.num_styles))
        self.latlayer1 = nn.Conv2d(d[2], cfg.fpn_dim, 1)
        self.latlayer2 = nn.Conv2d(d[1], cfg.fpn_dim, 1)

    def pyramid(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Backbone features at the three taps: (c1 64x64, c2 32x32, c3 16x16) for a 256x256 input."""
        x = self.input_layer(x)
        taps = []
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in TAPS:
                taps.append(x)
        return taps[0], taps[1], taps[2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c1, c2, c3 = self.pyramid(x)
        n = self.cfg.num_styles
        if self.cfg.kind == "psp":
            p2 = upsample_add(c3, self.latlayer1(c2))
            p1 = upsample_add(p2, self.latlayer2(c1))
            levels = [c3 if i < COARSE_END else p2 if i < MIDDLE_END else p1 for i in range(n)]
            return torch.stack([self.styles[i](f) for i, f in enumerate(levels)], dim=1)
        # e4e: one base code for every entry, then a delta per later entry (all deltas: inference stage).
        w0 = self.styles[0](c3)
        deltas = [torch.zeros_like(w0)]
        features = c3
        for i in range(1, n):
            if i == COARSE_END:
                features = p2 = upsample_add(c3, self.latlayer1(c2))
            elif i == MIDDLE_END:
                features = upsample_add(p2, self.latlayer2(c1))
            deltas.append(self.styles[i](features))
        return w0.unsqueeze(1) + torch.stack(deltas, dim=1)


# --- the public encoder ------------------------------------------------------------------------------------


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """Square NCHW images to ``size`` x ``size``: area pooling for integer downscaling (as pSp's face_pool),
    otherwise antialiased bilinear."""
    h, w = images.shape[-2:]
    if (h, w) == (size, size):
        return images
    if h == w and h > size and h % size == 0:
        return F.adaptive_avg_pool2d(images, size)
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


class Encoder(nn.Module):
    """A pSp/e4e encoder: ``E(images)`` -> W+ codes ``[N, num_styles, style_dim]`` (``latent_avg`` added).

    Images are NCHW in [-1, 1]; other sizes than 256 are resized. Build with :func:`load_encoder` or
    ``Encoder(cfg)`` (random weights). ``decoder_state`` holds the checkpoint's generator (rosinality keys),
    if any; :meth:`decoder` builds it.
    """

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = GradualStyleNet(cfg)
        self.register_buffer("latent_avg", torch.zeros(cfg.num_styles, cfg.style_dim))
        self.decoder_state: dict[str, torch.Tensor] | None = None
        self.source = "<random>"
        self.input_size = cfg.input_size

    @property
    def num_ws(self) -> int:
        return self.cfg.num_styles

    @property
    def w_dim(self) -> int:
        return self.cfg.style_dim

    @property
    def iterative(self) -> bool:
        """True for ReStyle-style encoders that read the image and the current reconstruction (6 channels)."""
        return self.cfg.input_nc == 6

    def _prepare(self, images: torch.Tensor, channels: int) -> torch.Tensor:
        assert images.ndim == 4, f"images must be NCHW, got shape {tuple(images.shape)}"
        if images.shape[1] != channels:
            raise StylenadaError(f"{self.source}: this encoder reads {channels}-channel images, got "
                                 f"{images.shape[1]} channels; pass RGB images in [-1, 1]")
        if images.shape[-1] != images.shape[-2]:
            raise StylenadaError(f"encoder input must be square, got {images.shape[-2]}x{images.shape[-1]}: "
                                 "align or crop the image first")
        p = self.latent_avg
        return resize_images(images.to(device=p.device, dtype=p.dtype), self.input_size)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The network's raw output for prepared input ``x`` [N, input_nc, 256, 256] (no latent_avg)."""
        out = self.encoder(x)
        assert out.shape[1:] == (self.num_ws, self.w_dim), tuple(out.shape)
        return out

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.iterative:
            raise StylenadaError(f"{self.source} is an iterative (ReStyle-style, 6-channel) encoder: call "
                                 "E.invert(images, G, iterations=n), which feeds back the reconstruction")
        codes = self.encode(self._prepare(images, self.cfg.input_nc))
        return codes + self.latent_avg if self.cfg.start_from_latent_avg else codes

    def check_generator(self, G: Generator) -> None:
        """Raise a clear error unless ``G`` takes this encoder's codes (same W+ length and w size)."""
        if (G.num_ws, G.w_dim) != (self.num_ws, self.w_dim):
            raise StylenadaError(
                f"encoder {self.source} produces {self.num_ws} W+ codes of size {self.w_dim} (a "
                f"{self.cfg.resolution}px generator), but the generator takes {G.num_ws} of size {G.w_dim} "
                f"({G.resolution}px): use an encoder trained for this generator, or optimisation (--optimize)")

    def invert(self, images: torch.Tensor, G: Generator, iterations: int = 1) -> torch.Tensor:
        """W+ codes of ``images`` for ``G``.

        Official pSp/e4e encoders are single-pass (``iterations=1``). ReStyle-style encoders (6 input
        channels) refine iteratively: w_0 = latent_avg, y_0 = G(w_0), w_{t+1} = w_t + E([x, y_t]),
        y_{t+1} = G(w_{t+1}) resized to 256; ``iterations`` steps are taken.
        """
        self.check_generator(G)
        if iterations < 1:
            raise StylenadaError(f"iterations must be >= 1, got {iterations}")
        if not self.iterative:
            if iterations != 1:
                raise StylenadaError(f"{self.source} is a single-pass encoder (official pSp/e4e): use "
                                     "iterations=1; iterative refinement needs a ReStyle-style 6-channel encoder")
            return self(images)
        x = self._prepare(images, 3)
        ws = self.latent_avg.unsqueeze(0).expand(x.shape[0], -1, -1)
        for _ in range(iterations):
            y = resize_images(G.synthesis(ws.to(G.w_avg.device), noise_mode="const").to(x), self.input_size)
            ws = ws + self.encode(torch.cat([x, y], dim=1))
        return ws

    def decoder(self, device: str | torch.device = "cpu") -> Generator:
        """The generator stored in the checkpoint (``decoder.*``), with ``latent_avg`` as its mean w."""
        if self.decoder_state is None:
            raise StylenadaError(f"{self.source} stores no generator (decoder.*): pass the generator checkpoint "
                                 "it was trained with")
        known = bool(self.latent_avg.any())  # all zeros: the checkpoint had none (estimated from the decoder then)
        return decoder_from_state(self.decoder_state, self.latent_avg[0] if known else None, self.source).to(device)


def decoder_from_state(state: dict[str, torch.Tensor], latent_avg: torch.Tensor | None, source: str) -> Generator:
    """Build a :class:`Generator` from a rosinality-format state dict (an encoder checkpoint's ``decoder.*``)."""
    from ..formats.registry import build_generator
    from ..formats.rosinality import infer_config, to_native

    cfg = infer_config(state, Path(source))
    try:
        native = to_native(state, latent_avg, cfg)
    except KeyError as e:
        raise CheckpointError(f"{source}: the stored decoder lacks {e}; not a complete StyleGAN2 generator") from e
    if native["mapping.w_avg"] is None:
        native["mapping.w_avg"] = torch.zeros(cfg.w_dim)
    G = build_generator(cfg, native, source)
    if latent_avg is None:
        G.mapping.w_avg.copy_(G.estimate_w_avg())
    return G.eval()


# --- checkpoints ---------------------------------------------------------------------------------------------


def _prefixed(sd: dict, prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in sd.items() if isinstance(k, str) and k.startswith(prefix)}


def infer_encoder_config(enc: dict[str, torch.Tensor], opts: dict, source: str,
                         kind: str | None = None) -> EncoderConfig:
    """The architecture of an encoder state dict (keys without ``encoder.``), checked against ``opts``."""
    etype = opts.get("encoder_type")
    if "input_layer.0.weight" not in enc or "styles.0.linear.weight" not in enc or "latlayer1.weight" not in enc:
        name = f" ({etype})" if etype else ""
        raise CheckpointError(f"{source}: unsupported encoder architecture{name}; stylenada reads pSp "
                              "(GradualStyleEncoder) and e4e (Encoder4Editing) checkpoints")
    if kind is None:
        if etype in KINDS.values():
            kind = next(k for k, v in KINDS.items() if v == etype)
        elif etype is not None:
            raise CheckpointError(f"{source}: unsupported encoder_type {etype!r}; stylenada reads "
                                  "GradualStyleEncoder (pSp) and Encoder4Editing (e4e) checkpoints")
        elif "stylegan_size" in opts:  # only e4e's options have it (pSp's is output_size)
            kind = "e4e"
        elif "output_size" in opts or "n_styles" in opts:
            kind = "psp"
        else:
            raise CheckpointError(f"{source}: cannot tell whether this is a pSp or an e4e encoder (no "
                                  "opts['encoder_type']); pass kind='psp' or kind='e4e' to load_encoder")
    elif kind not in KINDS:
        raise StylenadaError(f"unknown encoder kind {kind!r}: use 'psp' or 'e4e'")
    n_units = len({k.split(".")[1] for k in enc if k.startswith("body.")})
    if n_units != sum(STAGE_UNITS):
        raise CheckpointError(f"{source}: the backbone has {n_units} units; only the 50-layer IR/IR-SE backbone "
                              f"({sum(STAGE_UNITS)} units) of the official encoders is supported")
    starts = [sum(STAGE_UNITS[:s]) for s in range(4)]
    depths = tuple(int(enc[f"body.{i}.res_layer.1.weight"].shape[0]) for i in starts)
    num_styles = len([k for k in enc if k.startswith("styles.") and k.endswith(".linear.weight")])
    se = "body.0.res_layer.5.fc1.weight" in enc
    cfg = EncoderConfig(
        kind=kind, num_styles=num_styles, style_dim=int(enc["styles.0.linear.weight"].shape[0]),
        input_nc=int(enc["input_layer.0.weight"].shape[1]), depths=depths, se=se,
        se_reduction=depths[0] // int(enc["body.0.res_layer.5.fc1.weight"].shape[0]) if se else 16,
        start_from_latent_avg=bool(opts.get("start_from_latent_avg", True)),
        input_size=int(opts.get("input_size", INPUT_SIZE)))
    size = opts.get("output_size", opts.get("stylegan_size"))
    if isinstance(size, int) and size != cfg.resolution and not opts.get("learn_in_w"):
        raise CheckpointError(f"{source}: opts say a {size}px generator but the encoder has {num_styles} style "
                              f"blocks ({cfg.resolution}px); the checkpoint is inconsistent")
    return cfg


def _read_checkpoint(path: Path) -> dict:
    from ..formats.native import NATIVE
    from ..formats.registry import check_file
    from ..formats.rosinality import torch_load_safe

    path = check_file(path)
    with open(path, "rb") as f:
        head = f.read(64)
    what = None
    if NATIVE.sniff(path, head):
        what = "a safetensors file (stylenada's generator format)"
    elif path.suffix == ".pkl" and head[:1] == b"\x80":
        what = "a pickle (NVIDIA's generator format)"
    elif not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
        raise CheckpointError(f"{path} is not a PyTorch checkpoint; --encoder takes a pSp/e4e checkpoint such as "
                              "e4e_ffhq_encode.pt")
    if what is not None:
        raise CheckpointError(f"{path} is {what}, not an encoder: pass generators with --generator/--source; "
                              "--encoder takes a pSp/e4e checkpoint such as e4e_ffhq_encode.pt")
    ckpt = torch_load_safe(path)
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: expected a dict checkpoint, found {type(ckpt).__name__}")
    if "g_ema" in ckpt or "style.1.weight" in ckpt:
        raise CheckpointError(f"{path} is a generator checkpoint (rosinality g_ema), not an encoder: pass it as "
                              "--generator; --encoder takes a pSp/e4e checkpoint such as e4e_ffhq_encode.pt")
    sd = ckpt.get("state_dict")
    if not isinstance(sd, dict) or not any(isinstance(k, str) and k.startswith("encoder.") for k in sd):
        keys = ", ".join(map(str, list(ckpt)[:8]))
        raise CheckpointError(f"{path}: not a pSp/e4e encoder checkpoint (no state_dict with encoder.* keys; "
                              f"keys: {keys})")
    return ckpt


def _latent_avg(ckpt: dict, cfg: EncoderConfig, source: str) -> torch.Tensor | None:
    avg = ckpt.get("latent_avg")
    if avg is None:
        return None
    if not isinstance(avg, torch.Tensor) or avg.shape[-1] != cfg.style_dim or avg.ndim > 2 or (
            avg.ndim == 2 and avg.shape[0] not in (1, cfg.num_styles)):
        shape = tuple(avg.shape) if isinstance(avg, torch.Tensor) else type(avg).__name__
        raise CheckpointError(f"{source}: latent_avg has shape {shape}, expected [{cfg.num_styles}, "
                              f"{cfg.style_dim}] or [{cfg.style_dim}]; the checkpoint is corrupt")
    return avg.float().reshape(-1, cfg.style_dim).expand(cfg.num_styles, -1).clone()


def load_encoder(path: str | os.PathLike, device: str | torch.device = "cpu", kind: str | None = None) -> Encoder:
    """Load an official-format pSp/e4e checkpoint (architecture inferred); returned in eval mode on ``device``.

    ``kind`` ('psp' or 'e4e') is needed only when the file's ``opts`` do not say which network it is.
    """
    path = Path(path)
    ckpt = _read_checkpoint(path)
    opts = ckpt.get("opts") if isinstance(ckpt.get("opts"), dict) else {}
    sd = ckpt["state_dict"]
    enc = _prefixed(sd, "encoder.")
    cfg = infer_encoder_config(enc, opts, str(path), kind)
    E = Encoder(cfg)
    missing = sorted(set(E.encoder.state_dict()) - set(enc))
    unexpected = sorted(set(enc) - set(E.encoder.state_dict()))
    if missing or unexpected:
        raise CheckpointError(f"{path}: encoder keys do not match a {KINDS[cfg.kind]} (missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]}); unsupported architecture")
    try:
        E.encoder.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in enc.items()})
    except RuntimeError as e:
        raise CheckpointError(f"{path}: encoder tensor shapes do not match the inferred architecture "
                              f"({str(e).splitlines()[-1].strip()[:200]}); unsupported architecture") from e
    decoder = _prefixed(sd, "decoder.") or None
    E.decoder_state = decoder
    E.source = str(path)
    avg = _latent_avg(ckpt, cfg, str(path))
    if avg is None and (cfg.start_from_latent_avg or E.iterative):
        if decoder is None:
            raise CheckpointError(f"{path}: the encoder adds latent_avg but the checkpoint stores neither "
                                  "latent_avg nor a decoder to estimate it from; the checkpoint is incomplete")
        log.warning("%s stores no latent_avg: estimating it from the stored decoder", path)
        avg = decoder_from_state(decoder, None, str(path)).w_avg.detach().expand(cfg.num_styles, -1).clone()
    if avg is not None:
        E.latent_avg.copy_(avg)
    return E.eval().to(device)


def encoder_checkpoint(E: Encoder, decoder: Generator | None = None, opts: dict | None = None) -> dict:
    """The official checkpoint layout for ``E`` (and optionally a generator as ``decoder.*``)."""
    from ..formats.rosinality import from_native

    cfg = E.cfg
    sd = {f"encoder.{k}": v.detach().cpu().clone() for k, v in E.encoder.state_dict().items()}
    if decoder is not None:
        E.check_generator(decoder)
        sd.update({f"decoder.{k}": v for k, v in from_native(decoder.state_dict(), decoder.cfg).items()})
    size_key = "stylegan_size" if cfg.kind == "e4e" else "output_size"
    base = {"encoder_type": KINDS[cfg.kind], size_key: cfg.resolution, "input_nc": cfg.input_nc,
            "start_from_latent_avg": cfg.start_from_latent_avg, "learn_in_w": False}
    if cfg.input_size != INPUT_SIZE:  # our own encoders of small generators (not in the official opts)
        base["input_size"] = cfg.input_size
    return {"state_dict": sd, "latent_avg": E.latent_avg.detach().cpu().clone(), "opts": {**base, **(opts or {})}}


def save_encoder(E: Encoder, path: str | os.PathLike, decoder: Generator | None = None) -> Path:
    """Write ``E`` atomically in the official pSp/e4e checkpoint format."""
    from ..utils.io import atomic_write

    ckpt = encoder_checkpoint(E, decoder)
    atomic_write(Path(path), lambda p: torch.save(ckpt, p))
    return Path(path)


def random_encoder(cfg: EncoderConfig, seed: int = 0) -> Encoder:
    """An encoder with seeded random weights, including BatchNorm statistics and a random latent_avg (tests)."""
    gen = torch.Generator().manual_seed(seed)
    E = Encoder(cfg)

    def rand(t: torch.Tensor, mean: float, std: float) -> None:
        t.copy_(mean + std * torch.randn(t.shape, generator=gen))

    with torch.no_grad():
        for m in E.modules():
            if isinstance(m, nn.BatchNorm2d):
                rand(m.weight, 1.0, 0.1)
                rand(m.bias, 0.0, 0.1)
                rand(m.running_mean, 0.0, 0.1)
                m.running_var.copy_(1 + 0.5 * torch.rand(m.running_var.shape, generator=gen))
            elif isinstance(m, nn.PReLU):
                rand(m.weight, 0.25, 0.05)
            elif isinstance(m, nn.Conv2d | EqualLinear) and m.bias is not None:
                rand(m.bias, 0.0, 0.1)
        E.latent_avg.copy_(torch.randn(1, cfg.style_dim, generator=gen).expand(cfg.num_styles, -1))
    return E.eval()


def with_kind(E: Encoder, kind: str) -> Encoder:
    """The same weights run as the other network type (pSp and e4e share every parameter name)."""
    out = Encoder(replace(E.cfg, kind=kind))
    out.load_state_dict(E.state_dict())
    out.decoder_state, out.source = E.decoder_state, E.source
    return out.eval()
