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


class _ByteDropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, threshold: int) -> Tensor:  # type: ignore[override]
        scale = 256.0 / (256 - threshold)
        keep = random_bytes(x.shape, x.device) >= threshold
        mask = keep.to(x.dtype).mul_(scale)  # (same as x): 0 or the scale
        ctx.save_for_backward(mask)
        return x * mask

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (mask,) = ctx.saved_tensors
        return grad * mask, None


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """`F.dropout`, with the byte mask on the CPU (p rounded to a multiple of 1/256)."""
    if not training or p <= 0.0:
        return x
    if x.device.type != "cpu" or p >= 1.0:
        return F.dropout(x, p, training=True)
    threshold = round(p * 256)
    if threshold == 0:
        return x
    return _ByteDropout.apply(x, min(threshold, 255))


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
