"""Attention as the seed describes it: fast path, reference path and torch's own module agree."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from attn.model.nn.attention import MultiHeadAttention, causal_mask, scaled_dot_product_attention

B, H, TQ, TK, DK = 3, 4, 5, 7, 8


def _qkv(dtype=torch.float32, t_q=TQ, t_k=TK, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, t_q, DK, generator=g).to(dtype)
    k = torch.randn(B, H, t_k, DK, generator=g).to(dtype)
    v = torch.randn(B, H, t_k, DK, generator=g).to(dtype)
    return q, k, v


def _padding_mask(lengths, t_k=TK):
    return (torch.arange(t_k)[None, :] < torch.tensor(lengths)[:, None])[:, None, None, :]


def _masks():
    return {
        "none": (None, False),
        "padding": (_padding_mask([7, 4, 1]), False),
        "causal": (None, True),
        "padding+causal": (_padding_mask([7, 4, 2]), True),
    }


@pytest.mark.parametrize("name", list(_masks()))
def test_fast_path_equals_reference_float32(name):
    mask, causal = _masks()[name]
    t_q = TK if causal else TQ
    q, k, v = _qkv(t_q=t_q)
    fast, none = scaled_dot_product_attention(q, k, v, mask, causal=causal)
    ref, weights = scaled_dot_product_attention(q, k, v, mask, causal=causal, need_weights=True)
    assert none is None and weights.shape == (B, H, t_q, TK)
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_fast_path_equals_reference_low_precision(dtype):
    q, k, v = _qkv(dtype)
    mask = _padding_mask([7, 3, 5])
    try:
        fast, _ = scaled_dot_product_attention(q, k, v, mask)
    except RuntimeError as e:  # some CPU builds lack half-precision kernels
        pytest.skip(f"{dtype} attention unsupported here: {e}")
    ref, _ = scaled_dot_product_attention(q, k, v, mask, need_weights=True)
    assert fast.dtype == dtype and not torch.isnan(fast).any()
    torch.testing.assert_close(fast.float(), ref.float(), atol=2e-2, rtol=2e-2)


def test_reference_weights_equal_softmax_of_scaled_scores():
    q, k, v = _qkv()
    mask = _padding_mask([7, 4, 1])
    out, weights = scaled_dot_product_attention(q, k, v, mask, need_weights=True)
    scores = torch.einsum("bhqd,bhkd->bhqk", q, k) / math.sqrt(DK)
    scores = scores.masked_fill(~mask, float("-inf"))
    expected = torch.softmax(scores, dim=-1)
    torch.testing.assert_close(weights, expected)
    torch.testing.assert_close(out, expected @ v)
    # masked keys get exactly zero weight; each row sums to one
    assert torch.all(weights[1, :, :, 4:] == 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(B, H, TQ))


def test_causal_weights_are_zero_above_the_diagonal():
    q, k, v = _qkv(t_q=TK)
    _, weights = scaled_dot_product_attention(q, k, v, causal=True, need_weights=True)
    upper = ~causal_mask(TK, TK)
    assert torch.all(weights[..., upper] == 0)
    assert torch.all(weights[..., ~upper] > 0)


@pytest.mark.parametrize("need_weights", [False, True])
def test_fully_masked_row_gives_zeros_not_nan(need_weights):
    q, k, v = _qkv()
    mask = _padding_mask([7, 0, 3])  # the second sequence has no visible key at all
    out, weights = scaled_dot_product_attention(q, k, v, mask, need_weights=need_weights)
    assert not torch.isnan(out).any()
    assert torch.all(out[1] == 0)
    assert torch.any(out[0] != 0)
    if need_weights:
        assert torch.all(weights[1] == 0)


def test_fully_masked_row_has_finite_gradients():
    q, k, v = (t.requires_grad_() for t in _qkv())
    out, _ = scaled_dot_product_attention(q, k, v, _padding_mask([7, 0, 3]))
    out.sum().backward()
    for t in (q, k, v):
        assert torch.isfinite(t.grad).all()


def _copy_into_torch_mha(ours: MultiHeadAttention) -> nn.MultiheadAttention:
    ref = nn.MultiheadAttention(ours.d_model, ours.n_heads, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(
            torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight])
        )
        ref.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))
        ref.out_proj.weight.copy_(ours.out_proj.weight)
        ref.out_proj.bias.copy_(ours.out_proj.bias)
    return ref.eval()


@pytest.mark.parametrize("need_weights", [False, True])
def test_multi_head_attention_equals_torch_module(need_weights):
    torch.manual_seed(0)
    ours = MultiHeadAttention(32, 4).eval()
    ref = _copy_into_torch_mha(ours)
    x_q, x_kv = torch.randn(B, TQ, 32), torch.randn(B, TK, 32)
    lengths = torch.tensor([7, 5, 2])
    valid = torch.arange(TK)[None, :] < lengths[:, None]  # (B, T_k) True = real
    out, weights = ours(x_q, x_kv, valid[:, None, None, :], need_weights=need_weights)
    expected, expected_w = ref(
        x_q, x_kv, x_kv, key_padding_mask=~valid, need_weights=True, average_attn_weights=False
    )
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    if need_weights:
        torch.testing.assert_close(weights, expected_w, atol=1e-6, rtol=1e-5)


def test_masked_self_attention_equals_torch_module_with_causal_mask():
    torch.manual_seed(1)
    ours = MultiHeadAttention(16, 2).eval()
    ref = _copy_into_torch_mha(ours)
    x = torch.randn(2, 6, 16)
    out, _ = ours(x, x, causal=True)
    expected, _ = ref(x, x, x, attn_mask=~causal_mask(6, 6), need_weights=False)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("t_q", [1, 3])
def test_beams_sharing_one_memory_equal_a_memory_per_beam(t_q):
    """Beam search passes one memory per sentence for its k beams (queries grouped)."""
    torch.manual_seed(3)
    mha = MultiHeadAttention(16, 2).eval()
    beams = 4
    memory = torch.randn(3, 7, 16)  # (B, S, d)
    valid = torch.arange(7)[None, :] < torch.tensor([7, 4, 1])[:, None]  # (B, S)
    x = torch.randn(3 * beams, t_q, 16)  # (B * k, T_q, d): row i is a beam of sentence i // k
    out, weights = mha(x, memory, valid[:, None, None, :], need_weights=True)
    expected, expected_w = mha(
        x,
        memory.repeat_interleave(beams, 0),
        valid.repeat_interleave(beams, 0)[:, None, None, :],
        need_weights=True,
    )
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(weights, expected_w, atol=1e-6, rtol=1e-5)
    fast, _ = mha(x, memory, valid[:, None, None, :])
    torch.testing.assert_close(fast, expected, atol=1e-5, rtol=1e-5)


def test_heads_must_divide_model_width():
    with pytest.raises(ValueError, match="divisible by n_heads, got 10 and 3"):
        MultiHeadAttention(10, 3)
