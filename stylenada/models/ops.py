"""Pure-PyTorch building blocks of StyleGAN2 and StyleGAN3: FIR resampling, bias+activation, modulated
convolution, and StyleGAN3's filtered leaky ReLU.

Everything here runs on CPU and GPU alike and needs no compiled extension. The maths follows the
StyleGAN2 paper (Karras et al., 2020): equalised learning rate (weights stored at unit variance and
scaled at run time), weight (de)modulation, and [1, 3, 3, 1] low-pass filtering around every change of
resolution; and the StyleGAN3 paper (Karras et al., 2021, "Alias-Free GANs"): the nonlinearity is applied
at a higher sampling rate, between an upsampling and a downsampling low-pass filter.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LRELU_GAIN = math.sqrt(2.0)


def setup_filter(taps: tuple[int, ...] | list[int]) -> torch.Tensor:
    """A separable FIR filter as its 1-D taps, normalised to sum 1 (the 2-D filter is the outer product)."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    assert f.ndim == 1 and f.numel() >= 1
    return f / f.sum()


def _fir_1d(x: torch.Tensor, f: torch.Tensor, dim: int, stride: int = 1) -> torch.Tensor:
    """Depthwise true convolution (flipped taps) of NCHW ``x`` with 1-D taps ``f`` along H (dim=2) or W (3),
    keeping every ``stride``-th output along that axis."""
    c = x.shape[1]
    k = f.flip(0).to(x.dtype)
    w = k.view(1, 1, -1, 1) if dim == 2 else k.view(1, 1, 1, -1)
    return F.conv2d(x, w.expand(c, 1, *w.shape[2:]), stride=(stride, 1) if dim == 2 else (1, stride), groups=c)


def _zero_insert(x: torch.Tensor, up: int, dims: tuple[int, ...]) -> torch.Tensor:
    """Upsample ``up``x along H (2) and/or W (3) by inserting ``up - 1`` zeros after every sample."""
    n, c, h, w = x.shape
    uh, uw = (up if 2 in dims else 1), (up if 3 in dims else 1)
    x = F.pad(x.reshape(n, c, h, 1, w, 1), [0, uw - 1, 0, 0, 0, uh - 1])
    return x.reshape(n, c, h * uh, w * uw)


def _pad(x: torch.Tensor, pad: tuple[int, int], dims: tuple[int, ...]) -> torch.Tensor:
    """Pad (negative values crop) ``pad`` = (before, after) along H (2) and/or W (3)."""
    p0, p1 = pad
    ph = [max(p0, 0), max(p1, 0)] if 2 in dims else [0, 0]
    pw = [max(p0, 0), max(p1, 0)] if 3 in dims else [0, 0]
    x = F.pad(x, pw + ph)
    if min(p0, p1) < 0:
        c0, c1 = max(-p0, 0), max(-p1, 0)
        if 2 in dims:
            x = x[:, :, c0 : x.shape[2] - c1]
        if 3 in dims:
            x = x[:, :, :, c0 : x.shape[3] - c1]
    return x


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: int = 1,
    down: int = 1,
    pad: tuple[int, int] = (0, 0),
    gain: float = 1.0,
) -> torch.Tensor:
    """Upsample by zero insertion, pad, filter with the FIR ``f``, downsample by striding.

    ``f`` is separable 1-D taps (the 2-D filter is their outer product), a non-separable 2-D filter
    [taps, taps], or None (no filtering: a 1x1 identity). ``pad`` = (before, after) applies to both axes
    (negative values crop). The filter is applied as a true convolution, scaled by ``gain`` (``up**2``
    keeps the signal's mean when upsampling). A separable filter runs one axis at a time (zeros inserted,
    filtered and decimated along H before W is touched), and decimation is the convolution's stride:
    the same sums, without computing the samples that are thrown away.
    """
    if f is not None and f.ndim == 1:  # separable: the gain is split evenly between the two passes
        g = math.sqrt(gain)
        for dim in (2, 3):
            x = _pad(_zero_insert(x, up, (dim,)) if up > 1 else x, pad, (dim,))
            x = _fir_1d(x, f * g, dim=dim, stride=down)
        return x
    x = _pad(_zero_insert(x, up, (2, 3)) if up > 1 else x, pad, (2, 3))
    if f is None:
        x = x * gain if gain != 1 else x
        return x[:, :, ::down, ::down] if down > 1 else x
    k = (f * gain).flip([0, 1]).to(x.dtype)
    return F.conv2d(x, k.expand(x.shape[1], 1, *k.shape), stride=down, groups=x.shape[1])


