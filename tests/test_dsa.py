"""DSA: shapes, seeding, siamese behaviour across batch sizes, gradients, op semantics."""

from __future__ import annotations

import pytest
import torch

from avdistill.augment import DSA, OPS
from avdistill.errors import ConfigError

SHAPES = [(4, 1, 40, 56), (4, 3, 32, 32)]


def batch(shape, seed=0, dtype=torch.float32):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("shape", SHAPES)
def test_each_op_keeps_shape_and_dtype(op, shape):
    x = batch(shape)
    for siamese in (True, False):
        y = DSA(op)(x, seed=3, siamese=siamese)
        assert y.shape == x.shape and y.dtype == x.dtype
        assert torch.isfinite(y).all()


def test_same_seed_same_output_and_op():
    x = batch((5, 3, 32, 32))
    aug = DSA()
    for seed in range(12):
        assert aug.op_for(seed) == DSA().op_for(seed)
        assert torch.equal(aug(x, seed), aug(x, seed))
        assert torch.equal(aug(x, seed, siamese=False), aug(x, seed, siamese=False))


def test_different_seeds_reach_every_op_and_differ():
    aug = DSA()
    assert {aug.op_for(seed) for seed in range(100)} == set(OPS)
    x = batch((2, 3, 32, 32))
    outs = [aug(x, seed) for seed in range(8)]
    assert any(not torch.equal(outs[0], o) for o in outs[1:])


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("shape", [(7, 1, 40, 56), (7, 3, 32, 32)])
def test_siamese_is_independent_of_batch_size(op, shape):
    """A real batch and a smaller synthetic batch get the same transformation for one seed."""
    aug = DSA(op)
    x = batch(shape)
    for seed in range(6):
        big, small = aug(x, seed), aug(x[:3], seed)
        torch.testing.assert_close(small, big[:3], rtol=0, atol=1e-6)


@pytest.mark.parametrize("op", OPS)
def test_siamese_applies_one_transform_to_the_whole_batch(op):
    x = batch((1, 3, 16, 20)).expand(6, -1, -1, -1).contiguous()
    for seed in range(5):
        y = DSA(op)(x, seed)
        assert all(torch.equal(y[0], y[i]) for i in range(1, 6))


@pytest.mark.parametrize("op", OPS)
def test_per_sample_params_differ(op):
    """siamese=False: identical samples come out differently (over a batch of 16)."""
    x = batch((1, 3, 24, 28)).expand(16, -1, -1, -1).contiguous()
    y = DSA(op)(x, seed=0, siamese=False)
    distinct = {tuple(y[i].flatten().tolist()) for i in range(16)}
    assert len(distinct) > 1
    if op in ("color", "rotate", "scale"):  # continuous parameters: all different
        assert len(distinct) == 16


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("siamese", [True, False])
def test_gradient_reaches_input(op, siamese):
    x = batch((4, 3, 32, 32)).requires_grad_()
    weights = batch((4, 3, 32, 32), seed=1)
    for seed in range(3):
        x.grad = None
        (DSA(op)(x, seed, siamese=siamese) * weights).sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()
        assert x.grad.abs().sum() > 0


@pytest.mark.parametrize("op", OPS)
def test_gradcheck(op):
    """The analytic gradient of every op matches finite differences (ops are affine in x)."""
    x = batch((2, 3, 6, 7), dtype=torch.float64).requires_grad_()
    aug = DSA(op)
    for seed in range(2):
        assert torch.autograd.gradcheck(lambda t: aug(t, seed, siamese=False), (x,))


def test_none_returns_input_and_bad_strategy_raises():
    x = batch((2, 1, 8, 8))
    for strategy in ("none", "None", ""):
        assert DSA(strategy)(x, seed=0) is x
        assert DSA(strategy).op_for(0) is None
    with pytest.raises(ConfigError, match=r"'blur'.*color, crop, cutout, flip, scale, rotate"):
        DSA("color_blur")
    with pytest.raises(ConfigError):
        DSA("crop", scale=0.5)


# ----------------------------------------------------------------------------- op semantics


def test_flip_mirrors_the_last_axis_or_leaves_it():
    x = batch((1, 1, 8, 10))
    outs = [DSA("flip")(x, seed) for seed in range(20)]
    assert all(torch.equal(o, x) or torch.equal(o, x.flip(3)) for o in outs)
    assert any(torch.equal(o, x) for o in outs) and any(torch.equal(o, x.flip(3)) for o in outs)


def test_crop_is_an_integer_shift_with_zero_fill():
    h, w = 40, 56
    x = batch((1, 1, h, w))
    max_dy, max_dx = int(h * 0.125 + 0.5), int(w * 0.125 + 0.5)
    padded = torch.nn.functional.pad(x, (max_dx,) * 2 + (max_dy,) * 2)
    for seed in range(10):
        y = DSA("crop")(x, seed)
        shifts = [
            (dy, dx)
            for dy in range(-max_dy, max_dy + 1)
            for dx in range(-max_dx, max_dx + 1)
            if torch.equal(y, padded.narrow(2, max_dy + dy, h).narrow(3, max_dx + dx, w))
        ]
        assert len(shifts) == 1


def test_cutout_zeroes_one_rectangle_of_at_most_half_each_side():
    h, w = 40, 56
    x = torch.ones(1, 1, h, w)
    for seed in range(10):
        hole = DSA("cutout")(x, seed)[0, 0] == 0
        rows, cols = hole.any(1).nonzero().flatten(), hole.any(0).nonzero().flatten()
        assert 0 < len(rows) <= h // 2 and 0 < len(cols) <= w // 2
        assert hole.sum() == len(rows) * len(cols)  # a full rectangle
        assert rows.diff().eq(1).all() and cols.diff().eq(1).all()


def test_identity_settings_leave_input_unchanged():
    x = batch((3, 3, 20, 28))
    torch.testing.assert_close(DSA("rotate", rotate=0.0)(x, 5), x, rtol=0, atol=1e-4)
    torch.testing.assert_close(DSA("scale", scale=1.0)(x, 5), x, rtol=0, atol=1e-4)
    assert torch.equal(DSA("crop", crop=0.0)(x, 5), x)
    assert torch.equal(DSA("flip", flip=0.0)(x, 5), x)


def test_color_matches_reference_formulas():
    x = batch((2, 3, 8, 8))
    seed = 11
    g = torch.Generator().manual_seed(seed)
    torch.randint(1, (1,), generator=g)  # the op draw (one op in the strategy)
    b, s, c = (torch.rand(1, generator=g) for _ in range(3))
    expect = x + (b - 0.5) * 1.0
    expect = (expect - expect.mean(1, keepdim=True)) * (s * 2.0) + expect.mean(1, keepdim=True)
    mean = expect.mean((1, 2, 3), keepdim=True)
    expect = (expect - mean) * (c + 0.5) + mean
    torch.testing.assert_close(DSA("color")(x, seed), expect)


def test_single_channel_saturation_is_a_no_op():
    x = batch((2, 1, 8, 8))
    g = torch.Generator().manual_seed(0)
    from avdistill.augment.dsa import Sampler, saturation

    assert torch.equal(saturation(x, Sampler(g, 2, True, x.device, x.dtype)), x)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    x = batch((4, 3, 32, 32))
    for op in OPS:
        for seed in range(3):
            on_gpu = DSA(op)(x.cuda(), seed).cpu()
            torch.testing.assert_close(on_gpu, DSA(op)(x, seed), atol=1e-5, rtol=1e-5)
