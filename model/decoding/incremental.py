"""Incremental decoding for search: the decoder run on the newest piece of every row.

`Transformer.decode` over the whole prefix is the reference. Search runs thousands of
one-piece steps, whose cost on a CPU is mostly the number of operations rather than
arithmetic, so this module computes the same decoder with fewer of them:

- the weights are arranged once (`StepWeights`): self-attention's query, key and value
  projections as one matrix, cross-attention's key and value as another, the 1/sqrt(d_k) of
  the scores folded into the query projections, the embedding matrix scaled by
  sqrt(d_model); on the CPU in MKL's faster layout (`column_major`), or quantized (int8);
- the self-attention keys and values live in one buffer preallocated for the whole search,
  time first (T, layers, 2, rows, d_model): a step writes its slice in place, and beam
  reordering (or rows leaving) copies the filled part once into a second buffer, where the
  general path concatenates and then selects, two copies of the cache per step;
- cross-attention keys and values are computed once per sentence, transposed for the
  product, and the source mask becomes an additive bias of the scores (one `baddbmm`);
- on the CPU, attention over few positions avoids two slow paths: softmax over fewer scores
  than the CPU's float vector holds (`SOFTMAX_WIDTH`), and thousands of tiny matrix products
  (`FEW_POSITIONS`);
- plain functions on tensors: no module calls, no masks rebuilt per step.

`attn.model.decoding.search` uses it for every cached search, and `attn export --format onnx`
traces the same layer computations (`StepWeights.embed_step`, `self_qkv`, `finish_layer`)
with a functional cache; its outputs equal the reference's to float rounding
(tests/test_incremental.py, tests/test_export.py).
"""

from __future__ import annotations

import warnings
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attn.model.device import column_major, packed_linear
from attn.model.nn.transformer import Transformer, embed_scale, norm_in, norm_out

# Below this many rows an int8 step runs its products in float32: the int8 kernel (which
# quantizes its input first) costs 20-30 us a call whatever the size, twice float32's on a
# few rows (a batch's last sentences).
FEW_ROWS = 16


def softmax_width() -> int:
    """Below how many scores a row torch's CPU softmax runs only its scalar loop: the float
    vector of its kernels (16 with AVX-512, 8 with AVX2), 0 where not measured (no padding).

    With AVX-512, 512 rows of 13 scores take 160 us, of 16 scores 24 us; with AVX2, padding 3-7
    scores to 8 takes 0.25-0.46x the time, but padding 9-15 to 16 1.37x (paired timings).
    """
    get = getattr(torch.backends.cpu, "get_cpu_capability", None)
    return {"AVX512": 16, "AVX2": 8}.get(get() if get else "", 0)


# On the CPU, attention over fewer positions than this takes its softmax over this many, the
# added ones masked: a batch's source is padded once (its cross-attention), and a step's
# self-attention scores are padded before their softmax.
SOFTMAX_WIDTH = softmax_width()
# On the CPU, self-attention over at most this many positions (a sentence's first steps) uses
# element-wise products and sums: R*h matrix products of 1 x d_k x t cost more (0.35-0.5x the
# time at 1-4 positions, 1.0-1.5x from 7 on; paired timings, one thread).
FEW_POSITIONS = 4


class Linear:
    """activation(x W^T + b) for one projection: float32 (on the CPU with the weight in MKL's
    faster layout) or dynamic int8 (the kernels of `torch.ao.nn.quantized.dynamic.Linear`).
    An int8 layer keeps the float32 weight too, for inputs of fewer than `FEW_ROWS` rows.

    Shape: weight (out, in), bias (out,); maps (R, in) -> (R, out), float32.
    """

    def __init__(
        self,
        weight: Tensor,
        bias: Tensor | None,
        precision: str = "float32",
        activation: str = "none",
        pack: bool = False,
    ) -> None:
        self.precision, self.activation = precision, activation
        if precision not in ("float32", "int8"):
            raise ValueError(f"unknown precision {precision!r}")
        # With `pack`, float32 products (an int8 layer's on few rows too) go through oneDNN.
        self.fast = packed_linear(weight, bias) if pack else None
        # The plain weight only where no packed copy replaces it (no second copy in memory).
        self.weight: Tensor | None = None
        if self.fast is None:
            self.weight = column_major(weight) if weight.is_cpu else weight.contiguous()
        self.bias = bias
        self.packed = None
        if precision == "int8":
            layer = nn.Linear(weight.size(1), weight.size(0), bias=bias is not None)
            with torch.no_grad():
                layer.weight.copy_(weight)
                if bias is not None:
                    layer.bias.copy_(bias)
            with warnings.catch_warnings():
                # torch.ao.quantization is deprecated in favour of torchao (not a dependency).
                warnings.simplefilter("ignore")
                quantized = torch.ao.quantization.quantize_dynamic(
                    nn.Sequential(layer), {nn.Linear}, dtype=torch.qint8
                )[0]
            self.packed = quantized._packed_params._packed_params
            # As the module's forward: versions >= 4 quantize inputs to a reduced range.
            self.reduce_range = quantized.version is not None and quantized.version >= 4

    def __call__(self, x: Tensor) -> Tensor:
        if self.precision == "int8" and x.size(0) >= FEW_ROWS:
            y = torch.ops.quantized.linear_dynamic(x, self.packed, reduce_range=self.reduce_range)
        elif self.fast is not None:
            y = self.fast(x)
        else:
            y = F.linear(x, self.weight, self.bias)
        if self.activation == "relu":
            return y.relu_()
        if self.activation == "silu":
            return F.silu(y, inplace=True)
        return F.gelu(y) if self.activation == "gelu" else y


