"""Dropout that is cheap on the CPU.

`torch.nn.Dropout` draws its mask with `bernoulli_`, which on the CPU costs about ten
nanoseconds an element: a fifth of a `small` training step. Here the mask comes from random
bytes (eight per 64-bit draw), so the drop probability is rounded to the nearest 1/256
(0.1 becomes 26/256 = 0.1016) and kept values are scaled by 256 / (256 - 26) so the
expectation is unchanged. Other devices use `F.dropout`, whose fused kernels are already fast.
The mask comes from the global CPU generator, so `torch.manual_seed` and a restored RNG
state reproduce it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


def random_bytes(shape: torch.Size, device: torch.device) -> Tensor:
    """Uniform random uint8 tensor of `shape`, drawn as 64-bit integers (8 bytes each)."""
    n = shape.numel()
    words = torch.empty((n + 7) // 8, dtype=torch.int64, device=device)
    words.random_(_INT64_MIN, _INT64_MAX)
    return words.view(torch.uint8)[:n].view(shape)


def _keep(ctx, x: Tensor, threshold: int) -> Tensor:
    """The byte mask of `x` as uint8 0/1 (1 = kept: a random byte at or above `threshold`);
    records the scale of the kept values on `ctx`."""
    ctx.scale = 256.0 / (256 - threshold)
    return _bytes(random_bytes(x.shape, x.device) >= threshold)


def _bytes(mask: Tensor) -> Tensor:
    """A boolean mask viewed as uint8 0/1, no copy. A product with a uint8 tensor gives the
    same values as with the bool one at 2-3x the speed on the CPU: the bool operand is
    converted element by element first, the uint8 one is read in the product's own loop."""
    return mask.view(torch.uint8)


class _ByteDropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, threshold: int) -> Tensor:  # type: ignore[override]
        # The mask is kept as bytes (a quarter of a float mask's memory until the backward
        # pass); x * keep * scale equals x * (keep * scale) exactly: one rounding either way.
        keep = _keep(ctx, x, threshold)
        ctx.save_for_backward(keep)
        return x.mul(keep).mul_(ctx.scale)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (keep,) = ctx.saved_tensors
        return grad.mul(keep).mul_(ctx.scale), None


class _ByteDropoutReLU(torch.autograd.Function):
    """dropout(relu(x)) in one node that keeps only its output for the backward pass.

    The output is positive exactly where x was positive and the byte kept it (the scale is
    above 1, so nothing underflows), so the gradient, grad * scale there and 0 elsewhere,
    needs neither relu's output nor the mask. The next linear layer keeps the same output
    tensor for its own backward pass: the two nodes share one saved tensor.
    """

    @staticmethod
    def forward(ctx, x: Tensor, threshold: int) -> Tensor:  # type: ignore[override]
        out = torch.relu(x).mul_(_keep(ctx, x, threshold)).mul_(ctx.scale)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (out,) = ctx.saved_tensors
        return grad.mul(_bytes(out > 0)).mul_(ctx.scale), None


def _threshold(x: Tensor, p: float, training: bool) -> int | None:
    """The byte threshold of the CPU mask; None where `F.dropout` (or nothing) applies."""
    if not training or p <= 0.0 or x.device.type != "cpu" or p >= 1.0:
        return None
    return min(round(p * 256), 255)


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """`F.dropout`, with the byte mask on the CPU (p rounded to a multiple of 1/256)."""
    threshold = _threshold(x, p, training)
    if threshold is None:
        return F.dropout(x, p, training=True) if training and p > 0.0 else x
    return _ByteDropout.apply(x, threshold) if threshold else x


def relu_dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """`dropout(relu(x), p, training)`, the same values and gradients, in less memory on the
    CPU while training (see `_ByteDropoutReLU`)."""
    threshold = _threshold(x, p, training)
    if not threshold:
        return dropout(torch.relu(x), p, training)
    return _ByteDropoutReLU.apply(x, threshold)


class Dropout(nn.Module):
    """Drop-in for `nn.Dropout(p)` (see the module docstring for the CPU mask)."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
