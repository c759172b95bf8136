"""The encoder-decoder transformer (pre-LayerNorm) of "Attention Is All You Need".

Shared embeddings: one matrix embeds source and target pieces and is the output projection.
Positions are sinusoidal. Masks are boolean, True = may attend (see `attention.py`).
"""

from __future__ import annotations

import math
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


def sinusoidal_positions(length: int, d_model: int) -> Tensor:
    """The fixed positional encodings of "Attention Is All You Need".

    Computed on the CPU whatever the default device (the buffer follows `.to()`): on the
    meta device these ops would import torch._dynamo, a second of start-up.

    Shape: returns (length, d_model).
    """
    cpu = torch.device("cpu")
    position = torch.arange(length, dtype=torch.float32, device=cpu).unsqueeze(1)  # (L, 1)
    div = torch.exp(
        torch.arange(0, d_model, 2, dtype=torch.float32, device=cpu)
        * (-math.log(10000.0) / d_model)
    )
    pe = torch.zeros(length, d_model, device=cpu)
    pe[:, 0::2] = torch.sin(position * div)
    pe[:, 1::2] = torch.cos(position * div[: d_model // 2])
    return pe


class FeedForward(nn.Module):
    """Position-wise feed-forward network: Linear, activation, dropout, Linear."""

    def __init__(self, d_model: int, d_ff: int, dropout: float, activation: str) -> None:
        super().__init__()
        self.w1 = nn.Linear(d_model, d_ff)
        self.w2 = nn.Linear(d_ff, d_model)
        self.act = nn.GELU() if activation == "gelu" else nn.ReLU()
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        h = self.w1(x)  # (B, T, d_ff)
        if isinstance(self.act, nn.ReLU):
            h = relu_dropout(h, self.dropout.p, self.training)
        else:
            h = self.dropout(self.act(h))
        return self.w2(h)  # (B, T, d_model)


class EncoderLayer(nn.Module):
    """Pre-LN: x + SelfAttn(LN(x)), then x + FFN(LN(x))."""

    def __init__(self, c: ModelConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(c.d_model)
        self.self_attn = MultiHeadAttention(c.d_model, c.n_heads, c.dropout)
        self.norm2 = nn.LayerNorm(c.d_model)
        self.ff = FeedForward(c.d_model, c.d_ff, c.dropout, c.activation)
        self.dropout = Dropout(c.dropout)

    def forward(
        self, x: Tensor, mask: Tensor, need_weights: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        h = self.norm1(x)
        a, weights = self.self_attn(h, h, mask, need_weights=need_weights)
        x = x + self.dropout(a)
        x = x + self.dropout(self.ff(self.norm2(x)))
        return x, weights  # (B, S, d_model)


class DecoderLayer(nn.Module):
    """Pre-LN: masked self-attention, cross-attention to the memory, feed-forward."""

    def __init__(self, c: ModelConfig) -> None:
        super().__init__()
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
        h = self.norm1(x)
        a, self_w = self.self_attn(h, h, causal=True, need_weights=need_weights)
        x = x + self.dropout(a)
        a, cross_w = self.cross_attn(self.norm2(x), memory, memory_mask, need_weights=need_weights)
        x = x + self.dropout(a)
        x = x + self.dropout(self.ff(self.norm3(x)))
        return x, self_w, cross_w  # (B, T, d_model)


class Encoder(nn.Module):
    """The part every attn network has: piece embeddings (scaled by sqrt(d_model)) plus
    sinusoidal positions, then the encoder stack and its final LayerNorm.

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
            "positions", sinusoidal_positions(c.max_length + 2, c.d_model), persistent=False
        )
        self.emb_dropout = Dropout(c.dropout)
        self.encoder = nn.ModuleList(EncoderLayer(c) for _ in range(c.n_encoder_layers))
        self.encoder_norm = nn.LayerNorm(c.d_model)

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
        x = self.embed(ids) * math.sqrt(self.config.d_model)  # (B, T, d_model)
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
        self.decoder_norm = nn.LayerNorm(c.d_model)
        # The output projection is the embedding matrix (tied); `quantize_int8` sets a
        # quantized copy here for inference.
        self.output_proj: nn.Module | None = None
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
        """The (tied) output projection. Shape: (..., d_model) -> (..., vocab)."""
        if self.output_proj is not None:
            return self.output_proj(x)
        return F.linear(x, self.embed.weight)

    def forward(self, src: Tensor, tgt: Tensor, hidden: bool = False) -> Tensor:
        """Teacher-forced logits (or, with `hidden`, decoder states) for training.

        Shape: src (B, S), tgt (B, T) -> (B, T, vocab) or (B, T, d_model).
        """
        src_mask = src != self.config.pad_id
        return self.decode(tgt, self.encode(src, src_mask), src_mask, hidden=hidden)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
