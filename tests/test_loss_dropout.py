"""The training-speed kernels: the fused label-smoothed cross-entropy and the CPU dropout."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attn.model.nn.dropout import Dropout, dropout
from attn.model.nn.loss import smoothed_cross_entropy


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_smoothed_cross_entropy_equals_torch(eps: float) -> None:
    torch.manual_seed(0)
    logits = torch.randn(40, 257, dtype=torch.float64) * 4
    target = torch.randint(0, 257, (40,))
    mine_x = logits.clone().requires_grad_()
    ref_x = logits.clone().requires_grad_()
    mine = smoothed_cross_entropy(mine_x, target, eps)
    ref = F.cross_entropy(ref_x, target, label_smoothing=eps, reduction="sum")
    (mine * 0.37).backward()
    (ref * 0.37).backward()
    assert torch.allclose(mine, ref, rtol=1e-12, atol=1e-12)
    assert torch.allclose(mine_x.grad, ref_x.grad, rtol=1e-10, atol=1e-12)


def test_smoothed_cross_entropy_stays_finite_when_confidently_wrong() -> None:
    logits = torch.tensor([[200.0, 0.0, 0.0]], requires_grad=True)
    loss = smoothed_cross_entropy(logits, torch.tensor([1]), 0.1)
    loss.backward()
    assert torch.isfinite(loss) and loss.item() > 80
    assert torch.allclose(logits.grad, torch.tensor([[1.0 - 0.1 / 3, -0.9 - 0.1 / 3, -0.1 / 3]]))


def test_cpu_dropout_rate_scale_and_gradient() -> None:
    torch.manual_seed(0)
    x = torch.ones(200_000, requires_grad=True)
    y = dropout(x, 0.1, training=True)
    kept = y != 0
    scale = 256 / (256 - 26)  # p rounded to 26/256
    assert abs(kept.float().mean().item() - (1 - 26 / 256)) < 0.005
    assert torch.allclose(y[kept], torch.full_like(y[kept], scale))
    assert abs(y.mean().item() - 1.0) < 0.01  # expectation kept
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # the same mask and scale in the backward pass


def test_cpu_dropout_follows_the_seed_and_is_off_in_eval() -> None:
    x = torch.randn(1000)
    torch.manual_seed(3)
    a = dropout(x, 0.3, training=True)
    torch.manual_seed(3)
    b = dropout(x, 0.3, training=True)
    assert torch.equal(a, b)
    assert not torch.equal(a, dropout(x, 0.3, training=True))
    module = Dropout(0.3).eval()
    assert module(x) is x
    assert torch.equal(dropout(x, 0.0, training=True), x)
    with pytest.raises(ValueError, match="dropout probability"):
        Dropout(1.5)


@pytest.mark.parametrize("causal", [False, True])
def test_attention_dropout_on_cpu_drops_weights_with_the_byte_mask(causal: bool) -> None:
    from attn.model.nn.attention import scaled_dot_product_attention
    from attn.model.nn.dropout import random_bytes

    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 6, 8, requires_grad=True) for _ in range(3))
    mask = torch.ones(2, 1, 1, 6, dtype=torch.bool)
    mask[1, ..., 4:] = False  # the second sequence: 2 padded keys
    # The reference: the weights without dropout, then the mask drawn from the same seed.
    _, weights = scaled_dot_product_attention(q, k, v, mask, causal=causal, need_weights=True)
    torch.manual_seed(7)
    keep = random_bytes(weights.shape, weights.device) >= 64  # p = 0.25 = 64/256
    expected = (weights * keep * (256 / 192)) @ v
    torch.manual_seed(7)
    out, _ = scaled_dot_product_attention(q, k, v, mask, causal=causal, dropout_p=0.25)
    torch.testing.assert_close(out, expected)
    out.sum().backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in (q, k, v))
