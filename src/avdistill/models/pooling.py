"""The 2x2 average pool of the ConvNet blocks, computed without ``avg_pool2d``'s CPU kernel.

On a CPU, PyTorch's ``avg_pool2d`` on NCHW tensors loops over every output with a scalar
kernel: on the `small` encoders it took about a third of a DM/AVDD iteration (forward and
backward; docs/BENCHMARKS.md, "Embedding pass against the arithmetic peak"). Four strided
additions compute the same value with vectorised element-wise kernels, and the backward is one
broadcast copy. The result is bit-identical to ``nn.AvgPool2d(2)`` forward and backward (tested):
the kernel sums each window as ((x00 + x01) + x10) + x11 and divides by 4, and so does this;
its gradient is the output gradient divided by 4, copied to the four inputs of the window, and the
gradient of that is the pool again (double backward, as MTT takes it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _Pool2x2(torch.autograd.Function):
    """Forward of the pool; its backward is :class:`_Spread` (and the spread's backward is this pool again)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.input_shape = x.shape
        x = x[..., : x.shape[-2] // 2 * 2, : x.shape[-1] // 2 * 2]  # an odd last row/column is dropped, as avg_pool2d does
        out = torch.add(x[..., 0::2, 0::2], x[..., 0::2, 1::2])
        return out.add_(x[..., 1::2, 0::2]).add_(x[..., 1::2, 1::2]).div_(4)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return _Spread.apply(grad, ctx.input_shape)


class _Spread(torch.autograd.Function):
    """The pool's gradient: each output gradient / 4, copied to its window (``avg_pool2d_backward``).
    Its own gradient is the pool of the incoming one, as PyTorch's double backward of ``avg_pool2d``
    (which MTT's unrolled training steps take), so second derivatives agree bit for bit too."""

    @staticmethod
    def forward(ctx, grad: torch.Tensor, input_shape: torch.Size) -> torch.Tensor:
        *lead, height, width = input_shape
        h, w = grad.shape[-2:]
        spread = (grad / 4)[..., :, None, :, None].expand(*grad.shape[:-2], h, 2, w, 2).reshape(*lead, 2 * h, 2 * w)
        return F.pad(spread, (0, width - 2 * w, 0, height - 2 * h)) if (2 * h, 2 * w) != (height, width) else spread

    @staticmethod
    def backward(ctx, grad_grad: torch.Tensor):
        return _Pool2x2.apply(grad_grad), None


class AvgPool2x2(nn.Module):
    """``nn.AvgPool2d(2)``, bit for bit, faster on a CPU (see the module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _Pool2x2.apply(x)
