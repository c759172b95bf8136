"""Marian (OPUS-MT) models of Hugging Face transformers, as attn's `ModelConfig` and weights.

A `Helsinki-NLP/opus-mt-*` repository holds a `MarianMTModel`: post-LayerNorm encoder and
decoder layers, sinusoidal positions with sines and cosines in two halves, embeddings scaled
by sqrt(d_model), SiLU ("swish") feed-forward layers, one embedding matrix shared by source,
target and output projection, and a fixed bias of the logits. Its decoder starts from the
padding piece; its source ends with `</s>` (id 0) and has no BOS. attn's network has each of
these as a `ModelConfig` option, so the weights map one to one onto a `Transformer`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import Tensor

from attn.model.importers.weights import UnsupportedModelError, read_weights
from attn.model.nn.config import ConfigError, ModelConfig

__all__ = ["UnsupportedModelError", "marian_config", "marian_state_dict", "read_weights"]

MODEL_TYPE = "marian"
# transformers' activation names -> attn's.
_ACTIVATIONS = {"swish": "silu", "silu": "silu", "gelu": "gelu", "relu": "relu"}
# Options of the older BART-style configs that MarianMTModel ignores: attn refuses a value
# that would mean another network than the one transformers runs.
_MUST_BE = {
    "normalize_before": False,
    "normalize_embedding": False,
    "add_final_layer_norm": False,
    "static_position_embeddings": True,
    "share_encoder_decoder_embeddings": True,
}
# attn's layer names of transformers' names, inside model.encoder.layers.i / decoder.layers.i.
_ENCODER_LAYER = {
    "self_attn": "self_attn",
    "self_attn_layer_norm": "norm1",
    "fc1": "ff.w1",
    "fc2": "ff.w2",
    "final_layer_norm": "norm2",
}
_DECODER_LAYER = {
    "self_attn": "self_attn",
    "self_attn_layer_norm": "norm1",
    "encoder_attn": "cross_attn",
    "encoder_attn_layer_norm": "norm2",
    "fc1": "ff.w1",
    "fc2": "ff.w2",
    "final_layer_norm": "norm3",
}
# The embedding matrix under each of the names transformers may save it (tied: one matrix).
_EMBEDDINGS = (
    "model.shared.weight",
    "model.encoder.embed_tokens.weight",
    "model.decoder.embed_tokens.weight",
    "lm_head.weight",
)


def marian_config(hf: Mapping[str, Any], task: str = "translate") -> ModelConfig:
    """attn's `ModelConfig` of a transformers `MarianConfig` (the dict of its config.json).

    Raises:
        UnsupportedModelError: another model type, or options attn's network does not have
            (a separate decoder vocabulary, pre-norm layers, an unknown activation, ...).
    """
    model_type = hf.get("model_type")
    if model_type != MODEL_TYPE:
        raise UnsupportedModelError(f"model_type {model_type!r} is not {MODEL_TYPE!r}")
    for name, value in _MUST_BE.items():
        if name in hf and hf[name] != value:
            raise UnsupportedModelError(
                f"{name} {hf[name]!r} is not supported (attn imports Marian models with "
                f"{name} {value!r})"
            )
    vocab_size = hf.get("vocab_size")
    decoder_vocab = hf.get("decoder_vocab_size")
    if decoder_vocab is not None and decoder_vocab != vocab_size:
        raise UnsupportedModelError(
            f"decoder_vocab_size {decoder_vocab} differs from vocab_size {vocab_size}: "
            "attn needs one vocabulary shared by source and target"
        )
    activation = hf.get("activation_function", "gelu")
    if activation not in _ACTIVATIONS:
        raise UnsupportedModelError(
            f"activation_function {activation!r} is not supported; attn has "
            f"{', '.join(sorted(_ACTIVATIONS))}"
        )
    for encoder, decoder in (
        ("encoder_attention_heads", "decoder_attention_heads"),
        ("encoder_ffn_dim", "decoder_ffn_dim"),
    ):
        if hf.get(encoder) != hf.get(decoder):
            raise UnsupportedModelError(
                f"{encoder} {hf.get(encoder)} differs from {decoder} {hf.get(decoder)}: "
                "attn's encoder and decoder have the same sizes"
            )
    eos, pad = hf.get("eos_token_id", 0), hf.get("pad_token_id")
    start = hf.get("decoder_start_token_id", pad)
    try:
        return ModelConfig(
            task=task,
            vocab_size=vocab_size,
            d_model=hf.get("d_model"),
            n_heads=hf.get("encoder_attention_heads"),
            n_encoder_layers=hf.get("encoder_layers"),
            n_decoder_layers=hf.get("decoder_layers"),
            d_ff=hf.get("encoder_ffn_dim"),
            dropout=float(hf.get("dropout", 0.1)),
            activation=_ACTIVATIONS[activation],
            max_length=hf.get("max_position_embeddings", 512),
            pad_id=pad,
            # Marian has no BOS: the id attn never generates besides padding is padding.
            bos_id=pad,
            eos_id=eos,
            norm="post",
            positions="split",
            scale_embeddings=bool(hf.get("scale_embedding", False)),
            logits_bias=True,
            decoder_start_id=start,
        )
    except (ConfigError, TypeError, ValueError) as e:
        raise UnsupportedModelError(f"config.json: {e}") from None


def marian_state_dict(tensors: Mapping[str, Tensor], config: ModelConfig) -> dict[str, Tensor]:
    """attn's state dict (`Transformer`'s names) of a `MarianMTModel`'s weights.

    Args:
        tensors: the weights by transformers' names (`read_weights`).
        config: `marian_config` of the same model.

    Raises:
        UnsupportedModelError: a weight missing, of the wrong shape, or one attn's network
            has no place for (separate encoder and decoder embeddings among them).
    """
    out: dict[str, Tensor] = {"embed.weight": _embeddings(tensors)}
    bias = tensors.get("final_logits_bias")
    out["logits_bias"] = (
        torch.zeros(config.vocab_size) if bias is None else bias.reshape(-1).float()
    )
    used = set(_EMBEDDINGS) | {"final_logits_bias"}
    for source, mine in _layer_names(config):
        if source not in tensors:
            raise UnsupportedModelError(f"the weights have no {source}")
        out[mine] = tensors[source].float()
        used.add(source)
    # Position tables are computed, not learned (transformers may save them).
    unknown = sorted(k for k in tensors if k not in used and "embed_positions" not in k)
    if unknown:
        raise UnsupportedModelError(
            f"weights attn's network has no place for: {', '.join(unknown[:3])}"
            + (f" and {len(unknown) - 3} more" if len(unknown) > 3 else "")
        )
    _check_shapes(out, config)
    return out


def _layer_names(c: ModelConfig) -> Iterator[tuple[str, str]]:
    """(transformers' name, attn's name) of every weight of every layer."""
    for side, layers, names in (
        ("encoder", c.n_encoder_layers, _ENCODER_LAYER),
        ("decoder", c.n_decoder_layers, _DECODER_LAYER),
    ):
        for i in range(layers):
            for theirs, mine in names.items():
                attention = theirs in ("self_attn", "encoder_attn")
                parts = ("q_proj.", "k_proj.", "v_proj.", "out_proj.") if attention else ("",)
                for part in parts:
                    for kind in ("weight", "bias"):
                        yield (
                            f"model.{side}.layers.{i}.{theirs}.{part}{kind}",
                            f"{side}.{i}.{mine}.{part}{kind}",
                        )


def _embeddings(tensors: Mapping[str, Tensor]) -> Tensor:
    """The one embedding matrix of a tied model; separate matrices are refused."""
    found = [tensors[name] for name in _EMBEDDINGS if name in tensors]
    if not found:
        raise UnsupportedModelError("the weights have no embedding matrix (model.shared.weight)")
    for other in found[1:]:
        if other.shape != found[0].shape or not torch.equal(other, found[0]):
            raise UnsupportedModelError(
                "the encoder, decoder and output embeddings differ: attn needs one matrix "
                "shared by source, target and output"
            )
    return found[0].float()


def _check_shapes(state: dict[str, Tensor], c: ModelConfig) -> None:
    """The shapes attn's network needs, so that a wrong config.json fails here, by name."""
    d, f = c.d_model, c.d_ff
    for name, tensor in state.items():
        if name == "embed.weight":
            expected: tuple[int, ...] = (c.vocab_size, d)
        elif name == "logits_bias":
            expected = (c.vocab_size,)
        elif ".ff.w1." in name:
            expected = (f, d) if name.endswith("weight") else (f,)
        elif ".ff.w2." in name:
            expected = (d, f) if name.endswith("weight") else (d,)
        elif name.endswith("proj.weight"):
            expected = (d, d)
        else:
            expected = (d,)
        if tuple(tensor.shape) != expected:
            raise UnsupportedModelError(
                f"weight {name} has shape {tuple(tensor.shape)}, expected {expected} "
                f"from config.json (vocab_size {c.vocab_size}, d_model {d}, ffn {f})"
            )
