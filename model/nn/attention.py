"""Scaled dot-product attention and multi-head attention, as the seed article describes them.

Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V.

Masks follow one convention everywhere: boolean, True = may attend. Masked scores get
`torch.finfo(dtype).min` (not a small constant), and a query row whose keys are all masked
yields zeros (weights and output), never NaN.

Two paths share one contract: the fast path calls `F.scaled_dot_product_attention`; the
reference path computes the same thing step by step and can return the weights per head
(used by the tests and by `attn attention`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attn.model.nn.dropout import dropout

# Up to this many queries per row (a decoding step, the beams of one sentence), attention on
# the CPU is two batched products instead of SDPA.
_FEW_QUERIES = 16


def causal_mask(t_q: int, t_k: int, device: torch.device | None = None) -> Tensor:
    """Boolean mask (t_q, t_k): query i (the last t_q of t_k positions) sees keys <= itself."""
    return torch.ones(t_q, t_k, dtype=torch.bool, device=device).tril(diagonal=t_k - t_q)


def scaled_dot_product_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None = None,
    *,
    causal: bool = False,
    dropout_p: float = 0.0,
    need_weights: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """softmax(q k^T / sqrt(d_k)) v, per head.

    Args:
        q, k, v: queries, keys and values.
        mask: boolean, broadcastable to (B, h, T_q, T_k); True = may attend.
        causal: also hide keys after each query (aligned to the end of the key sequence,
            so it works for incremental decoding with a cache).
        dropout_p: dropout on the attention weights (pass 0.0 at inference).
        need_weights: use the reference path and return the weights.

    Shape:
        q: (B, h, T_q, d_k); k: (B, h, T_k, d_k); v: (B, h, T_k, d_v)
        returns (B, h, T_q, d_v) and, if need_weights, weights (B, h, T_q, T_k)
    """
    t_q, t_k = q.size(-2), k.size(-2)
    sdpa_causal = causal and mask is None and t_q == t_k
    if causal and not sdpa_causal and t_q > 1:
        cm = causal_mask(t_q, t_k, q.device)  # (T_q, T_k)
        mask = cm if mask is None else mask & cm
    keep_rows = None
    if mask is not None:
        keep_rows = mask.any(dim=-1, keepdim=True)  # (..., T_q, 1): rows with a visible key
        # A fully masked row would softmax over nothing (NaN): let it see everything, then zero it.
        mask = mask | ~keep_rows

    if need_weights:
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (B, h, T_q, T_k)
        if sdpa_causal:
            mask = causal_mask(t_q, t_k, q.device)
        if mask is not None:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        weights = scores.softmax(dim=-1)
        if keep_rows is not None:
            weights = weights * keep_rows
        out = F.dropout(weights, p=dropout_p) @ v  # (B, h, T_q, d_v)
        return out, weights

    if q.device.type == "cpu" and (t_q <= _FEW_QUERIES or dropout_p > 0.0):
        # Two batched products on the CPU where SDPA is slow there. A few queries (a decoding
        # step): its kernel costs ~0.4 ms a call in set-up, ten times the products. Dropout
        # (training): its fused kernel refuses dropout, and its fallback draws the mask with
        # `bernoulli_`; the byte mask of `dropout` is several times cheaper.
        scores = q @ k.transpose(-2, -1) * (q.size(-1) ** -0.5)  # (B, h, T_q, T_k)
        if sdpa_causal and t_q > 1:
            mask = causal_mask(t_q, t_k, q.device)  # (A causal mask hides nothing from one query.)
        if mask is not None:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        out = dropout(scores.softmax(dim=-1), dropout_p, training=True) @ v  # (B, h, T_q, d_v)
    else:
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=sdpa_causal
        )  # (B, h, T_q, d_v)
    if keep_rows is not None:
        out = out * keep_rows
    return out, None


class MultiHeadAttention(nn.Module):
    """Multi-head attention: project to Q, K, V; split into heads; attend; concat; project.

    Self-attention passes the same tensor as `x_q` and `x_kv`; cross-attention takes
    queries from the decoder and keys/values from the encoder memory.

    Args:
        d_model: model width; split into `n_heads` heads of width d_model / n_heads.
        n_heads: number of heads.
        dropout: dropout on the attention weights during training.

    Shape:
        x_q: (B, T_q, d_model); x_kv: (B, T_k, d_model)
        mask: boolean, broadcastable to (B, n_heads, T_q, T_k), True = may attend
        returns (B, T_q, d_model) and, if need_weights, weights (B, n_heads, T_q, T_k)
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model must be divisible by n_heads, got {d_model} and {n_heads}")
        self.d_model = d_model
        self.n_heads = n_heads
        self.d_k = d_model // n_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def _split(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.n_heads, self.d_k).transpose(1, 2)  # (B, h, T, d_k)

    def forward(
        self,
        x_q: Tensor,
        x_kv: Tensor,
        mask: Tensor | None = None,
        *,
        causal: bool = False,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend from `x_q` to `x_kv`.

        Incremental decoding (one position at a time, with a key/value cache) is
        `attn.model.decoding.incremental`'s; this is the whole-sequence computation.
        """
        q = self._split(self.q_proj(x_q))  # (B, h, T_q, d_k)
        k = self._split(self.k_proj(x_kv))  # (B, h, T_k, d_k)
        v = self._split(self.v_proj(x_kv))
        # Beam search keeps one memory per sentence for its `groups` beams: their queries
        # attend together, one product per sentence and head.
        groups = q.size(0) // k.size(0)
        out, weights = scaled_dot_product_attention(
            _fold_groups(q, groups),
            k,
            v,
            mask,
            causal=causal,
            dropout_p=self.dropout if self.training else 0.0,
            need_weights=need_weights,
        )
        out = _unfold_groups(out, groups)
        if weights is not None:
            weights = _unfold_groups(weights, groups)
        b, _, t_q, _ = out.shape
        out = out.transpose(1, 2).reshape(b, t_q, self.d_model)  # (B, T_q, d_model)
        return self.out_proj(out), weights


def _fold_groups(x: Tensor, groups: int) -> Tensor:
    """Stack the queries of each run of `groups` batch rows.

    Shape: (B*g, h, T, d) -> (B, h, g*T, d).
    """
    if groups == 1:
        return x
    bg, h, t, d = x.shape
    x = x.view(bg // groups, groups, h, t, d).transpose(1, 2)  # (B, h, g, T, d)
    return x.reshape(bg // groups, h, groups * t, d)


def _unfold_groups(x: Tensor, groups: int) -> Tensor:
    """Undo `_fold_groups`. Shape: (B, h, g*T, d) -> (B*g, h, T, d)."""
    if groups == 1:
        return x
    b, h, gt, d = x.shape
    x = x.view(b, h, groups, gt // groups, d).transpose(1, 2)  # (B, g, h, T, d)
    return x.reshape(b * groups, h, gt // groups, d)
