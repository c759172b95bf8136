"""Dynamic int8 quantization for CPU inference.

Every `nn.Linear` gets int8 weights (per-tensor scale) and quantizes its input on the fly;
the tied output projection, the largest matrix multiply of a decoding step, gets an int8
copy of the embedding matrix. Embeddings, layer norms and attention stay float32. The
decoder's steps quantize their own fused copies (`attn.model.decoding.incremental`). On the
`small` model this makes beam search about 1.3 times as fast as float32 inference (whose
weights `column_major_linears` lays out for MKL), greedy search about 1.15 times; see
docs/performance.md and bench/peers.py. int8 on every CPU: on one with AMX, bfloat16
products through oneDNN were no faster end to end (docs/performance.md, bench/low_precision.py).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import Tensor, nn

from attn.model.nn.model import Classifier
from attn.model.nn.transformer import Transformer


def check_int8(device: torch.device) -> None:
    """Check that int8 inference can run on `device` (before a model is loaded for it).

    Raises:
        ValueError: `device` is not the CPU, or torch has no quantized CPU engine.
    """
    if device.type != "cpu":
        raise ValueError(f"int8 inference runs on the CPU, not {device.type}; add --device cpu")
    if torch.backends.quantized.engine == "none":
        raise ValueError("this torch build has no quantized CPU engine; run without --int8")


def quantize_int8(model: Transformer | Classifier) -> Transformer | Classifier:
    """Quantize `model` in place for inference on the CPU and return it (eval mode).

    Raises:
        ValueError: as `check_int8`, for the device the model is on.
    """
    check_int8(next(model.parameters()).device)
    model.eval()
    if isinstance(model, Transformer):
        c = model.config
        output = nn.Linear(c.d_model, c.vocab_size, bias=False)
        output.weight = model.embed.weight  # (vocab, d_model), shared until quantized
        model.output_proj = output
    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated in favour of torchao, which is not a dependency.
        warnings.simplefilter("ignore")
        torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8, inplace=True)
    return model


def select_rows(linear: nn.Module, index: Tensor) -> Callable[[Tensor], Tensor]:
    """The projection onto the output rows `index` of the dynamic int8 layer `linear`: the
    same int8 values and scale, the same kernel, so the same outputs for those rows.

    Shape: index (N,) long; the projection maps (..., in) float -> (..., N).
    """
    # Unpacking the packed weight costs ~9 ms for 8k x 256: once per layer, not per batch.
    unpacked = getattr(linear, "_int8_weight", None)
    if unpacked is None:
        weight = linear.weight()  # quantized (out, in)
        unpacked = (weight.int_repr(), weight.q_scale(), weight.q_zero_point())
        linear._int8_weight = unpacked
    values, scale, zero_point = unpacked
    rows = torch._make_per_tensor_quantized_tensor(values.index_select(0, index), scale, zero_point)
    packed = torch.ops.quantized.linear_prepack(rows, None)
    # As torch.ao.nn.quantized.dynamic.Linear.forward (versions >= 4 reduce the range).
    reduce_range = linear.version is not None and linear.version >= 4

    def project(x: Tensor) -> Tensor:
        return torch.ops.quantized.linear_dynamic(x, packed, reduce_range=reduce_range).to(x.dtype)

    return project
