"""StyleGAN3 generator (configs T and R) in pure PyTorch, no compiled ops.

Follows "Alias-Free Generative Adversarial Networks" (Karras et al., 2021) and NVIDIA's
``training/networks_stylegan3.py``, whose parameter and buffer names are our native layout too
(``mapping.fc{i}``, ``synthesis.input``, ``synthesis.L{i}_{size}_{channels}``), so NVIDIA pickles map onto
these modules one to one.

The synthesis network turns Fourier features into an image through ``num_layers`` modulated
convolutions and a final ToRGB, every layer resampled by the alias-free nonlinearity
(:func:`ops.filtered_lrelu`). The layers' cutoff frequencies, stopbands and sampling rates follow a
geometric progression from ``first_cutoff`` to ``resolution / 2`` (:meth:`StyleGAN3Config.layer_specs`);
the low-pass filters are Kaiser-windowed sincs (separable) or, in config R, radially symmetric jincs.
Config T uses 3x3 convolutions; config R 1x1 convolutions, radial downsampling filters and twice the
channels.

W+ layout (``num_ws = num_layers + 2``): entry 0 drives the input's affine (a rotation and translation of
the Fourier features), entry i (1 <= i <= num_layers) the layer ``L{i-1}``, the last entry the ToRGB layer.
StyleGAN3 has no noise inputs: ``noise_mode`` is accepted and ignored.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .family import NOISE_MODES, FieldChecks, GeneratorFamily, check_config_keys, register_family, run_layer
from .ops import LRELU_GAIN, filtered_lrelu, modulated_conv2d
from .stylegan2 import FullyConnected, LayerSlot, StyleGenerator

# Role of each synthesis parameter by its last name part (see SynthesisNetwork.parameter_role).
PARAMETER_ROLES = {"weight": "weight", "bias": "bias"}
CONFIGS = ("T", "R")


@dataclass(frozen=True)
class LayerSpec:
    """Geometry of one synthesis layer: channels, sizes (pixels, with the margin), sampling rates, and the
    cutoff and transition half-width of its input and output signals."""

    name: str  # "L{idx}_{out_size}_{out_channels}", as NVIDIA names it
    in_channels: int
    out_channels: int
    in_size: int
    out_size: int
    in_sampling_rate: int
    out_sampling_rate: int
    in_cutoff: float
    out_cutoff: float
    in_half_width: float
    out_half_width: float
    is_torgb: bool
    is_critically_sampled: bool


@dataclass(frozen=True)
class StyleGAN3Config:
    """Architecture hyper-parameters of a StyleGAN3 generator (defaults: NVIDIA's, config T).

    Config R is ``conv_kernel=1, use_radial_filters=True`` with channel_base and channel_max doubled
    (:meth:`from_channel_multiplier` with ``config="R"``).
    """

    resolution: int = 256
    z_dim: int = 512
    w_dim: int = 512
    mapping_layers: int = 2
    mapping_lr_mul: float = 0.01
    w_avg_beta: float = 0.998
    img_channels: int = 3
    channel_base: int = 32768
    channel_max: int = 512
    num_layers: int = 14  # synthesis layers, excluding the Fourier input and the ToRGB
    num_critical: int = 2  # critically sampled layers at the end
    first_cutoff: float = 2.0  # f_c of the first layer
    first_stopband: float = 2**2.1  # f_t of the first layer
    last_stopband_rel: float = 2**0.3  # f_t of the last layer, relative to its cutoff
    margin_size: int = 10  # pixels computed outside the image on every side
    output_scale: float = 0.25
    conv_kernel: int = 3  # 3 in config T, 1 in config R; the ToRGB is always 1x1
    filter_size: int = 6  # low-pass taps per unit of the lower of the two sampling rates
    lrelu_upsampling: int = 2  # the nonlinearity runs at this multiple of the layer's sampling rate
    use_radial_filters: bool = False  # config R: radially symmetric downsampling filters
    conv_clamp: float | None = 256.0  # clamp every layer's output to +-conv_clamp
    magnitude_ema_beta: float = 0.999  # decay of the tracked input magnitudes while training

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Every field typed and in a sane range (a checkpoint's metadata is untrusted input), and the layer
        geometry consistent: ValueError naming the field otherwise."""

        check = FieldChecks(self)
        res = check.style_network()
        integer, real = check.integer, check.real
        n = integer("num_layers", 1, 64)
        integer("num_critical", 0, n - 1)
        real("first_cutoff", 1e-3, res / 2)
        real("first_stopband", 1e-3, 1e6)
        real("last_stopband_rel", 1e-3, 1e3)
        integer("margin_size", 0, 256)
        real("output_scale", 1e-6, 1e6)
        integer("conv_kernel", 1, 9)
        integer("filter_size", 1, 16)
        integer("lrelu_upsampling", 1, 8)
        if not isinstance(self.use_radial_filters, bool):
            raise ValueError(f"use_radial_filters must be true or false, got {self.use_radial_filters!r:.40}")
        real("magnitude_ema_beta", 0.0, 1.0)
        specs = self.layer_specs()
        if specs[0].in_sampling_rate / 2 <= self.first_cutoff:
            raise ValueError(f"first_cutoff {self.first_cutoff:g} must be below half the first sampling rate "
                             f"({specs[0].in_sampling_rate}): raise first_stopband")
        for spec in specs:
            if spec.out_sampling_rate < 2:
                raise ValueError(f"layer {spec.name} would sample at {spec.out_sampling_rate}: check first_stopband")
            if spec.out_channels < 1:
                raise ValueError(f"channel_base {self.channel_base} leaves layer {spec.name} without channels")
            if min(spec.in_half_width, spec.out_half_width) <= 0:
                raise ValueError(f"layer {spec.name} has no transition band: check first_stopband and "
                                 "last_stopband_rel")

    @classmethod
    def from_channel_multiplier(cls, resolution: int, channel_multiplier: int = 2, config: str = "T",
                                **kw) -> StyleGAN3Config:
        """NVIDIA's config T or R at ``resolution``: channel_base 16384 * ``channel_multiplier`` (2 is
        NVIDIA's 32768) and channel_max 512, both doubled for R."""
        if config.upper() not in CONFIGS:
            raise ValueError(f"StyleGAN3 config must be one of {', '.join(CONFIGS)}, got {config!r}")
        scale = 2 if config.upper() == "R" else 1
        r = dict(conv_kernel=1, use_radial_filters=True) if scale == 2 else {}
        return cls(resolution=resolution, channel_base=16384 * channel_multiplier * scale, channel_max=512 * scale,
                   **r, **kw)

    @property
    def config_name(self) -> str:
        """'T' (3x3 convs, separable filters), 'R' (1x1 convs, radial filters) or 'custom'."""
        if self.conv_kernel == 3 and not self.use_radial_filters:
            return "T"
        return "R" if self.conv_kernel == 1 and self.use_radial_filters else "custom"

    @property
    def num_ws(self) -> int:
        return self.num_layers + 2

    def layer_specs(self) -> list[LayerSpec]:
        """The geometry of every synthesis layer, ToRGB last (the Fourier input's is the first layer's input
        side), from the geometric progression of cutoffs and stopbands (paper, Sec. 3.2 and Appendix F.2):
        float64 numpy, operation for operation as NVIDIA computes it, so that channel counts and sampling
        rates (rounded) come out the same."""
        n, res = self.num_layers, self.resolution
        last_cutoff = res / 2  # f_{c,N}
        last_stopband = last_cutoff * self.last_stopband_rel  # f_{t,N}
        exponents = np.minimum(np.arange(n + 1) / (n - self.num_critical), 1)
        cutoffs = self.first_cutoff * (last_cutoff / self.first_cutoff) ** exponents  # f_c[i]
        stopbands = self.first_stopband * (last_stopband / self.first_stopband) ** exponents  # f_t[i]
        sampling_rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, res))))  # s[i]
        half_widths = np.maximum(stopbands, sampling_rates / 2) - cutoffs  # f_h[i]
        sizes = sampling_rates + self.margin_size * 2
        sizes[-2:] = res
        channels = np.rint(np.minimum((self.channel_base / 2) / cutoffs, self.channel_max))
        channels[-1] = self.img_channels
        specs = []
        for idx in range(n + 1):
            prev = max(idx - 1, 0)
            specs.append(LayerSpec(
                name=f"L{idx}_{int(sizes[idx])}_{int(channels[idx])}",
                in_channels=int(channels[prev]), out_channels=int(channels[idx]),
                in_size=int(sizes[prev]), out_size=int(sizes[idx]),
                in_sampling_rate=int(sampling_rates[prev]), out_sampling_rate=int(sampling_rates[idx]),
                in_cutoff=float(cutoffs[prev]), out_cutoff=float(cutoffs[idx]),
                in_half_width=float(half_widths[prev]), out_half_width=float(half_widths[idx]),
                is_torgb=idx == n, is_critically_sampled=idx >= n - self.num_critical))
        return specs

    def layout(self) -> list[LayerSlot]:
        """Every W+-driven synthesis module in order: ``input`` (role 'input', entry 0), the layers
        ``L0..`` (role 'conv', entries 1..num_layers) and the ToRGB (role 'torgb', the last entry).
        ``resolution`` is the sampling rate of the module's output."""
        specs = self.layer_specs()
        slots = [LayerSlot("input", 0, "input", specs[0].in_sampling_rate)]
        for i, spec in enumerate(specs):
            slots.append(LayerSlot(spec.name, i + 1, "torgb" if spec.is_torgb else "conv", spec.out_sampling_rate))
        return slots

    def min_weight_count(self) -> int:
        """A lower bound on the numbers a checkpoint of this architecture holds (mapping weights, the input's
        channel mixing and every layer's conv weight): checked against a file's tensors before building."""
        specs = self.layer_specs()
        n = self.z_dim * self.w_dim + (self.mapping_layers - 1) * self.w_dim**2 + specs[0].in_channels**2
        for s in specs:
            k = 1 if s.is_torgb else self.conv_kernel
            n += s.in_channels * s.out_channels * k * k
        return n

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> StyleGAN3Config:
        check_config_keys(cls, d)
        return cls(**d)


