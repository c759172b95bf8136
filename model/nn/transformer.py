"""The encoder-decoder transformer of "Attention Is All You Need".

Shared embeddings: one matrix embeds source and target pieces and is the output projection.
Positions are sinusoidal. Masks are boolean, True = may attend (see `attention.py`).

attn's own models are pre-LayerNorm with interleaved positions; `ModelConfig`'s options give
the layout of imported models (Marian: post-LayerNorm, split positions, a logits bias). Where
a LayerNorm goes is decided in one place, `norm_in` / `norm_out`, which the decoding steps of
`attn.model.decoding.incremental` use too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attn.model.nn.attention import MultiHeadAttention
from attn.model.nn.config import ModelConfig
from attn.model.nn.dropout import Dropout, relu_dropout


@dataclass
class AttentionRecord:
    """Weights one attention layer used in a forward pass.

    kind: "encoder" (self), "decoder" (masked self) or "cross" (decoder to encoder).
    weights: (B, h, T_q, T_k).
    """

    kind: str
    layer: int
    weights: Tensor


def sinusoidal_positions(length: int, d_model: int, layout: str = "interleaved") -> Tensor:
    """The fixed positional encodings of "Attention Is All You Need".

    Position p, frequency i: sin(p / 10000 ** (2i / d_model)) and the cosine of the same.
    `layout` "interleaved" puts them side by side (dims 2i and 2i + 1); "split" puts the
    sines in the first half and the cosines in the second, as Marian does (computed in
    float64, as transformers' table is).

    Computed on the CPU whatever the default device (the buffer follows `.to()`): on the
    meta device these ops would import torch._dynamo, a second of start-up.

    Shape: returns (length, d_model).
    """
    cpu = torch.device("cpu")
    if layout == "split":
        half = (d_model + 1) // 2
        position = torch.arange(length, dtype=torch.float64, device=cpu).unsqueeze(1)  # (L, 1)
        i = torch.arange(half, dtype=torch.float64, device=cpu)  # (d/2,)
        angle = position / torch.pow(
            torch.tensor(10000.0, dtype=torch.float64, device=cpu), 2 * i / d_model
        )
        return torch.cat([angle.sin(), angle[:, : d_model - half].cos()], 1).float()
    position = torch.arange(length, dtype=torch.float32, device=cpu).unsqueeze(1)  # (L, 1)
    div = torch.exp(
        torch.arange(0, d_model, 2, dtype=torch.float32, device=cpu)
        * (-math.log(10000.0) / d_model)
    )
    pe = torch.zeros(length, d_model, device=cpu)
    pe[:, 0::2] = torch.sin(position * div)
    pe[:, 1::2] = torch.cos(position * div[: d_model // 2])
    return pe


def norm_in(x: Tensor, norm: Callable[[Tensor], Tensor], post: bool) -> Tensor:
    """The input of a sublayer (attention, feed-forward): LayerNorm'd in a pre-norm layer,
    `x` itself in a post-norm one."""
    return x if post else norm(x)


def norm_out(x: Tensor, norm: Callable[[Tensor], Tensor], post: bool) -> Tensor:
    """A sublayer's residual sum: LayerNorm'd in a post-norm layer, `x` itself in a pre-norm
    one (whose stack ends with a LayerNorm of its own)."""
    return norm(x) if post else x


def activation_module(name: str) -> nn.Module:
    """The feed-forward activation of `ModelConfig.activation`."""
    return {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU}[name]()


class FeedForward(nn.Module):
    """Position-wise feed-forward network: Linear, activation, dropout, Linear."""

    def __init__(self, d_model: int, d_ff: int, dropout: float, activation: str) -> None:
        super().__init__()
        self.w1 = nn.Linear(d_model, d_ff)
        self.w2 = nn.Linear(d_ff, d_model)
        self.act = activation_module(activation)
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        h = self.w1(x)  # (B, T, d_ff)
        if isinstance(self.act, nn.ReLU):
            h = relu_dropout(h, self.dropout.p, self.training)
        else:
            h = self.dropout(self.act(h))
        return self.w2(h)  # (B, T, d_model)


class EncoderLayer(nn.Module):
    """Pre-LN: x + SelfAttn(LN(x)), then x + FFN(LN(x)); post-LN (`config.norm`):
    LN(x + SelfAttn(x)), then LN(x + FFN(x))."""

    def __init__(self, c: ModelConfig) -> None:
        super().__init__()
        self.post = c.norm == "post"
        self.norm1 = nn.LayerNorm(c.d_model)
        self.self_attn = MultiHeadAttention(c.d_model, c.n_heads, c.dropout)
        self.norm2 = nn.LayerNorm(c.d_model)
        self.ff = FeedForward(c.d_model, c.d_ff, c.dropout, c.activation)
        self.dropout = Dropout(c.dropout)

    def forward(
        self, x: Tensor, mask: Tensor, need_weights: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        post = self.post
        h = norm_in(x, self.norm1, post)
        a, weights = self.self_attn(h, h, mask, need_weights=need_weights)
        x = norm_out(x + self.dropout(a), self.norm1, post)
        x = norm_out(x + self.dropout(self.ff(norm_in(x, self.norm2, post))), self.norm2, post)
        return x, weights  # (B, S, d_model)


class DecoderLayer(nn.Module):
    """Masked self-attention, cross-attention to the memory, feed-forward; each pre-LN or
    post-LN as `EncoderLayer`'s."""

    def __init__(self, c: ModelConfig) -> None:
        super().__init__()
        self.post = c.norm == "post"
        self.norm1 = nn.LayerNorm(c.d_model)
        self.self_attn = MultiHeadAttention(c.d_model, c.n_heads, c.dropout)
        self.norm2 = nn.LayerNorm(c.d_model)
        self.cross_attn = MultiHeadAttention(c.d_model, c.n_heads, c.dropout)
        self.norm3 = nn.LayerNorm(c.d_model)
        self.ff = FeedForward(c.d_model, c.d_ff, c.dropout, c.activation)
        self.dropout = Dropout(c.dropout)

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        memory_mask: Tensor,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        post = self.post
        h = norm_in(x, self.norm1, post)
        a, self_w = self.self_attn(h, h, causal=True, need_weights=need_weights)
        x = norm_out(x + self.dropout(a), self.norm1, post)
        h = norm_in(x, self.norm2, post)
        a, cross_w = self.cross_attn(h, memory, memory_mask, need_weights=need_weights)
        x = norm_out(x + self.dropout(a), self.norm2, post)
        x = norm_out(x + self.dropout(self.ff(norm_in(x, self.norm3, post))), self.norm3, post)
        return x, self_w, cross_w  # (B, T, d_model)


class Encoder(nn.Module):
    """The part every attn network has: piece embeddings (scaled by sqrt(d_model)) plus
    sinusoidal positions, then the encoder stack and its final LayerNorm (pre-norm only).

    `Transformer` adds the decoder, `attn.model.nn.model.Classifier` a classification head.
    They extend this class rather than hold it, so that its weights keep their names
    (`embed.`, `encoder.`, `encoder_norm.`) in `model.safetensors`. Each calls
    `reset_parameters()` once its own modules exist.

    Shape:
        src: (B, S) piece ids, padded with `config.pad_id`; src_mask: (B, S) True = real piece.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = c = config
        self.embed = nn.Embedding(c.vocab_size, c.d_model, padding_idx=c.pad_id)
        self.register_buffer(
            "positions",
            sinusoidal_positions(c.max_length + 2, c.d_model, c.positions),
            persistent=False,
        )
        self.emb_dropout = Dropout(c.dropout)
        self.encoder = nn.ModuleList(EncoderLayer(c) for _ in range(c.n_encoder_layers))
        self.encoder_norm = final_norm(c)

    def reset_parameters(self) -> None:
        """Xavier-uniform weights and zero biases in every linear layer; normal embeddings
        with std d_model ** -0.5 (and the padding piece's zero)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        nn.init.normal_(self.embed.weight, std=self.config.d_model**-0.5)
        with torch.no_grad():
            self.embed.weight[self.config.pad_id].zero_()

    def _embed(self, ids: Tensor) -> Tensor:
        t = ids.size(1)
        if t > self.positions.size(0):
            raise ValueError(
                f"sequence of {t} pieces is longer than max_length {self.config.max_length}"
            )
        x = self.embed(ids) * embed_scale(self.config)  # (B, T, d_model)
        x = x + self.positions[:t]
        return self.emb_dropout(x)

    def encode(
        self, src: Tensor, src_mask: Tensor, attn: list[AttentionRecord] | None = None
    ) -> Tensor:
        """Run the encoder.

        Args:
            attn: if a list is given, each layer appends its self-attention weights
                (computed on the reference path).

        Shape: src, src_mask: (B, S); returns memory (B, S, d_model).
        """
        mask = src_mask[:, None, None, :]  # (B, 1, 1, S)
        x = self._embed(src)
        for i, layer in enumerate(self.encoder):
            x, w = layer(x, mask, need_weights=attn is not None)
            if attn is not None:
                attn.append(AttentionRecord("encoder", i, w))
        return self.encoder_norm(x)


class Transformer(Encoder):
    """Encoder-decoder transformer with shared embeddings: the encoder, and a decoder over
    the same embeddings whose output projection is the embedding matrix (tied).

    Args:
        config: the architecture.

    Shape:
        src: (B, S) piece ids, padded with `config.pad_id`; src_mask: (B, S) True = real piece.
        tgt: (B, T) decoder input ids (BOS first); logits: (B, T, vocab_size).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        c = config
        self.decoder = nn.ModuleList(DecoderLayer(c) for _ in range(c.n_decoder_layers))
        self.decoder_norm = final_norm(c)
        # The output projection is the embedding matrix (tied); `quantize_int8` sets a
        # quantized copy here for inference.
        self.output_proj: nn.Module | None = None
        # A fixed bias of the logits (Marian's final_logits_bias: not trained), or None.
        self.logits_bias: Tensor | None
        self.register_buffer(
            "logits_bias", torch.zeros(c.vocab_size) if c.logits_bias else None, persistent=True
        )
        self.reset_parameters()

    def decode(
        self,
        tgt: Tensor,
        memory: Tensor,
        src_mask: Tensor,
        attn: list[AttentionRecord] | None = None,
        hidden: bool = False,
    ) -> Tensor:
        """Run the decoder and the (tied) output projection.

        Args:
            tgt: decoder input ids, BOS first (incremental decoding, one position at a
                time with a cache, is `attn.model.decoding.incremental`'s).
            attn: if a list is given, each layer appends its masked self-attention and
                cross-attention weights.
            hidden: return the final decoder states, before the output projection
                (training projects only the positions that have a target).

        Shape: tgt (B, T); memory (B, S, d_model); src_mask (B, S); returns (B, T, vocab),
            or (B, T, d_model) with `hidden`.
        """
        mask = src_mask[:, None, None, :]  # (B, 1, 1, S)
        x = self._embed(tgt)
        for i, layer in enumerate(self.decoder):
            x, self_w, cross_w = layer(x, memory, mask, need_weights=attn is not None)
            if attn is not None:
                attn.append(AttentionRecord("decoder", i, self_w))
                attn.append(AttentionRecord("cross", i, cross_w))
        x = self.decoder_norm(x)
        return x if hidden else self.project(x)

    def project(self, x: Tensor) -> Tensor:
        """The (tied) output projection, plus the logits bias where the model has one.

        Shape: (..., d_model) -> (..., vocab).
        """
        if self.output_proj is not None:
            logits = self.output_proj(x)
            return logits if self.logits_bias is None else logits + self.logits_bias
        return F.linear(x, self.embed.weight, self.logits_bias)

    def forward(self, src: Tensor, tgt: Tensor, hidden: bool = False) -> Tensor:
        """Teacher-forced logits (or, with `hidden`, decoder states) for training.

        Shape: src (B, S), tgt (B, T) -> (B, T, vocab) or (B, T, d_model).
        """
        src_mask = src != self.config.pad_id
        return self.decode(tgt, self.encode(src, src_mask), src_mask, hidden=hidden)


def embed_scale(config: ModelConfig) -> float:
    """The factor of the piece embeddings: sqrt(d_model), or 1 without `scale_embeddings`."""
    return math.sqrt(config.d_model) if config.scale_embeddings else 1.0


def final_norm(config: ModelConfig) -> nn.Module:
    """The LayerNorm that ends a pre-norm stack; post-norm stacks end with their last layer's
    (an identity here: no weights)."""
    return nn.LayerNorm(config.d_model) if config.norm == "pre" else nn.Identity()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