class LayerWeights:
    """One decoder layer arranged for single-position steps (see the module docstring)."""

    def __init__(self, layer: nn.Module, precision: str, activation: str, pack: bool) -> None:
        self_attn, cross = layer.self_attn, layer.cross_attn
        linear = partial(Linear, precision=precision, pack=pack)
        scale = self_attn.d_k**-0.5
        self.post = layer.post  # where the norms go: `norm_in` / `norm_out`
        self.norms = [_layer_norm(n) for n in (layer.norm1, layer.norm2, layer.norm3)]
        q, k, v = self_attn.q_proj, self_attn.k_proj, self_attn.v_proj
        self.qkv = linear(
            torch.cat([q.weight * scale, k.weight, v.weight]),
            torch.cat([q.bias * scale, k.bias, v.bias]),
        )
        self.self_out = linear(self_attn.out_proj.weight, self_attn.out_proj.bias)
        self.cross_q = linear(cross.q_proj.weight * scale, cross.q_proj.bias * scale)
        # Once per batch, on the memory: many rows, as many shapes as batches, so not packed
        # (oneDNN would build and cache a kernel for each; MKL is as fast on many rows).
        self.cross_kv = Linear(
            torch.cat([cross.k_proj.weight, cross.v_proj.weight]),
            torch.cat([cross.k_proj.bias, cross.v_proj.bias]),
            precision,
        )
        self.cross_out = linear(cross.out_proj.weight, cross.out_proj.bias)
        self.ff1 = linear(layer.ff.w1.weight, layer.ff.w1.bias, activation=activation)
        self.ff2 = linear(layer.ff.w2.weight, layer.ff.w2.bias)