def design_lowpass_filter(numtaps: int, cutoff: float, width: float, fs: float,
                          radial: bool = False) -> torch.Tensor | None:
    """A Kaiser-windowed low-pass FIR filter, normalised to unit DC gain; None for a single tap (identity).

    Separable: the windowed sinc of ``scipy.signal.firwin(numtaps, cutoff, width=width, fs=fs)``, 1-D taps.
    Radial (config R): the jinc ``J1(2 pi cutoff r) / (pi r)`` windowed by the outer product of the same
    Kaiser window, [numtaps, numtaps]. The window's beta follows Kaiser's formulas for the attenuation that
    ``numtaps`` taps reach over the transition band ``width``."""
    if numtaps == 1:
        return None
    atten = 2.285 * (numtaps - 1) * np.pi * (width / (fs / 2)) + 7.95  # dB
    if atten > 50:
        beta = 0.1102 * (atten - 8.7)
    elif atten > 21:
        beta = 0.5842 * (atten - 21) ** 0.4 + 0.07886 * (atten - 21)
    else:
        beta = 0.0
    window = np.kaiser(numtaps, beta)
    m = np.arange(numtaps) - (numtaps - 1) / 2
    if not radial:
        c = cutoff / (fs / 2)
        h = c * np.sinc(c * m) * window
        return torch.as_tensor(h / h.sum(), dtype=torch.float32)
    x = m / fs
    r = torch.from_numpy(np.hypot(*np.meshgrid(x, x)))
    safe = torch.where(r > 0, r, torch.ones_like(r))
    jinc = torch.where(r > 0, torch.special.bessel_j1(2 * cutoff * (np.pi * safe)) / (np.pi * safe),
                       torch.full_like(r, cutoff))  # the limit at r = 0: J1(x) ~ x / 2
    f = jinc.numpy() * np.outer(window, window)
    return torch.as_tensor(f / np.sum(f), dtype=torch.float32)


