"""The ConvNet's 2x2 pool is nn.AvgPool2d(2) bit for bit, forward, backward and double backward."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from avdistill.models.pooling import AvgPool2x2


@pytest.mark.parametrize("shape", [(3, 4, 10, 14), (2, 5, 7, 9), (1, 1, 2, 2), (4, 3, 33, 15)])
def test_matches_avg_pool2d_bit_for_bit(shape):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g) * 100
    ours, theirs = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    out_ours, out_theirs = AvgPool2x2()(ours), nn.AvgPool2d(2)(theirs)
    assert torch.equal(out_ours, out_theirs)
    grad = torch.randn(out_theirs.shape, generator=g)
    out_ours.backward(grad), out_theirs.backward(grad)
    assert torch.equal(ours.grad, theirs.grad)


def test_double_backward_matches():
    """MTT differentiates through training steps: the gradient of the gradient must agree too."""
    x = torch.randn(4, 8, 12, 17, generator=torch.Generator().manual_seed(1)) * 10
    results = []
    for pool in (AvgPool2x2(), nn.AvgPool2d(2)):
        leaf = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad((pool(leaf) ** 3).sum(), leaf, create_graph=True)
        (second,) = torch.autograd.grad(grad.pow(2).sum(), leaf)
        results.append((grad.detach(), second))
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])
