"""attn's weights in CTranslate2's own model specification, saved as a CTranslate2 model.

A `TransformerSpec` is filled layer by layer with the network of `attn.model.nn.transformer`:
pre-LayerNorm layers (epsilon 1e-5, PyTorch's) with a final LayerNorm after each stack, or
post-LayerNorm ones without (imported Marian models); ReLU, exact (erf) GELU or SiLU in the
feed-forward networks; one embedding matrix shared by source, target and output projection,
embeddings scaled by sqrt(d_model) (where the model scales them); and attn's sinusoidal
positions, given as a position table (attn's interleave sine and cosine, unlike CTranslate2's
built-in table; Marian's split them). CTranslate2 appends EOS to the source as attn does
(`add_source_eos`) and starts the decoder from the model's start piece (BOS, `<s>`, or
Marian's `<pad>`); the vocabulary is the tokenizer's pieces in id order, so
`ctranslate2.Translator` reads the same pieces attn's tokenizer writes.

attn never generates PAD or BOS: the projection's bias is -inf at those ids and, elsewhere, the
model's logits bias (0 without one), so a plain `translate_batch` call behaves the same without
extra options.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from attn.model.export.metadata import write_export_info
from attn.model.nn.transformer import Transformer, sinusoidal_positions
from attn.model.storage.checkpoint import LoadedModel
from attn.model.storage.layout import ModelDir

# Weight types `attn export --quantization` offers (CTranslate2 names); None = float32.
QUANTIZATIONS = ("int8", "int8_float32", "int8_float16", "float16", "float32")
# Positions in the exported table: CTranslate2's default source cap (max_input_length), so
# that a call with its defaults never runs past the table. attn itself cuts sources to the
# model's max_length, as `attn.model.export.ctranslate2_run.CT2Translator` does.
POSITIONS = 1024
# LayerNorm epsilon of torch.nn.LayerNorm's default, used by every norm of the network.
LAYER_NORM_EPSILON = 1e-5


def build_spec(loaded: LoadedModel) -> Any:
    """A `ctranslate2.specs.TransformerSpec` holding the weights of an encoder-decoder model.

    Raises:
        ValueError: the model has no decoder (a sentiment classifier).
    """
    from ctranslate2.specs import common_spec, transformer_spec

    model, c = loaded.model, loaded.config
    if not len(model.decoder):
        raise ValueError(f"a {c.task} model has no decoder to export to CTranslate2")
    activation = {
        "relu": common_spec.Activation.RELU,
        "gelu": common_spec.Activation.GELU,
        "silu": common_spec.Activation.SWISH,
    }
    pre_norm = c.norm == "pre"
    spec = transformer_spec.TransformerSpec.from_config(
        (c.n_encoder_layers, c.n_decoder_layers),
        c.n_heads,
        pre_norm=pre_norm,
        activation=activation[c.activation],
    )
    tokenizer = loaded.tokenizer
    pieces = [tokenizer.id_to_piece(i) for i in range(c.vocab_size)]
    spec.config.unk_token = pieces[tokenizer.unk_id]
    spec.config.bos_token = pieces[c.bos_id]
    spec.config.eos_token = pieces[c.eos_id]
    spec.config.decoder_start_token = pieces[c.start_id]
    spec.config.add_source_eos = True
    spec.config.layer_norm_epsilon = LAYER_NORM_EPSILON

    w = _weights(model)
    length = max(POSITIONS, c.max_length + 2)
    positions = sinusoidal_positions(length, c.d_model, c.positions).numpy()

    encoder = spec.encoder
    encoder.embeddings[0].weight = w["embed.weight"]
    encoder.scale_embeddings = c.scale_embeddings
    encoder.position_encodings.encodings = positions
    if pre_norm:
        _layer_norm(encoder.layer_norm, w, "encoder_norm")
    for i, layer in enumerate(encoder.layer):
        scope = f"encoder.{i}"
        _self_attention(layer.self_attention, w, scope)
        _feed_forward(layer.ffn, w, scope, "norm2")

    decoder = spec.decoder
    decoder.embeddings.weight = w["embed.weight"]  # the same array: saved once (an alias)
    decoder.scale_embeddings = c.scale_embeddings
    decoder.position_encodings.encodings = positions
    if pre_norm:
        _layer_norm(decoder.layer_norm, w, "decoder_norm")
    for i, layer in enumerate(decoder.layer):
        scope = f"decoder.{i}"
        _self_attention(layer.self_attention, w, scope)
        _layer_norm(layer.attention.layer_norm, w, f"{scope}.norm2")
        _linear(layer.attention.linear[0], w, f"{scope}.cross_attn.q_proj")
        _fused(layer.attention.linear[1], w, f"{scope}.cross_attn", ("k", "v"))
        _linear(layer.attention.linear[2], w, f"{scope}.cross_attn.out_proj")
        _feed_forward(layer.ffn, w, scope, "norm3")
    decoder.projection.weight = w["embed.weight"]
    bias = w["logits_bias"].copy() if c.logits_bias else np.zeros(c.vocab_size, np.float32)
    bias[[c.pad_id, c.bos_id]] = -np.inf  # never generated
    decoder.projection.bias = bias

    spec.register_source_vocabulary(pieces)
    spec.register_target_vocabulary(pieces)
    return spec


def write_ctranslate2(loaded: LoadedModel, directory: Path, quantization: str | None) -> None:
    """Write a CTranslate2 model directory into the (empty) `directory`: model.bin,
    config.json, shared_vocabulary.json, attn's tokenizer files (tokenizer.model, or an
    imported model's) and attn_export.json.

    Raises:
        ValueError: a sentiment model, or an unknown quantization.
    """
    if quantization is not None and quantization not in QUANTIZATIONS:
        raise ValueError(
            f"unknown quantization {quantization!r}; choose one of {', '.join(QUANTIZATIONS)}"
        )
    spec = build_spec(loaded)
    for path in ModelDir(loaded.path).tokenizer_files():
        if path.is_file():  # (an imported tokenizer's options file may be absent)
            spec.register_file(str(path), path.name)
    spec.validate()
    spec.optimize(quantization=quantization)
    spec.save(str(directory))
    write_export_info(loaded, directory, "ctranslate2", quantization or "float32")


def _weights(model: Transformer) -> dict[str, np.ndarray]:
    """The weights as float32 arrays, by attn's parameter names."""
    return {
        name: t.detach().to(torch.float32).cpu().numpy() for name, t in model.state_dict().items()
    }


