"""The training kernels: the chunked projection and label-smoothed cross-entropy, the CPU
dropout and its fused ReLU."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attn.model.nn import loss as loss_module
from attn.model.nn.dropout import Dropout, dropout, relu_dropout
from attn.model.nn.loss import projected_cross_entropy


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
@pytest.mark.parametrize("chunk_rows", [1, 7, 64])
def test_projected_cross_entropy_equals_torch(eps: float, chunk_rows: int, monkeypatch) -> None:
    # 40 rows in chunks of 1, 7 (a short last chunk) and 64 (one chunk).
    monkeypatch.setattr(loss_module, "CHUNK_ELEMENTS", chunk_rows * 257)
    torch.manual_seed(0)
    states = torch.randn(40, 16, dtype=torch.float64) * 2
    weight = torch.randn(257, 16, dtype=torch.float64)
    target = torch.randint(0, 257, (40,))
    mine_s, mine_w = states.clone().requires_grad_(), weight.clone().requires_grad_()
    ref_s, ref_w = states.clone().requires_grad_(), weight.clone().requires_grad_()
    mine = projected_cross_entropy(mine_s, mine_w, target, eps)
    ref = F.cross_entropy(F.linear(ref_s, ref_w), target, label_smoothing=eps, reduction="sum")
    (mine * 0.37).backward()
    (ref * 0.37).backward()
    assert torch.allclose(mine, ref, rtol=1e-12, atol=1e-12)
    assert torch.allclose(mine_s.grad, ref_s.grad, rtol=1e-10, atol=1e-12)
    assert torch.allclose(mine_w.grad, ref_w.grad, rtol=1e-10, atol=1e-12)


def test_projected_cross_entropy_under_cpu_autocast_multiplies_in_bfloat16() -> None:
    # Under autocast the three products run in bfloat16; the softmax, the loss and the
    # gradients stay float32.
    torch.manual_seed(1)
    states = torch.randn(300, 64, requires_grad=True)
    weight = torch.randn(500, 64, requires_grad=True)
    target = torch.randint(0, 500, (300,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = projected_cross_entropy(states, weight, target, 0.1)
    loss.backward()
    assert loss.dtype == torch.float32
    assert states.grad.dtype == torch.float32 and weight.grad.dtype == torch.float32

    ref_s, ref_w = (
        states.detach().clone().requires_grad_(),
        weight.detach().clone().requires_grad_(),
    )
    ref = F.cross_entropy(ref_s @ ref_w.t(), target, label_smoothing=0.1, reduction="sum")
    ref.backward()
    # bfloat16 logits: the loss is no longer the float32 one to float32 precision ...
    assert loss.item() != ref.item()
    # ... but equals the loss of the bfloat16-rounded logits, and stays close to float32.
    low = (states.detach().bfloat16() @ weight.detach().bfloat16().t()).float()
    bf16_ref = F.cross_entropy(low, target, label_smoothing=0.1, reduction="sum")
    torch.testing.assert_close(loss, bf16_ref, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(loss, ref, rtol=2e-3, atol=0.0)
    for mine, theirs in ((states.grad, ref_s.grad), (weight.grad, ref_w.grad)):
        assert ((mine - theirs).norm() / theirs.norm()).item() < 2e-2


def test_projected_cross_entropy_stays_finite_when_confidently_wrong() -> None:
    states = torch.tensor([[200.0, 0.0]], requires_grad=True)
    weight = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]], requires_grad=True)
    loss = projected_cross_entropy(states, weight, torch.tensor([1]), 0.1)
    loss.backward()
    # logits (200, 0, 0): -log p(target) = 200, the smoothing term averages 200, 0 and 0.
    assert torch.isfinite(loss) and loss.item() == pytest.approx(0.9 * 200 + 0.1 * 400 / 3)
    expected = torch.tensor([[1.0 - 0.1 / 3, -0.9 - 0.1 / 3, -0.1 / 3]])  # d loss / d logits
    torch.testing.assert_close(weight.grad, expected.t() @ states.detach())


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


def test_relu_dropout_equals_dropout_of_relu() -> None:
    x = torch.randn(300, 64)
    fused_x, plain_x = x.clone().requires_grad_(), x.clone().requires_grad_()
    upstream = torch.randn(300, 64)
    torch.manual_seed(5)
    fused = relu_dropout(fused_x, 0.2, training=True)
    torch.manual_seed(5)
    plain = dropout(torch.relu(plain_x), 0.2, training=True)
    assert torch.equal(fused, plain)
    assert 0.1 < (fused == 0).float().mean().item() - (x <= 0).float().mean().item() * 0.8 < 0.3
    (fused * upstream).sum().backward()
    (plain * upstream).sum().backward()
    assert torch.equal(fused_x.grad, plain_x.grad)
    assert torch.equal(relu_dropout(x, 0.2, training=False), torch.relu(x))


def _saved_bytes(fn) -> int:
    """Bytes of the distinct tensors autograd keeps for the backward pass of `fn()`."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


def test_feed_forward_keeps_its_hidden_activation_once_for_backward() -> None:
    from attn.model.nn.transformer import FeedForward

    ff = FeedForward(32, 512, 0.1, "relu").train()
    x = torch.randn(64, 32, requires_grad=True)
    fused = _saved_bytes(lambda: ff(x))
    unfused = _saved_bytes(lambda: ff.w2(dropout(torch.relu(ff.w1(x)), 0.1, training=True)))
    hidden = 64 * 512 * 4  # one float (64, 512) activation
    # Unfused: relu's output, the dropout's byte mask and its output (kept by w2); fused: the
    # output alone (shared by the node and w2). Both keep the input and the weights.
    assert unfused - fused == hidden + hidden // 4


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
    # The gradients too: those of the reference's weights under the same mask and dropout.
    grad = torch.randn_like(out)
    want = torch.autograd.grad(expected, (q, k, v), grad)
    got = torch.autograd.grad(out, (q, k, v), grad)
    for g, w in zip(got, want, strict=True):
        assert g.abs().sum() > 0
        torch.testing.assert_close(g, w)