class StepWeights:
    """The decoder of a `Transformer` arranged for incremental decoding.

    Prepared once per loaded model (`attn.model.inference.pipeline` does at load); a search
    without one prepares float32 weights of the model as it is (training's validation).
    The weights are copies: changing the model afterwards does not change them.

    Args:
        model: an encoder-decoder `Transformer` with float weights (before `quantize_int8`).
        precision: of the linear layers of the steps: "float32" or "int8".
        pack: on the CPU, run the float32 products through oneDNN with prepacked weights
            (`attn.model.device.packed_linear`), the whole-vocabulary output projection
            too (`output`); not for the ONNX export, which traces plain products.
    """

    @torch.no_grad()
    def __init__(self, model: Transformer, precision: str = "float32", pack: bool = False) -> None:
        c = model.config
        self.d_model, self.n_heads = c.d_model, c.n_heads
        self.d_k = c.d_model // c.n_heads
        self.precision = precision
        self.embed = model.embed.weight * embed_scale(c)  # (V, d), as Encoder._embed
        self.positions = model.positions  # (max_length + 2, d)
        self.layers = [
            LayerWeights(layer, precision, c.activation, pack) for layer in model.decoder
        ]
        # The projection onto the whole vocabulary (tied, plus the logits bias), prepacked;
        # None: the model's own (`Transformer.project`; int8: its quantized copy).
        self.output = (
            packed_linear(model.embed.weight, model.logits_bias)
            if pack and precision == "float32"
            else None
        )
        norm = model.decoder_norm
        self.norm = _layer_norm(norm) if isinstance(norm, nn.LayerNorm) else None

    def embed_step(self, tokens: Tensor, t: int) -> Tensor:
        """The decoder input of position `t` (0 = the start piece's).

        Shape: tokens (R,) -> (R, d_model)."""
        return F.embedding(tokens, self.embed).add_(self.positions[t])

    def self_qkv(self, i: int, x: Tensor) -> Tensor:
        """Layer i's self-attention query (scaled by 1/sqrt(d_k)), key and value of `x`.

        Shape: x (R, d_model) -> (R, 3 * d_model): query, key, value side by side.
        """
        layer = self.layers[i]
        return layer.qkv(norm_in(x, layer.norms[0], layer.post))

    def cross_keys_values(self, memory: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Every layer's cross-attention keys and values of the memory.

        Shape: memory (B, S, d_model) -> per layer (keys, values), each (B, h, S, d_k).
        """
        b, s, d = memory.shape
        out = []
        for layer in self.layers:
            kv = layer.cross_kv(memory.reshape(b * s, d)).view(b, s, 2, self.n_heads, self.d_k)
            out.append((kv[:, :, 0].transpose(1, 2), kv[:, :, 1].transpose(1, 2)))
        return out

    def finish_layer(
        self, i: int, x: Tensor, a: Tensor, k: Tensor, v: Tensor, bias: Tensor, beams: int
    ) -> tuple[Tensor, Tensor]:
        """The rest of decoder layer i once its self-attention `a` is known: the residual,
        cross-attention (the `beams` rows of a sentence query its memory together) and the
        feed-forward block. Returns the layer's output and the cross-attention weights.

        Shape: x, a (R, d_model), R = B * beams; k (B, h, d_k, S) transposed for q k^T;
            v (B, h, S, d_k); bias (B, h, 1, S) added to the scores (`score_bias`);
            returns (R, d_model) and weights (B*h, beams, S).
        """
        layer, d, h, d_k = self.layers[i], self.d_model, self.n_heads, self.d_k
        r, g = x.size(0), beams
        b = r // g
        norm1, norm2, norm3 = layer.norms
        post = layer.post
        x = norm_out(x + layer.self_out(a), norm1, post)
        q = layer.cross_q(norm_in(x, norm2, post))  # (R, d)
        q = q.view(b, g, h, d_k).transpose(1, 2).reshape(b * h, g, d_k)
        p = torch.baddbmm(bias.view(b * h, 1, -1), q, k.reshape(b * h, d_k, -1)).softmax(-1)
        a = torch.bmm(p, v.reshape(b * h, -1, d_k))  # (B*h, g, d_k)
        a = a.view(b, h, g, d_k).transpose(1, 2).reshape(r, d)
        x = norm_out(x + layer.cross_out(a), norm2, post)
        f = layer.ff1(norm_in(x, norm3, post))  # (R, d_ff), activated
        return norm_out(x + layer.ff2(f), norm3, post), p

    def final_norm(self, x: Tensor) -> Tensor:
        """The decoder's last LayerNorm (none after post-norm layers).

        Shape: (R, d_model) -> (R, d_model).
        """
        return x if self.norm is None else self.norm(x)

    def start(self, memory: Tensor, src_mask: Tensor, beams: int, width: int) -> DecoderState:
        """The decoder state of a batch: `beams` rows per sentence, at most `width` steps.

        Shape: memory (B, S, d_model); src_mask (B, S) True = real piece.
        """
        return DecoderState(self, memory, src_mask, beams, width)


def _layer_norm(norm: nn.LayerNorm):
    """`norm` as a plain function of its weights (no module call per step)."""
    return partial(
        F.layer_norm,
        normalized_shape=norm.normalized_shape,
        weight=norm.weight,
        bias=norm.bias,
        eps=norm.eps,
    )


def score_bias(src_mask: Tensor, heads: int, dtype: torch.dtype) -> Tensor:
    """The source mask as an additive bias of cross-attention scores: 0 where a sentence's
    piece is real, the lowest float elsewhere; one row per sentence and head, so that a step
    views it as (B*h, 1, S).

    Shape: src_mask (B, S) True = real piece -> (B, h, 1, S).
    """
    b, s = src_mask.shape
    bias = torch.zeros(b, 1, 1, s, device=src_mask.device, dtype=dtype)
    bias = bias.masked_fill(~src_mask[:, None, None, :], torch.finfo(dtype).min)
    return bias.expand(b, heads, 1, s).contiguous()


def self_attention(q: Tensor, keys: Tensor, values: Tensor, cpu: bool = False) -> Tensor:
    """One query per row and head over the n positions so far; `cpu` takes the CPU's faster
    paths for few positions (see the module docstring), same values.

    Shape: q (R*h, 1, d_k) scaled by 1/sqrt(d_k); keys, values (n, R*h, d_k) -> (R*h, d_k).
    """
    n = keys.size(0)
    if cpu and n <= FEW_POSITIONS:
        p = (keys * q.transpose(0, 1)).sum(-1).softmax(0)  # (n, R*h)
        return (values * p.unsqueeze(-1)).sum(0)
    scores = torch.bmm(q, keys.permute(1, 2, 0))  # (R*h, 1, n)
    if cpu and n < SOFTMAX_WIDTH:
        low = torch.finfo(scores.dtype).min
        p = F.pad(scores, (0, SOFTMAX_WIDTH - n), value=low).softmax(-1)[..., :n]
    else:
        p = scores.softmax(-1)
    return torch.bmm(p, values.transpose(0, 1)).squeeze(1)


class DecoderState:
    """The keys and values of one batch's search, and its decoding step.

    Rows are the search's hypotheses, `beams` consecutive rows per sentence; the sentences'
    cross-attention keys and values are shared by their rows. Use `step` once per position,
    `reorder` to make row i continue row `index[i]` (beam search), `keep_sentences` when
    sentences leave the batch.
    """

    def __init__(
        self, weights: StepWeights, memory: Tensor, src_mask: Tensor, beams: int, width: int
    ) -> None:
        w = self.w = weights
        b, s, d = memory.shape
        h = w.n_heads
        self.beams, self.rows = beams, b * beams
        self.cross: list[tuple[Tensor, Tensor]] = []
        self.cpu = memory.is_cpu
        pad = max(0, SOFTMAX_WIDTH - s) if self.cpu else 0  # masked positions added
        for k, v in w.cross_keys_values(memory):  # (B, h, S, d_k)
            k = k.transpose(2, 3)  # (B, h, d_k, S): for q k^T
            if pad:
                k, v = F.pad(k, (0, pad)), F.pad(v, (0, 0, 0, pad))
            self.cross.append((k.contiguous(), v.contiguous()))
        if pad:
            src_mask = F.pad(src_mask, (0, pad), value=False)
        self.bias = score_bias(src_mask, h, memory.dtype)
        # Self-attention keys and values, time first: (T, layers, 2, rows, d), twice (the
        # second receives each reordering).
        self.per_step = len(w.layers) * 2
        size = width * self.per_step * self.rows * d
        self.buffers = [memory.new_empty(size), memory.new_empty(size)]
        self.width = width
        self.kv = self._view(self.buffers[0], self.rows)
        # Row offsets of each (step, layer, key or value) block: index of a reordering.
        self.blocks = torch.arange(width * self.per_step, device=memory.device)[:, None]

    def _view(self, buffer: Tensor, rows: int) -> Tensor:
        """The first part of `buffer` as the cache of `rows` rows: (T, layers, 2, rows, d)."""
        d = self.w.d_model
        size = self.width * self.per_step * rows * d
        return buffer[:size].view(self.width, len(self.w.layers), 2, rows, d)

    def step(self, tokens: Tensor, t: int) -> Tensor:
        """Decode position `t` (0 = the piece after BOS's) from each row's newest piece.

        Shape: tokens (R,) -> final decoder states (R, d_model), after the last LayerNorm.
        """
        w = self.w
        r, d, h, d_k = tokens.size(0), w.d_model, w.n_heads, w.d_k
        x = w.embed_step(tokens, t)  # (R, d)
        kv_all = self.kv
        for i in range(len(w.layers)):
            # Masked self-attention: this step's keys and values join the cache; the query
            # sees every position so far (the future is not there yet).
            qkv = w.self_qkv(i, x)  # (R, 3d)
            kv_all[t, i].copy_(qkv[:, d:].view(r, 2, d).transpose(0, 1))
            keys = kv_all[: t + 1, i, 0].view(t + 1, r * h, d_k)  # (t+1, R*h, d_k)
            values = kv_all[: t + 1, i, 1].view(t + 1, r * h, d_k)
            q = qkv[:, :d].reshape(r * h, 1, d_k)  # scaled by 1/sqrt(d_k)
            a = self_attention(q, keys, values, self.cpu).view(r, d)
            x, _ = w.finish_layer(i, x, a, *self.cross[i], self.bias, self.beams)
        return w.final_norm(x)

    def reorder(self, index: Tensor, filled: int) -> None:
        """Row i of the cache becomes row `index[i]` (of the `filled` steps so far).

        Shape: index (R',) row indices into the current rows; R' may be fewer (rows left).
        """
        rows, new_rows, d = self.rows, index.numel(), self.w.d_model
        blocks = filled * self.per_step
        source = self.kv[:filled].view(blocks * rows, d)
        flat = (self.blocks[:blocks] * rows + index).view(-1)  # (blocks * R',)
        self.buffers.reverse()
        out = self._view(self.buffers[0], new_rows)
        torch.index_select(source, 0, flat, out=out[:filled].view(blocks * new_rows, d))
        self.kv, self.rows = out, new_rows

    def keep_sentences(self, keep: Tensor) -> None:
        """Drop the sentences not in `keep` from the cross-attention keys, values and mask;
        their rows leave the self-attention cache through `reorder`.

        Shape: keep (B',) sentence indices.
        """
        self.cross = [(k.index_select(0, keep), v.index_select(0, keep)) for k, v in self.cross]
        self.bias = self.bias.index_select(0, keep)
