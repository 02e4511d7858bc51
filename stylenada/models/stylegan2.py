"""StyleGAN2 generator and discriminator in pure PyTorch (config "F", skip generator, residual D).

One implementation serves every checkpoint format: rosinality's and NVIDIA's files are mapped onto
these modules' state dicts by ``stylenada.formats``. Parameter names and shapes follow NVIDIA's
stylegan2-ada layout (``mapping.fc{i}``, ``synthesis.b{res}.conv0/conv1/torgb``), which is also our
native format.

W+ layout (``num_ws = 2 * log2(resolution) - 2``): entry 0 drives ``b4.conv1``; for each later block at
index i (i = 1, 3, 5, ...), entry i drives ``conv0`` (the upsampling conv) and the previous block's
``torgb``, entry i+1 drives ``conv1``; the last entry drives only the last ``torgb``. ``GeneratorConfig.
layout()`` is the one description of it that the forward pass, layer groups and key maps follow.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import nn

from .family import NOISE_MODES, FieldChecks, GeneratorFamily, check_config_keys, mix_styles, register_family, run_layer
from .ops import LRELU_GAIN, bias_act, modulated_conv2d, setup_filter, upfirdn2d, upsample2d


@dataclass(frozen=True)
class LayerSlot:
    """One modulated layer of the synthesis network and the W+ entry that drives it."""

    name: str  # e.g. "b8.conv0"
    w_index: int
    role: str  # "conv" (modulated 3x3 conv) or "torgb"
    resolution: int


# Role of each synthesis parameter by its last name part (see SynthesisNetwork.parameter_role).
PARAMETER_ROLES = {"const": "input", "weight": "weight", "bias": "bias", "noise_strength": "noise"}


@dataclass(frozen=True)
class GeneratorConfig:
    """Architecture hyper-parameters; everything needed to rebuild a generator from its weights.

    Channels at resolution r are ``min(channel_base // r, channel_max)``: rosinality's
    ``channel_multiplier`` m is ``channel_base = 16384 * m`` with ``channel_max = 512``.
    """

    resolution: int = 256
    z_dim: int = 512
    w_dim: int = 512
    mapping_layers: int = 8
    mapping_lr_mul: float = 0.01
    channel_base: int = 32768
    channel_max: int = 512
    img_channels: int = 3
    conv_clamp: float | None = None  # NVIDIA's released pickles clamp conv outputs to +-256.
    resample_filter: tuple[int, ...] = (1, 3, 3, 1)
    w_avg_beta: float = 0.995  # decay of the tracked mean w while training

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Every field typed and in a sane range (a checkpoint's metadata is untrusted input): ValueError
        naming the field otherwise. Bounds keep a corrupt file from building a network of absurd size."""

        check = FieldChecks(self)
        res = check.style_network()
        if self.channel_base < res:
            raise ValueError(f"channel_base {self.channel_base} leaves no channels at {res} px (needs >= {res})")
        f = self.resample_filter
        if not isinstance(f, (tuple, list)) or not 1 <= len(f) <= 16:
            raise ValueError(f"resample_filter must be a list of 1 to 16 numbers, got {f!r:.40}")
        for x in f:
            check.real("resample_filter", -1e6, 1e6, x)
        if abs(sum(f)) < 1e-6:
            raise ValueError(f"resample_filter must not sum to zero, got {list(f)!r:.60}")

    @classmethod
    def from_channel_multiplier(cls, resolution: int, channel_multiplier: int = 2, **kw) -> GeneratorConfig:
        return cls(resolution=resolution, channel_base=16384 * channel_multiplier, channel_max=512, **kw)

    @property
    def resolutions(self) -> list[int]:
        return [2**i for i in range(2, int(math.log2(self.resolution)) + 1)]

    def channels(self, res: int) -> int:
        return min(self.channel_base // res, self.channel_max)

    @property
    def num_ws(self) -> int:
        return 2 * int(math.log2(self.resolution)) - 2

    def layout(self) -> list[LayerSlot]:
        """Every modulated layer in synthesis order with the W+ entry that drives it: the one description of
        the W+ layout that the forward pass, the layer groups and the checkpoint key maps all follow.

        Entry 0 drives ``b4.conv1``; each later block's upsampling ``conv0`` takes the next entry, which also
        drives the previous block's ``torgb``; its ``conv1`` takes the entry after; the last entry drives
        only the last ``torgb``."""
        slots, idx = [], 0
        for res in self.resolutions:
            for conv in (["conv1"] if res == 4 else ["conv0", "conv1"]):
                slots.append(LayerSlot(f"b{res}.{conv}", idx, "conv", res))
                idx += 1
            slots.append(LayerSlot(f"b{res}.torgb", idx, "torgb", res))
        assert idx == self.num_ws - 1
        return slots

    def min_weight_count(self) -> int:
        """A lower bound on the numbers a checkpoint of this architecture holds (mapping weights, the const,
        conv and ToRGB weights): checked against a file's tensors before the network is built."""
        n = self.z_dim * self.w_dim + (self.mapping_layers - 1) * self.w_dim**2
        prev = 0
        for res in self.resolutions:
            c = self.channels(res)
            n += (c * 16 if res == 4 else prev * c * 9) + c * c * 9 + self.img_channels * c
            prev = c
        return n

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["resample_filter"] = list(self.resample_filter)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> GeneratorConfig:
        check_config_keys(cls, d)
        d = dict(d)
        if isinstance(d.get("resample_filter"), list):
            d["resample_filter"] = tuple(d["resample_filter"])
        return cls(**d)


class FullyConnected(nn.Module):
    """Linear layer with equalised learning rate: weights stored as N(0, 1/lr_mul^2), scaled at run time."""

    def __init__(self, in_features: int, out_features: int, act: str = "linear", lr_mul: float = 1.0,
                 bias_init: float = 0.0):
        super().__init__()
        self.act = act
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init)))
        self.weight_gain = lr_mul / math.sqrt(in_features)
        self.bias_gain = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias.to(x.dtype) * self.bias_gain
        if self.act == "linear":
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, act=self.act)


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """PixelNorm of the latent z: scale each vector to unit root-mean-square."""
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