class SynthesisInput(nn.Module):
    """Fourier features: ``channels`` sinusoids of random frequencies within ``bandwidth`` on a
    ``size``-pixel grid, rotated and translated by an affine map of w, then mixed by a learned matrix.

    ``transform`` is a user-specified 3x3 inverse transform of the output image (identity by default)."""

    def __init__(self, w_dim: int, channels: int, size: int, sampling_rate: int, bandwidth: float):
        super().__init__()
        self.channels, self.size, self.sampling_rate, self.bandwidth = channels, size, sampling_rate, bandwidth
        freqs = torch.randn(channels, 2)  # random directions, radii within `bandwidth` (NVIDIA's draw)
        radii = freqs.square().sum(dim=1, keepdim=True).sqrt()
        freqs /= radii * radii.square().exp().pow(0.25)
        freqs *= bandwidth
        self.weight = nn.Parameter(torch.randn(channels, channels))
        self.affine = FullyConnected(w_dim, 4)  # w -> (r_c, r_s, t_x, t_y), identity at init
        with torch.no_grad():
            self.affine.weight.zero_()
            self.affine.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))
        self.register_buffer("transform", torch.eye(3))
        self.register_buffer("freqs", freqs)
        self.register_buffer("phases", torch.rand(channels) - 0.5)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        t = self.affine(w)
        t = t / t[:, :2].norm(dim=1, keepdim=True)  # a pure rotation (r'_c, r'_s) and translation
        r_c, r_s, t_x, t_y = t.unbind(dim=1)
        zero, one = torch.zeros_like(r_c), torch.ones_like(r_c)
        m_r = torch.stack([r_c, -r_s, zero, r_s, r_c, zero, zero, zero, one], dim=1).view(-1, 3, 3)
        m_t = torch.stack([one, zero, -t_x, zero, one, -t_y, zero, zero, one], dim=1).view(-1, 3, 3)
        transforms = m_r @ m_t @ self.transform.unsqueeze(0)  # rotate, then translate, then the user's transform

        # Transform the frequencies; dampen those the user transform pushed out of band.
        freqs, phases = self.freqs.unsqueeze(0), self.phases.unsqueeze(0)
        phases = phases + (freqs @ transforms[:, :2, 2:]).squeeze(2)
        freqs = freqs @ transforms[:, :2, :2]  # [N, C, 2]
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)

        # Sample the sinusoids on the pixel grid (pixel centres, in units of the sampling rate).
        theta = torch.eye(2, 3, device=w.device, dtype=w.dtype)
        theta[0, 0] = theta[1, 1] = 0.5 * self.size / self.sampling_rate
        grid = nn.functional.affine_grid(theta.unsqueeze(0), [1, 1, self.size, self.size], align_corners=False)
        x = (grid.unsqueeze(3) @ freqs.permute(0, 2, 1).unsqueeze(1).unsqueeze(2)).squeeze(3)  # [N, H, W, C]
        x = torch.sin((x + phases.unsqueeze(1).unsqueeze(2)) * (2 * np.pi)) * amplitudes.unsqueeze(1).unsqueeze(2)
        x = x @ (self.weight / math.sqrt(self.channels)).t()  # learned channel mixing
        return x.permute(0, 3, 1, 2)


