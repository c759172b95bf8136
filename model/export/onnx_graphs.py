"""attn's network as ONNX graphs: the encoder and one decoder step with its key/value cache,
or for sentiment the classifier, exported with torch's dynamo exporter (`torch.export`).

The encoder and classifier graphs run the modules of `attn.model.nn.transformer`; the
decoder step runs the step search runs (`attn.model.decoding.incremental.StepWeights`: fused
projections, the scale folded into the queries), with the cache passed in and out. Each is
traced once with symbolic batch and length sizes, so that it computes what attn computes
(tests check it to 1e-4) for any batch and length up to the model's max_length:

    encoder.onnx       src_ids (B, S) int64, src_mask (B, S) bool
                       -> memory (B, S, d_model), cross_key_i / cross_value_i (B, h, S, d_head)
    decoder_step.onnx  tgt_ids (B, 1) int64, src_mask (B, S) bool, past_key_i / past_value_i
                       (B, h, T, d_head), cross_key_i / cross_value_i (B, h, S, d_head)
                       -> logits (B, vocab), present_key_i / present_value_i (B, h, T + 1, d_head)
    classifier.onnx    src_ids (B, S) int64, src_mask (B, S) bool -> scores (B, n_classes)

i runs over the decoder layers. The encoder also gives each decoder layer's cross-attention
keys and values of the memory, so a decoding step does not recompute them.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from attn.model.decoding.incremental import StepWeights, score_bias, self_attention
from attn.model.nn.transformer import Transformer
from attn.model.storage.checkpoint import LoadedModel

ENCODER = "encoder.onnx"
DECODER_STEP = "decoder_step.onnx"
CLASSIFIER = "classifier.onnx"
README = "README"
# Example sizes for tracing: above 1, where torch.export would fix a size of 0 or 1.
_BATCH, _SRC, _PAST = 2, 7, 3


class EncoderGraph(nn.Module):
    """The encoder, and the cross-attention keys and values every decoder layer needs."""

    def __init__(self, model: Transformer, weights: StepWeights) -> None:
        super().__init__()
        self.model, self.weights = model, weights

    def forward(self, src_ids: Tensor, src_mask: Tensor) -> tuple[Tensor, ...]:
        memory = self.model.encode(src_ids, src_mask)  # (B, S, d_model)
        outputs = [memory]
        for k, v in self.weights.cross_keys_values(memory):
            outputs += [k, v]  # (B, h, S, d_head)
        return tuple(outputs)


class DecoderStepGraph(nn.Module):
    """One decoding step on the newest piece, with the keys and values of the earlier ones:
    `DecoderState.step`'s layer computations, with the cache as inputs and outputs instead of
    a buffer it writes in place.

    `kv` holds, per decoder layer: past self-attention keys and values, then the layer's
    cross-attention keys and values (from the encoder graph).
    """

    def __init__(self, model: Transformer, weights: StepWeights) -> None:
        super().__init__()
        self.model, self.weights = model, weights

    def forward(self, tgt_ids: Tensor, src_mask: Tensor, *kv: Tensor) -> tuple[Tensor, ...]:
        w = self.weights
        b, h, d_k = tgt_ids.size(0), w.n_heads, w.d_k
        t = kv[0].size(2)  # past positions: this step's position
        x = w.embed_step(tgt_ids[:, 0], t)  # (B, d)
        bias = score_bias(src_mask, h, x.dtype)  # (B, h, 1, S)
        outputs = []
        for i in range(len(w.layers)):
            past_k, past_v, cross_k, cross_v = kv[4 * i : 4 * i + 4]
            qkv = w.self_qkv(i, x).view(b, 3, h, 1, d_k)  # query, key, value
            keys = torch.cat([past_k, qkv[:, 1]], dim=2)  # (B, h, T + 1, d_k)
            values = torch.cat([past_v, qkv[:, 2]], dim=2)
            outputs += [keys, values]
            a = self_attention(  # time first: (T + 1, B*h, d_k)
                qkv[:, 0].reshape(b * h, 1, d_k),
                keys.permute(2, 0, 1, 3).reshape(t + 1, b * h, d_k),
                values.permute(2, 0, 1, 3).reshape(t + 1, b * h, d_k),
            ).view(b, h * d_k)
            x, _ = w.finish_layer(i, x, a, cross_k.transpose(2, 3), cross_v, bias, 1)
        logits = self.model.project(w.final_norm(x))  # (B, vocab)
        return (logits, *outputs)


class ClassifierGraph(nn.Module):
    """The sentiment classifier: class scores, whose softmax is the probabilities."""

    def __init__(self, model: Transformer) -> None:
        super().__init__()
        self.model = model

    def forward(self, src_ids: Tensor, src_mask: Tensor) -> Tensor:
        return self.model.classify(src_ids, src_mask)  # (B, n_classes)


def write_onnx(loaded: LoadedModel, directory: Path) -> list[str]:
    """Export the graphs of a model into `directory`, with a README; returns the file names."""
    from torch.export import Dim

    model, c = loaded.model.eval(), loaded.config
    batch = Dim("batch", min=1, max=1 << 16)
    src_len = Dim("src_len", min=1, max=c.max_length)
    src = torch.randint(4, c.vocab_size, (_BATCH, _SRC))  # (B, S)
    src_mask = torch.ones(_BATCH, _SRC, dtype=torch.bool)
    src_mask[-1, _SRC - 2 :] = False  # one padded row
    src_shapes = ({0: batch, 1: src_len}, {0: batch, 1: src_len})
    if c.task == "sentiment":
        _export(
            ClassifierGraph(model),
            (src, src_mask),
            src_shapes,
            ["src_ids", "src_mask"],
            ["scores"],
            directory / CLASSIFIER,
        )
        files = [CLASSIFIER]
    else:
        layers = range(c.n_decoder_layers)
        cross = [f"cross_{kv}_{i}" for i in layers for kv in ("key", "value")]
        weights = StepWeights(model)
        _export(
            EncoderGraph(model, weights),
            (src, src_mask),
            src_shapes,
            ["src_ids", "src_mask"],
            ["memory", *cross],
            directory / ENCODER,
        )
        # The past may be empty (the first step); the positions end at max_length + 2.
        past_len = Dim("past_len", min=0, max=c.max_length + 1)
        heads = (_BATCH, c.n_heads)
        kv, kv_shapes, kv_names = [], [], []
        for i in layers:
            kv += [torch.randn(*heads, _PAST, c.d_head), torch.randn(*heads, _PAST, c.d_head)]
            kv += [torch.randn(*heads, _SRC, c.d_head), torch.randn(*heads, _SRC, c.d_head)]
            kv_shapes += [{0: batch, 2: past_len}] * 2 + [{0: batch, 2: src_len}] * 2
            kv_names += [f"past_key_{i}", f"past_value_{i}", f"cross_key_{i}", f"cross_value_{i}"]
        tgt = torch.randint(4, c.vocab_size, (_BATCH, 1))  # (B, 1)
        _export(
            DecoderStepGraph(model, weights),
            (tgt, src_mask, *kv),
            ({0: batch}, {0: batch, 1: src_len}, tuple(kv_shapes)),
            ["tgt_ids", "src_mask", *kv_names],
            ["logits", *[f"present_{kv}_{i}" for i in layers for kv in ("key", "value")]],
            directory / DECODER_STEP,
        )
        files = [ENCODER, DECODER_STEP]
    (directory / README).write_text(readme(loaded), encoding="utf-8")
    return [*files, README]


def _export(
    module: nn.Module,
    args: tuple[Tensor, ...],
    dynamic_shapes: Any,
    input_names: Sequence[str],
    output_names: Sequence[str],
    path: Path,
) -> None:
    """Export one graph with the dynamo exporter, quietly (library code does not print)."""
    # Their warnings are about the exporter's own work (torchvision's ops absent, constants
    # not folded), nothing a user of attn can act on.
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript", "onnx_ir")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module.eval(),
                args,
                dynamo=True,
                dynamic_shapes=dynamic_shapes,
                input_names=list(input_names),
                output_names=list(output_names),
                verbose=False,
            )
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
    program.save(str(path))


def readme(loaded: LoadedModel) -> str:
    """The README of an ONNX export: what each graph takes and gives, and how to decode."""
    c = loaded.config
    head = (
        f"ONNX export of an attn {c.task} model ({loaded.path.name}): d_model {c.d_model}, "
        f"{c.n_heads} heads (d_head {c.d_head}), {c.n_encoder_layers} encoder layers, "
        f"vocabulary {c.vocab_size} (tokenizer.model, SentencePiece).\n\n"
        "Source pieces: tokenizer.model's ids of the text, then EOS "
        f"({c.eos_id}); at most {c.max_length} ids (cut the text's pieces to "
        f"{c.max_length - 1}, then append EOS). Pad a batch with {c.pad_id}; src_mask is True "
        "at real pieces. Batch and lengths are dynamic (axes named batch, src_len, past_len).\n"
    )
    if c.task == "sentiment":
        labels = ", ".join(f"{i} = {name}" for i, name in enumerate(c.labels))
        return head + (
            "\nclassifier.onnx\n"
            "  inputs:  src_ids int64 (batch, src_len), src_mask bool (batch, src_len)\n"
            "  outputs: scores float32 (batch, n_classes); softmax(scores) = probabilities\n"
            f"  classes: {labels}\n"
        )
    from attn.model.inference.pipeline import Summarizer, Translator

    rule = Translator if c.task == "translate" else Summarizer
    start = f"BOS ({c.bos_id})" if c.decoder_start_id is None else f"{c.start_id}"
    a, b = rule.max_length_a, rule.max_length_b
    return head + (
        f"\n{c.n_decoder_layers} decoder layers; i below runs over 0..{c.n_decoder_layers - 1}.\n"
        "\nencoder.onnx\n"
        "  inputs:  src_ids int64 (batch, src_len), src_mask bool (batch, src_len)\n"
        "  outputs: memory float32 (batch, src_len, d_model),\n"
        "           cross_key_i, cross_value_i float32 (batch, heads, src_len, d_head)\n"
        "\ndecoder_step.onnx: one step, on the newest piece only\n"
        "  inputs:  tgt_ids int64 (batch, 1), src_mask bool (batch, src_len),\n"
        "           past_key_i, past_value_i float32 (batch, heads, past_len, d_head),\n"
        "           cross_key_i, cross_value_i (from encoder.onnx)\n"
        "  outputs: logits float32 (batch, vocab) for the next piece,\n"
        "           present_key_i, present_value_i (batch, heads, past_len + 1, d_head):\n"
        "           the past_key_i, past_value_i of the next step\n"
        "\nGreedy decoding (what attn does, attn.model.export.onnx_run):\n"
        "  1. run encoder.onnx once;\n"
        f"  2. start with tgt_ids = {start} and empty past tensors (past_len 0);\n"
        f"  3. each step: never pick PAD ({c.pad_id}) or BOS ({c.bos_id}); take the argmax of "
        "logits;\n"
        f"     stop a sentence at EOS ({c.eos_id}), or force EOS once it has "
        f"floor({a} * source ids + {b}) pieces\n"
        f"     (source ids counting EOS; at most {c.max_length});\n"
        "  4. feed the picked ids and the present_* outputs back in as tgt_ids and past_*.\n"
        "  Decode the picked ids (without EOS) with tokenizer.model.\n"
    )