class MappingNetwork(nn.Module):
    """z -> w: PixelNorm then ``num_layers`` equalised-lr linear layers (lr x0.01) with leaky ReLU."""

    def __init__(self, z_dim: int, w_dim: int, num_ws: int, num_layers: int = 8, lr_mul: float = 0.01,
                 w_avg_beta: float = 0.995):
        super().__init__()
        self.z_dim, self.w_dim, self.num_ws, self.num_layers = z_dim, w_dim, num_ws, num_layers
        self.w_avg_beta = w_avg_beta
        for i in range(num_layers):
            layer = FullyConnected(z_dim if i == 0 else w_dim, w_dim, act="lrelu", lr_mul=lr_mul)
            setattr(self, f"fc{i}", layer)
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0, truncation_cutoff: int | None = None,
                update_w_avg: bool = False) -> torch.Tensor:
        """Returns W+ codes [N, num_ws, w_dim], truncated toward ``w_avg`` for the first
        ``truncation_cutoff`` entries (all when None)."""
        assert z.ndim == 2 and z.shape[1] == self.z_dim, f"z must be [N, {self.z_dim}], got {tuple(z.shape)}"
        x = normalize_2nd_moment(z.float())
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        if update_w_avg:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        ws = x.unsqueeze(1).repeat(1, self.num_ws, 1)
        if truncation_psi != 1:
            cutoff = self.num_ws if truncation_cutoff is None else truncation_cutoff
            ws[:, :cutoff] = self.w_avg.lerp(ws[:, :cutoff], truncation_psi)
        return ws


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (optionally 2x upsampling) + noise + bias + leaky ReLU, driven by one w."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, up: int = 1,
                 resample_filter: tuple[int, ...] = (1, 3, 3, 1), conv_clamp: float | None = None):
        super().__init__()
        self.resolution, self.up, self.conv_clamp = resolution, up, conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter), persistent=False)
        self.affine = FullyConnected(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "const",
                noise: torch.Tensor | None = None) -> torch.Tensor:
        assert x.shape[1:] == (self.weight.shape[1], self.resolution // self.up, self.resolution // self.up)
        styles = self.affine(w)
        x = modulated_conv2d(x, self.weight, styles, demodulate=True, up=self.up, padding=1,
                             resample_filter=self.resample_filter)
        if noise is None:
            if noise_mode == "random":
                noise = torch.randn(x.shape[0], 1, self.resolution, self.resolution, device=x.device,
                                    dtype=x.dtype)
            elif noise_mode == "const":
                noise = self.noise_const
        if noise is not None:
            x = x + noise.to(x.dtype) * self.noise_strength.to(x.dtype)
        clamp = self.conv_clamp
        return bias_act(x, self.bias, act="lrelu", gain=LRELU_GAIN, clamp=clamp)


class ToRGBLayer(nn.Module):
    """Modulated 1x1 conv to RGB without demodulation, plus bias."""

    def __init__(self, in_channels: int, img_channels: int, w_dim: int, conv_clamp: float | None = None):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnected(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn(img_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(img_channels))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False)
        return bias_act(x, self.bias, clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution of the skip generator: (const | upsampling conv0), conv1, torgb."""

    def __init__(self, in_channels: int, out_channels: int, cfg: GeneratorConfig, resolution: int):
        super().__init__()
        self.resolution = resolution
        self.register_buffer("resample_filter", setup_filter(cfg.resample_filter), persistent=False)
        kw = dict(w_dim=cfg.w_dim, resolution=resolution, resample_filter=cfg.resample_filter,
                  conv_clamp=cfg.conv_clamp)
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, up=2, **kw)
        self.conv1 = SynthesisLayer(out_channels, out_channels, **kw)
        self.torgb = ToRGBLayer(out_channels, cfg.img_channels, cfg.w_dim, conv_clamp=cfg.conv_clamp)
        self.num_conv = 1 if in_channels == 0 else 2

    def conv_layers(self) -> list[SynthesisLayer]:
        return [self.conv1] if self.num_conv == 1 else [self.conv0, self.conv1]


class SynthesisNetwork(nn.Module):
    """W+ codes [N, num_ws, w_dim] -> images [N, C, R, R] in about [-1, 1]."""

    checkpointing = False  # recompute each layer's activations in the backward pass (less memory, more time)

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.cfg = cfg
        self.resolution, self.w_dim, self.num_ws = cfg.resolution, cfg.w_dim, cfg.num_ws
        for res in cfg.resolutions:
            in_ch = 0 if res == 4 else cfg.channels(res // 2)
            setattr(self, f"b{res}", SynthesisBlock(in_ch, cfg.channels(res), cfg, res))

    def blocks(self) -> list[SynthesisBlock]:
        return [getattr(self, f"b{res}") for res in self.cfg.resolutions]

    def layers_by_w(self) -> list[list[tuple[str, nn.Module]]]:
        """For each W+ index, the (qualified name, module) of every synthesis layer it drives."""
        out: list[list[tuple[str, nn.Module]]] = [[] for _ in range(self.num_ws)]
        for slot in self.cfg.layout():
            out[slot.w_index].append((slot.name, self.get_submodule(slot.name)))
        return out

    def parameter_role(self, name: str) -> str:
        """The role of a synthesis parameter (``b8.conv0.affine.weight`` -> 'affine'): 'input' (the const),
        'affine' (style modulation), 'noise' (noise strength), 'weight' or 'bias' of a conv or ToRGB."""
        parts = name.split(".")
        return "affine" if "affine" in parts else PARAMETER_ROLES[parts[-1]]

    def conv_layers_by_w(self) -> list[tuple[str, SynthesisLayer]]:
        """The modulated 3x3 conv driven by each W+ index (the last index drives only a ToRGB)."""
        return [next((n, m) for n, m in group if isinstance(m, SynthesisLayer))
                for group in self.layers_by_w()[:-1]]

    def noise_resolutions(self) -> list[int]:
        """Resolution of the noise map of each modulated conv, in the order ``forward`` consumes them."""
        return [slot.resolution for slot in self.cfg.layout() if slot.role == "conv"]

    def sample_noise(self, n: int, generator: torch.Generator | None = None,
                     device: torch.device | str | None = None) -> list[torch.Tensor]:
        """Per-pixel noise maps [n, 1, r, r] for every conv, from ``generator`` (so that two generators
        can be rendered under the same noise, and a run can be replayed)."""
        device = torch.device(device) if device is not None else self.b4.const.device
        gen_device = generator.device if generator is not None else torch.device("cpu")
        return [torch.randn(n, 1, r, r, generator=generator, device=gen_device).to(device)
                for r in self.noise_resolutions()]

    def forward(self, ws: torch.Tensor, noise_mode: str = "const",
                noise: list[torch.Tensor | None] | None = None) -> torch.Tensor:
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        assert ws.ndim == 3 and ws.shape[1:] == (self.num_ws, self.w_dim), (
            f"ws must be [N, {self.num_ws}, {self.w_dim}], got {tuple(ws.shape)}")
        noise_iter = iter(noise if noise is not None else [None] * (self.num_ws - 1))
        x = img = None
        for slot in self.cfg.layout():
            block = getattr(self, slot.name.split(".")[0])
            w = ws[:, slot.w_index]
            if slot.role == "conv":
                if x is None:
                    x = block.const.unsqueeze(0).expand(ws.shape[0], -1, -1, -1).to(ws.dtype)
                layer = block.get_submodule(slot.name.split(".")[1])
                x = run_layer(layer, self.checkpointing, x, w, noise_mode=noise_mode, noise=next(noise_iter))
            else:
                y = run_layer(block.torgb, self.checkpointing, x, w)
                img = y if img is None else upsample2d(img, block.resample_filter) + y
        return img


class StyleGenerator(nn.Module):
    """A mapping and a synthesis network: ``G(z)`` = ``G.synthesis(G.mapping(z))``, images NCHW in about
    [-1, 1]. What StyleGAN2 and StyleGAN3 share; each names its ``family`` and ``synthesis_class``."""

    family: str
    synthesis_class: type[nn.Module]

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.z_dim, self.w_dim, self.num_ws, self.resolution = cfg.z_dim, cfg.w_dim, cfg.num_ws, cfg.resolution
        self.img_channels = cfg.img_channels
        self.mapping = MappingNetwork(cfg.z_dim, cfg.w_dim, cfg.num_ws, cfg.mapping_layers, cfg.mapping_lr_mul,
                                      cfg.w_avg_beta)
        self.synthesis = self.synthesis_class(cfg)

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0, noise_mode: str = "const",
                truncation_cutoff: int | None = None) -> torch.Tensor:
        return self.synthesis(self.mapping(z, truncation_psi, truncation_cutoff), noise_mode=noise_mode)

    @property
    def w_avg(self) -> torch.Tensor:
        return self.mapping.w_avg

    @torch.no_grad()
    def estimate_w_avg(self, n: int = 4096, seed: int = 0) -> torch.Tensor:
        """Mean of w over ``n`` seeded z (for checkpoints that store no average)."""
        gen = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.z_dim, generator=gen).to(self.w_avg.device)
        return self.mapping(z)[:, 0].mean(dim=0)

    def synthesis_parameters(self) -> list[nn.Parameter]:
        return list(self.synthesis.parameters())


class Generator(StyleGenerator):
    """StyleGAN2 generator (config F and its smaller variants)."""

    family = "stylegan2"
    synthesis_class = SynthesisNetwork


# ----------------------------------------------------------------------------------------------------
# Discriminator (residual, with minibatch standard deviation), used to train the shapes-world GAN.


@dataclass(frozen=True)
class DiscriminatorConfig:
    resolution: int = 256
    img_channels: int = 3
    channel_base: int = 32768
    channel_max: int = 512
    mbstd_group: int = 4
    mbstd_channels: int = 1
    resample_filter: tuple[int, ...] = (1, 3, 3, 1)

    def channels(self, res: int) -> int:
        return min(self.channel_base // res, self.channel_max)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["resample_filter"] = list(self.resample_filter)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> DiscriminatorConfig:
        d = dict(d)
        if isinstance(d.get("resample_filter"), list):
            d["resample_filter"] = tuple(d["resample_filter"])
        return cls(**d)


class Conv2dLayer(nn.Module):
    """Equalised-lr conv with optional 2x FIR downsampling before a stride-2 convolution."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 act: str = "linear", down: int = 1, resample_filter: tuple[int, ...] = (1, 3, 3, 1)):
        super().__init__()
        self.act, self.down, self.padding = act, down, kernel_size // 2
        self.register_buffer("resample_filter", setup_filter(resample_filter), persistent=False)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        w = self.weight * self.weight_gain
        if self.down > 1:
            k = self.weight.shape[-1]
            fw = self.resample_filter.numel()
            p = (fw - self.down) + (k - 1)
            x = upfirdn2d(x, self.resample_filter, pad=((p + 1) // 2, p // 2))
            x = torch.nn.functional.conv2d(x, w, stride=self.down)
        else:
            x = torch.nn.functional.conv2d(x, w, padding=self.padding)
        act_gain = (LRELU_GAIN if self.act == "lrelu" else 1.0) * gain
        return bias_act(x, self.bias, act=self.act, gain=act_gain)


class DiscriminatorBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, cfg: DiscriminatorConfig):
        super().__init__()
        f = cfg.resample_filter
        self.conv0 = Conv2dLayer(in_channels, in_channels, 3, act="lrelu")
        self.conv1 = Conv2dLayer(in_channels, out_channels, 3, act="lrelu", down=2, resample_filter=f)
        self.skip = Conv2dLayer(in_channels, out_channels, 1, bias=False, down=2, resample_filter=f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.skip(x, gain=math.sqrt(0.5))
        x = self.conv1(self.conv0(x), gain=math.sqrt(0.5))
        return x + y


class Discriminator(nn.Module):
    """Residual StyleGAN2 discriminator: fromrgb, blocks down to 4x4, minibatch std, conv, fc, logit."""

    def __init__(self, cfg: DiscriminatorConfig):
        super().__init__()
        self.cfg = cfg
        res = cfg.resolution
        self.fromrgb = Conv2dLayer(cfg.img_channels, cfg.channels(res), 1, act="lrelu")
        blocks = []
        while res > 4:
            blocks.append(DiscriminatorBlock(cfg.channels(res), cfg.channels(res // 2), cfg))
            res //= 2
        self.blocks = nn.Sequential(*blocks)
        c4 = cfg.channels(4)
        self.conv = Conv2dLayer(c4 + cfg.mbstd_channels, c4, 3, act="lrelu")
        self.fc = FullyConnected(c4 * 16, c4, act="lrelu")
        self.out = FullyConnected(c4, 1)

    def minibatch_std(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = min(self.cfg.mbstd_group, n)
        assert n % g == 0, f"batch {n} must be a multiple of the minibatch-std group {g}"
        f = self.cfg.mbstd_channels
        y = x.reshape(g, -1, f, c // f, h, w)
        y = (y - y.mean(dim=0)).square().mean(dim=0).add(1e-8).sqrt()  # [N/G, F, C/F, H, W]
        y = y.mean(dim=[2, 3, 4]).reshape(-1, f, 1, 1).repeat(g, 1, h, w)
        return torch.cat([x, y], dim=1)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.fromrgb(img))
        x = self.conv(self.minibatch_std(x))
        return self.out(self.fc(x.flatten(1)))


STYLEGAN2 = register_family(GeneratorFamily(
    "stylegan2", GeneratorConfig, Generator, "StyleGAN2 config F (skip generator)",
    preset=lambda resolution, channel_multiplier=2: GeneratorConfig.from_channel_multiplier(resolution,
                                                                                            channel_multiplier)))

__all__ = ["STYLEGAN2", "Discriminator", "DiscriminatorConfig", "Generator", "GeneratorConfig", "LayerSlot",
           "mix_styles", "normalize_2nd_moment"]