class SynthesisLayer(nn.Module):
    """Modulated conv, then the filtered leaky ReLU: upsample to ``lrelu_upsampling`` times the higher
    sampling rate, nonlinearity, low-pass and downsample to the output rate. The ToRGB layer (``is_torgb``)
    is a 1x1 modulated conv without demodulation, bias and clamp only.

    The input is divided by the root of ``magnitude_ema``, its tracked mean square, so the pre-activation
    magnitudes stay normalised (updated with ``update_emas``, as while training)."""

    def __init__(self, spec: LayerSpec, cfg: StyleGAN3Config):
        super().__init__()
        self.spec, self.is_torgb = spec, spec.is_torgb
        self.conv_kernel = 1 if spec.is_torgb else cfg.conv_kernel
        self.conv_clamp, self.magnitude_ema_beta = cfg.conv_clamp, cfg.magnitude_ema_beta
        self.affine = FullyConnected(cfg.w_dim, spec.in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn(spec.out_channels, spec.in_channels, self.conv_kernel, self.conv_kernel))
        self.bias = nn.Parameter(torch.zeros(spec.out_channels))
        self.register_buffer("magnitude_ema", torch.ones([]))

        # Resampling around the nonlinearity; a single-tap filter is the identity and stored as None (no buffer).
        tmp_rate = max(spec.in_sampling_rate, spec.out_sampling_rate) * (1 if spec.is_torgb else cfg.lrelu_upsampling)
        self.up_factor = tmp_rate // spec.in_sampling_rate
        self.down_factor = tmp_rate // spec.out_sampling_rate
        up_taps = cfg.filter_size * self.up_factor if self.up_factor > 1 and not spec.is_torgb else 1
        down_taps = cfg.filter_size * self.down_factor if self.down_factor > 1 and not spec.is_torgb else 1
        radial = cfg.use_radial_filters and not spec.is_critically_sampled
        self.register_buffer("up_filter", design_lowpass_filter(up_taps, spec.in_cutoff, spec.in_half_width * 2,
                                                                tmp_rate))
        self.register_buffer("down_filter", design_lowpass_filter(down_taps, spec.out_cutoff,
                                                                  spec.out_half_width * 2, tmp_rate, radial))

        # Padding on the upsampled grid that gives out_size samples, centred (symmetric interpretation, App. C.3).
        pad_total = (spec.out_size - 1) * self.down_factor + 1  # wanted length before downsampling
        pad_total -= (spec.in_size + self.conv_kernel - 1) * self.up_factor  # length after the conv and upsampling
        pad_total += up_taps + down_taps - 2  # what the two filters take away
        pad_lo = (pad_total + self.up_factor) // 2
        self.padding = (pad_lo, pad_total - pad_lo)

    def forward(self, x: torch.Tensor, w: torch.Tensor, update_emas: bool = False) -> torch.Tensor:
        s = self.spec
        assert x.shape[1:] == (s.in_channels, s.in_size, s.in_size), (tuple(x.shape), s)
        if update_emas:
            with torch.no_grad():
                current = x.detach().to(self.magnitude_ema.dtype).square().mean()
                self.magnitude_ema.copy_(current.lerp(self.magnitude_ema, self.magnitude_ema_beta))
        styles = self.affine(w)
        if self.is_torgb:
            styles = styles * (1 / math.sqrt(s.in_channels * self.conv_kernel**2))
        x = modulated_conv(x * self.magnitude_ema.rsqrt().to(x.dtype), self.weight, styles,
                           demodulate=not self.is_torgb, padding=self.conv_kernel - 1)
        gain, slope = (1.0, 1.0) if self.is_torgb else (LRELU_GAIN, 0.2)
        return filtered_lrelu(x, self.up_filter, self.down_filter, self.bias, up=self.up_factor,
                              down=self.down_factor, pad=self.padding, gain=gain, slope=slope, clamp=self.conv_clamp)


