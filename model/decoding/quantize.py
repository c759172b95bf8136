"""Reduced precision for CPU inference (`--int8`): the linear layers' products in int8, or in
bfloat16 on CPUs whose AMX units make that faster.

int8 (dynamic quantization): every `nn.Linear` gets int8 weights (per-tensor scale) and
quantizes its input on the fly; the tied output projection, the largest matrix multiply of a
decoding step, gets an int8 copy of the embedding matrix.

bfloat16: on a CPU with AMX (Intel Xeon since Sapphire Rapids), oneDNN multiplies bfloat16
matrices on the tile units, 2-6 times as fast as float32 and faster than int8 on the same
machine at every shape of the `small` model (bench/results/low_precision.json); each linear
layer keeps a bfloat16 copy of its weight in oneDNN's packed layout and casts its input and
output. `low_precision` picks the kind per CPU. Either way embeddings, layer norms, attention
and the softmax stay float32.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import Tensor, nn

from attn.model.nn.heads import Classifier
from attn.model.nn.transformer import Transformer

PRECISIONS = ("int8", "bfloat16")
# A bfloat16 projection onto a subset of the output rows has a multiple of this many rows.
_BF16_ROWS = 512


def check_int8(device: torch.device) -> None:
    """Check that int8 inference can run on `device` (before a model is loaded for it).

    Raises:
        ValueError: `device` is not the CPU, or torch has no quantized CPU engine.
    """
    if device.type != "cpu":
        raise ValueError(f"int8 inference runs on the CPU, not {device.type}; add --device cpu")
    if torch.backends.quantized.engine == "none":
        raise ValueError("this torch build has no quantized CPU engine; run without --int8")


def has_amx_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 matrices on AMX tiles through torch's oneDNN."""
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(torch.backends.mkldnn.is_available() and amx is not None and amx())


def low_precision() -> str:
    """The precision of `--int8` on this CPU: "bfloat16" with AMX, else "int8"."""
    return "bfloat16" if has_amx_bf16() else "int8"


def pack_bf16(weight: Tensor, rows_hint: int = 32) -> Tensor:
    """A (out, in) float weight as bfloat16 in oneDNN's packed layout, for `linear_bf16`.
    `rows_hint` is the typical number of input rows (oneDNN picks the layout for it)."""
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach().bfloat16(), rows_hint)


def linear_bf16(x: Tensor, packed: Tensor, bias: Tensor | None, activation: str = "none") -> Tensor:
    """x W^T + b (then `activation`: "none", "relu" or "gelu") on bfloat16 x, fused by oneDNN.

    Shape: x (..., in) bfloat16; packed from `pack_bf16`; returns (..., out) bfloat16.
    """
    algorithm = "none" if activation == "gelu" else ""
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, activation, [], algorithm)


class BFloat16Linear(nn.Module):
    """An `nn.Linear` for inference whose product runs in bfloat16 (`pack_bf16`): float32 in,
    float32 out."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = linear.weight.detach().bfloat16()  # (out, in), for `select_rows`
        self.weight_bf16 = pack_bf16(linear.weight)
        bias = linear.bias
        self.bias_bf16 = None if bias is None else bias.detach().bfloat16()

    def forward(self, x: Tensor) -> Tensor:
        y = linear_bf16(x.to(torch.bfloat16), self.weight_bf16, self.bias_bf16)
        return y.to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bfloat16"


def quantize_int8(
    model: Transformer | Classifier, precision: str = "int8"
) -> Transformer | Classifier:
    """Quantize `model` in place for inference on the CPU and return it (eval mode).

    Args:
        precision: "int8" (dynamic quantization) or "bfloat16" (see the module docstring;
            `low_precision()` picks it for this CPU).

    Raises:
        ValueError: as `check_int8`, for the device the model is on; an unknown precision.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    check_int8(next(model.parameters()).device)
    model.eval()
    if isinstance(model, Transformer):
        c = model.config
        output = nn.Linear(c.d_model, c.vocab_size, bias=False)
        output.weight = model.embed.weight  # (vocab, d_model), shared until quantized
        model.output_proj = output
    if precision == "bfloat16":
        _swap_linears(model)
        return model
    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated in favour of torchao, which is not a dependency.
        warnings.simplefilter("ignore")
        torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8, inplace=True)
    return model


def _swap_linears(module: nn.Module) -> None:
    """Replace every `nn.Linear` under `module` by a `BFloat16Linear`."""
    for name, child in module.named_children():
        if isinstance(child, nn.Linear):
            setattr(module, name, BFloat16Linear(child))
        else:
            _swap_linears(child)


def select_rows(linear: nn.Module, index: Tensor) -> Callable[[Tensor], Tensor]:
    """The projection onto the output rows `index` of the reduced-precision layer `linear`
    (int8 or bfloat16): the same weight values, the same kernel, so the same outputs for
    those rows.

    Shape: index (N,) long; the projection maps (..., in) float -> (..., N) float.
    """
    if isinstance(linear, BFloat16Linear):
        # oneDNN generates a kernel for each new shape (about half a millisecond): rows padded
        # to a multiple of _BF16_ROWS, so that batches of similar subsets share kernels.
        n = index.numel()
        rows = linear.weight.index_select(0, index)  # (N, in)
        rows = torch.cat([rows, rows.new_zeros(-n % _BF16_ROWS, rows.size(1))])
        packed = pack_bf16(rows)  # ~1 ms for 2,800 x 256

        def project_bf16(x: Tensor) -> Tensor:
            return linear_bf16(x.to(torch.bfloat16), packed, None)[..., :n].to(x.dtype)

        return project_bf16
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