def upsample2d(x: torch.Tensor, f: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """2x FIR upsampling that keeps the image aligned (used on the skip path of ToRGB)."""
    fw = f.numel()
    return upfirdn2d(x, f, up=factor, pad=((fw + factor - 1) // 2, (fw - factor) // 2), gain=factor**2)


def downsample2d(x: torch.Tensor, f: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """2x FIR downsampling (low-pass, then keep every other pixel)."""
    fw = f.numel()
    return upfirdn2d(x, f, down=factor, pad=((fw - factor + 1) // 2, (fw - factor) // 2))


def bias_act(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    act: str = "linear",
    gain: float | None = None,
    clamp: float | None = None,
) -> torch.Tensor:
    """Add a per-channel bias, apply ``act`` ('linear' or 'lrelu'), scale by ``gain``, clamp to +-clamp."""
    if b is not None:
        x = x + b.view(1, -1, *([1] * (x.ndim - 2)))
    if act == "lrelu":
        x = F.leaky_relu(x, 0.2)
        gain = LRELU_GAIN if gain is None else gain
    elif act != "linear":
        raise ValueError(f"unknown activation {act!r}")
    if gain is not None and gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


# Which form of the modulated convolution each device type uses (see ``modulated_conv2d``); measured with
# ``benchmarks/generator.py --modconv grouped scaled``. Unknown device types use "scaled", NVIDIA's choice
# for training on GPUs.
MODCONV_FORM = {"cpu": "scaled", "cuda": "scaled"}


# How each device type runs the stride-2 transposed convolution of upsampling layers: "transposed" (one
# conv_transpose2d) or "phases" (four small regular convolutions, one per output pixel phase; the same
# numbers). oneDNN runs a 3x3 convolution ~1.6x faster per multiply-add than the transposed one, but not the
# phases' 2x2/2x1/1x1 kernels: "phases" was 10% slower at 256 px on CPU
# (``benchmarks/generator.py --res 256 --batch 2 --upconv transposed phases``), so both devices keep one call.
UPCONV_FORM = {"cpu": "transposed", "cuda": "transposed"}


def conv_transpose2d_stride2(x: torch.Tensor, weight: torch.Tensor, groups: int = 1, form: str | None = None
                             ) -> torch.Tensor:
    """``conv_transpose2d(x, w, stride=2, groups=groups)`` where ``weight`` is in conv2d layout [O, I/g, k, k]
    (the transposed convolution's weight is its in/out swap), as ``form`` says (None: ``UPCONV_FORM``).

    The "phases" form: output pixel (2m + p, 2n + q) only sees the taps of parity (p, q), so the output is
    four interleaved regular convolutions of ``x`` with the sub-kernels ``w[p::2, q::2]`` (flipped, since a
    convolution correlates): the same multiply-adds, without the transposed kernel.
    """
    form = form or UPCONV_FORM.get(x.device.type, "transposed")
    o, ig, kh, kw = weight.shape
    if form == "transposed" or kh < 2 or kw < 2:
        wt = weight.reshape(groups, o // groups, ig, kh, kw).transpose(1, 2).reshape(groups * ig, o // groups, kh, kw)
        return F.conv_transpose2d(x, wt, stride=2, groups=groups)
    if form != "phases":
        raise ValueError(f"unknown transposed-conv form {form!r}: 'transposed' or 'phases'")
    n, _, h, w = x.shape
    y = x.new_empty(n, o, 2 * h - 2 + kh, 2 * w - 2 + kw)
    for p in range(2):
        for q in range(2):
            sub = weight[:, :, p::2, q::2].flip([2, 3])
            ty, tx = sub.shape[2] - 1, sub.shape[3] - 1
            y[:, :, p::2, q::2] = F.conv2d(x, sub, padding=(ty, tx), groups=groups)
    return y


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    demodulate: bool = True,
    up: int = 1,
    padding: int = 0,
    resample_filter: torch.Tensor | None = None,
    form: str | None = None,
) -> torch.Tensor:
    """StyleGAN2's modulated convolution: each sample is convolved with its own weight ``w * s``,
    normalised so every output channel has unit norm when ``demodulate`` (weight demodulation).

    Two forms give the same numbers (tested): ``"grouped"`` builds every sample's weight and runs one
    grouped convolution over the batch (groups = N); ``"scaled"`` scales the activations by the styles,
    runs one convolution with the shared weight and scales the outputs by the demodulation coefficients
    (NVIDIA's form for training). ``form=None`` takes the device's entry of ``MODCONV_FORM``.

    x: [N, I, H, W]; weight: [O, I, k, k]; styles: [N, I]. With ``up=2`` the output is [N, O, 2H, 2W]:
    a transposed stride-2 convolution followed by the FIR filter.
    """
    n, i, h, w = x.shape
    o, i2, kh, kw = weight.shape
    assert i == i2 and styles.shape == (n, i), (x.shape, weight.shape, styles.shape)
    form = form or MODCONV_FORM.get(x.device.type, "scaled")
    if form == "grouped":
        wm = weight.unsqueeze(0) * styles.view(n, 1, i, 1, 1)  # [N, O, I, k, k]
        if demodulate:
            wm = wm * (wm.square().sum(dim=[2, 3, 4], keepdim=True) + 1e-8).rsqrt()
        wm = wm.to(x.dtype)
        xg = x.reshape(1, n * i, h, w)
        if up == 1:
            y = F.conv2d(xg, wm.reshape(n * o, i, kh, kw), padding=padding, groups=n)
        else:
            y = conv_transpose2d_stride2(xg, wm.reshape(n * o, i, kh, kw), groups=n)
        y = y.reshape(n, o, y.shape[2], y.shape[3])
    elif form == "scaled":
        y = x * styles.to(x.dtype).view(n, i, 1, 1)
        wt = weight.to(x.dtype)
        y = F.conv2d(y, wt, padding=padding) if up == 1 else conv_transpose2d_stride2(y, wt)
        if demodulate:
            # [N, O]: 1 / |w * s| over each output channel's inputs and taps
            d = (weight.square().sum(dim=[2, 3]).unsqueeze(0) * styles.square().unsqueeze(1)).sum(dim=2)
            y = y * (d + 1e-8).rsqrt().to(y.dtype).view(n, o, 1, 1)
    else:
        raise ValueError(f"unknown modulated-conv form {form!r}: 'grouped' or 'scaled'")
    if up != 1:
        assert up == 2 and resample_filter is not None
        fw = resample_filter.numel()
        # Padding that makes (transposed conv + FIR) equal to "upsample, filter, conv with `padding`".
        p0 = padding + (fw + up - 1) // 2 - (kw - 1)
        p1 = padding + (fw - up) // 2 - (kw - up)
        y = upfirdn2d(y, resample_filter, pad=(p0, p1), gain=up**2)
    return y


def filtered_lrelu(
    x: torch.Tensor,
    fu: torch.Tensor | None,
    fd: torch.Tensor | None,
    b: torch.Tensor,
    up: int = 1,
    down: int = 1,
    pad: tuple[int, int] = (0, 0),
    gain: float = LRELU_GAIN,
    slope: float = 0.2,
    clamp: float | None = None,
) -> torch.Tensor:
    """StyleGAN3's alias-free nonlinearity: add the bias, upsample ``up``x with the low-pass ``fu`` (padding
    ``pad`` on the upsampled grid), leaky ReLU (``slope``) scaled by ``gain`` and clamped to +-``clamp``,
    then low-pass with ``fd`` and keep every ``down``-th sample. Filters as in :func:`upfirdn2d`.

    Equals NVIDIA's ``filtered_lrelu`` (its reference path, which the CUDA kernel fuses); ``slope=1,
    gain=1`` is the linear case of the ToRGB layer.
    """
    x = x + b.to(x.dtype).view(1, -1, 1, 1)
    x = upfirdn2d(x, fu, up=up, pad=pad, gain=up**2)
    if slope != 1:
        x = F.leaky_relu(x, slope)
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return upfirdn2d(x, fd, down=down)
