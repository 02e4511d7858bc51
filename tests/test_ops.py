"""The resampling and modulated-convolution ops against textbook definitions."""

import pytest
import torch
import torch.nn.functional as F

from stylenada.models.ops import conv_transpose2d_stride2, modulated_conv2d, setup_filter, upfirdn2d


def naive_upfirdn2d(x, f1d, up, down, pad, gain):
    """Direct definition: zero-insertion, padding, full 2-D true convolution, decimation."""
    n, c, h, w = x.shape
    y = torch.zeros(n, c, h * up, w * up, dtype=x.dtype)
    y[:, :, ::up, ::up] = x
    y = F.pad(y, [pad[0], pad[1], pad[0], pad[1]])
    f2 = torch.outer(f1d, f1d) * gain
    k = f2.flip([0, 1]).expand(c, 1, *f2.shape)
    y = F.conv2d(y, k, groups=c)
    return y[:, :, ::down, ::down]


def test_upfirdn2d_matches_definition():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 9, 9, dtype=torch.float64)
    f = setup_filter([1, 2, 5, 1]).double()  # asymmetric, so a flip error would show
    for up, down, pad, gain in [(1, 1, (1, 2), 1.0), (2, 1, (2, 1), 4.0), (1, 2, (2, 1), 1.0)]:
        got = upfirdn2d(x, f, up=up, down=down, pad=pad, gain=gain)
        want = naive_upfirdn2d(x, f, up, down, pad, gain)
        assert got.shape == want.shape
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("form", ["grouped", "scaled"])
def test_modulated_conv_equals_per_sample_weights(form):
    """Both forms (one grouped conv of per-sample weights; activations scaled around one shared conv) ==
    convolving each sample with its own demodulated weight."""
    torch.manual_seed(0)
    n, i, o = 3, 5, 4
    x = torch.randn(n, i, 8, 8, dtype=torch.float64)
    w = torch.randn(o, i, 3, 3, dtype=torch.float64)
    s = torch.randn(n, i, dtype=torch.float64)
    f = setup_filter([1, 3, 3, 1]).double()
    for up in (1, 2):
        got = modulated_conv2d(x, w, s, demodulate=True, up=up, padding=1, resample_filter=f, form=form)
        outs = []
        for b in range(n):
            wb = w * s[b].view(1, i, 1, 1)
            wb = wb / (wb.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8).sqrt()
            xb = x[b : b + 1]
            if up == 2:
                # Upsample by zero insertion and low-pass with the FIR (gain 4, padded for a 3x3 'same'
                # conv), then convolve. As in both reference implementations, the upsampling layers apply
                # their kernels as a true convolution (a transposed conv), the others as a correlation.
                xb = naive_upfirdn2d(xb, f, 2, 1, (3, 2), 4.0)
                outs.append(F.conv2d(xb, wb.flip([2, 3])))
            else:
                outs.append(F.conv2d(xb, wb, padding=1))
        want = torch.cat(outs)
        assert got.shape == want.shape == (n, o, 8 * up, 8 * up)
        torch.testing.assert_close(got, want)


def test_modulated_conv_forms_agree_in_float32_and_without_demodulation():
    torch.manual_seed(1)
    x, w, s = torch.randn(4, 16, 8, 8), torch.randn(8, 16, 3, 3), torch.randn(4, 16)
    f = setup_filter([1, 3, 3, 1])
    for up, demod in ((1, True), (2, True), (1, False)):
        a = modulated_conv2d(x, w, s, demodulate=demod, up=up, padding=1, resample_filter=f, form="grouped")
        b = modulated_conv2d(x, w, s, demodulate=demod, up=up, padding=1, resample_filter=f, form="scaled")
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="form"):
        modulated_conv2d(x, w, s, form="fused")


@pytest.mark.parametrize("form", ["transposed", "phases"])
@pytest.mark.parametrize("k,groups", [(3, 1), (3, 2), (4, 1), (2, 3)])
def test_stride2_transposed_conv_forms_equal_conv_transpose2d(form, k, groups):
    """Both forms of the upsampling conv, values and gradients, against PyTorch's conv_transpose2d given the
    in/out-swapped weight (per group)."""
    torch.manual_seed(0)
    x = torch.randn(2, 4 * groups, 5, 7, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3 * groups, 4, k, k, dtype=torch.float64, requires_grad=True)
    got = conv_transpose2d_stride2(x, w, groups=groups, form=form)
    wt = w.reshape(groups, 3, 4, k, k).transpose(1, 2).reshape(groups * 4, 3, k, k)
    want = F.conv_transpose2d(x, wt, stride=2, groups=groups)
    assert got.shape == want.shape == (2, 3 * groups, 2 * 5 - 2 + k, 2 * 7 - 2 + k)
    torch.testing.assert_close(got, want)
    g = torch.randn_like(want)
    gx, gw = torch.autograd.grad(got, (x, w), g)
    hx, hw = torch.autograd.grad(want, (x, w), g)
    torch.testing.assert_close(gx, hx)
    torch.testing.assert_close(gw, hw)
    with pytest.raises(ValueError, match="form"):
        conv_transpose2d_stride2(x, w, groups=groups, form="winograd")