def _linear(spec: Any, w: dict[str, np.ndarray], name: str) -> None:
    spec.weight = w[f"{name}.weight"]  # (out, in), as CTranslate2 wants it
    spec.bias = w[f"{name}.bias"]


def _fused(spec: Any, w: dict[str, np.ndarray], attention: str, parts: tuple[str, ...]) -> None:
    """Q, K, V (or K, V) projections stacked into the one linear layer CTranslate2 runs."""
    spec.weight = np.concatenate([w[f"{attention}.{p}_proj.weight"] for p in parts])
    spec.bias = np.concatenate([w[f"{attention}.{p}_proj.bias"] for p in parts])


def _self_attention(spec: Any, w: dict[str, np.ndarray], scope: str) -> None:
    """A layer's self-attention: its LayerNorm, fused Q/K/V and output projection."""
    _layer_norm(spec.layer_norm, w, f"{scope}.norm1")
    _fused(spec.linear[0], w, f"{scope}.self_attn", ("q", "k", "v"))
    _linear(spec.linear[1], w, f"{scope}.self_attn.out_proj")


def _layer_norm(spec: Any, w: dict[str, np.ndarray], name: str) -> None:
    spec.gamma = w[f"{name}.weight"]
    spec.beta = w[f"{name}.bias"]


def _feed_forward(spec: Any, w: dict[str, np.ndarray], layer: str, norm: str) -> None:
    _layer_norm(spec.layer_norm, w, f"{layer}.{norm}")
    _linear(spec.linear_0, w, f"{layer}.ff.w1")
    _linear(spec.linear_1, w, f"{layer}.ff.w2")