def modulated_conv(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool,
                   padding: int) -> torch.Tensor:
    """StyleGAN3's modulated convolution: with demodulation, weight and styles are first scaled to unit root
    mean square (per output channel, per sample) for numerical range; demodulation cancels these scales,
    so this is :func:`ops.modulated_conv2d` up to its 1e-8 epsilon. (NVIDIA scales the styles by one factor
    over the whole batch, which also cancels; per sample keeps each image independent of its batch.)"""
    if demodulate:
        weight = weight * weight.square().mean(dim=[1, 2, 3], keepdim=True).rsqrt()
        styles = styles * styles.square().mean(dim=1, keepdim=True).rsqrt()
    return modulated_conv2d(x, weight, styles, demodulate=demodulate, padding=padding)


class SynthesisNetwork(nn.Module):
    """W+ codes [N, num_ws, w_dim] -> images [N, C, R, R]: Fourier input, ``num_layers`` layers, ToRGB,
    scaled by ``output_scale``."""

    checkpointing = False  # recompute each layer's activations in the backward pass (less memory, more time)

    def __init__(self, cfg: StyleGAN3Config):
        super().__init__()
        self.cfg = cfg
        self.resolution, self.w_dim, self.num_ws = cfg.resolution, cfg.w_dim, cfg.num_ws
        specs = cfg.layer_specs()
        first = specs[0]
        self.input = SynthesisInput(cfg.w_dim, first.in_channels, first.in_size, first.in_sampling_rate,
                                    first.in_cutoff)
        self.layer_names = [spec.name for spec in specs]
        for spec in specs:
            setattr(self, spec.name, SynthesisLayer(spec, cfg))

    def layers(self) -> list[SynthesisLayer]:
        return [getattr(self, name) for name in self.layer_names]

    def layers_by_w(self) -> list[list[tuple[str, nn.Module]]]:
        """For each W+ index, the (qualified name, module) it drives: the input, then one layer each."""
        return [[(slot.name, self.get_submodule(slot.name))] for slot in self.cfg.layout()]

    def parameter_role(self, name: str) -> str:
        """The role of a synthesis parameter: 'input' (the Fourier features' channel mixing,
        ``input.weight``), 'affine' (style modulation, and the input's rotation/translation), 'weight' or
        'bias' of a layer."""
        parts = name.split(".")
        if "affine" in parts:
            return "affine"
        return "input" if parts[0] == "input" else PARAMETER_ROLES[parts[-1]]

    def noise_resolutions(self) -> list[int]:
        return []  # no per-pixel noise in StyleGAN3

    def sample_noise(self, n: int, generator: torch.Generator | None = None,
                     device: torch.device | str | None = None) -> list[torch.Tensor]:
        return []

    def forward(self, ws: torch.Tensor, noise_mode: str = "const", noise: list[torch.Tensor | None] | None = None,
                update_emas: bool = False) -> torch.Tensor:
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        assert ws.ndim == 3 and ws.shape[1:] == (self.num_ws, self.w_dim), (
            f"ws must be [N, {self.num_ws}, {self.w_dim}], got {tuple(ws.shape)}")
        x = self.input(ws[:, 0])
        for i, layer in enumerate(self.layers()):
            # (the magnitude EMAs are updated once, so never under a recomputing checkpoint)
            x = run_layer(layer, self.checkpointing and not update_emas, x, ws[:, i + 1], update_emas=update_emas)
        return x * self.cfg.output_scale


class Generator(StyleGenerator):
    """StyleGAN3 generator (config T or R)."""

    family = "stylegan3"
    synthesis_class = SynthesisNetwork


STYLEGAN3 = register_family(GeneratorFamily(
    "stylegan3", StyleGAN3Config, Generator, "StyleGAN3 (alias-free) config T or R",
    preset=lambda resolution, channel_multiplier=2, config="T": StyleGAN3Config.from_channel_multiplier(
        resolution, channel_multiplier, config)))

__all__ = ["STYLEGAN3", "Generator", "LayerSpec", "StyleGAN3Config", "SynthesisInput", "SynthesisLayer",
           "SynthesisNetwork", "design_lowpass_filter"]
