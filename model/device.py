"""Device selection: `auto` picks CUDA, then MPS, then CPU."""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable

import torch

DEVICES = ("auto", "cpu", "cuda", "mps")

_allocator_tuned = False


def resolve_device(name: str = "auto") -> torch.device:
    """Turn a `--device` value into a torch.device.

    Raises:
        ValueError: the name is unknown, or names a device this machine lacks.
    """
    name = name.lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError("--device cuda was asked for, but torch sees no CUDA GPU")
        return torch.device(name)
    if name == "mps":
        if not _mps_available():
            raise ValueError("--device mps was asked for, but MPS is not available")
        return torch.device("mps")
    if name == "cpu":
        return torch.device("cpu")
    raise ValueError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def keep_freed_memory() -> None:
    """Let glibc's malloc keep freed blocks of a few MB for reuse (Linux; elsewhere a no-op).

    A decoding step frees and allocates tensors of a few MB (logits over the vocabulary, the
    key/value cache). By default glibc maps such blocks fresh and gives them back when freed,
    so every step pays page faults: about a tenth of a beam search on the CPU. With fixed
    thresholds blocks below 32 MB come from the heap, and up to 256 MB of freed heap stays
    with the process. Peak memory is what glibc's default gives (its dynamic threshold rises
    to 32 MB after the first large frees anyway): in training, the holes that one step's
    freed activations leave add about a third to the live tensors; returning every block
    instead costs a third of a step in page faults (docs/performance.md, "Large corpora").
    """
    global _allocator_tuned
    if _allocator_tuned or not sys.platform.startswith("linux"):
        return
    _allocator_tuned = True
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    mallopt(m_mmap_threshold, 32 << 20)
    mallopt(m_trim_threshold, 256 << 20)
    mallopt(m_top_pad, 16 << 20)


# oneDNN's kernel cache for a training process (its default holds 1,024 kernels).
TRAINING_KERNEL_CACHE = 16384


def hold_training_kernels() -> None:
    """Let oneDNN keep up to `TRAINING_KERNEL_CACHE` kernels (unless the user's
    ONEDNN_PRIMITIVE_CACHE_CAPACITY says otherwise); to be called before the process runs
    its first product.

    oneDNN builds a kernel for every shape of a bfloat16 product and keeps the last 1,024;
    a miss builds it again. A training run's batches of varied lengths and its validations'
    greedy decoding (a new shape at every step) outgrow that: on the Multi30k recipe's small
    model the step ran slower after every validation, for the rest of the run, from 5,650 to
    about 4,000 target tokens/s by the end of 25 minutes. With room for 16,384 it stays at
    5,600-5,800; the process's peak memory grows by a few percent (docs/performance.md).
    """
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", str(TRAINING_KERNEL_CACHE))


def apply_process_settings(
    device: str = "auto", threads: int | None = None, training: bool = False
) -> None:
    """The process-wide settings of a run, for an application (the CLI) to apply once before
    it loads or trains: torch's intra-op thread count (None keeps torch's choice) and, when
    `device` resolves to the CPU, `keep_freed_memory` and, for `training`,
    `hold_training_kernels`. Library calls (`Translator.load`, `train`) leave them alone.

    Raises:
        ValueError: threads below 1, or a device that is unknown or unavailable.
    """
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    if resolve_device(device).type == "cpu":
        keep_freed_memory()
        if training:
            hold_training_kernels()


def column_major(weight: torch.Tensor) -> torch.Tensor:
    """A (out, in) weight with the same values and shape, stored transposed in memory.

    `F.linear` multiplies by the transpose of the weight; MKL does that product faster when
    the transpose is the contiguous one, by 6-8% of a decoding step on the `small` model with
    one thread (bench: same outputs).
    """
    return weight.t().contiguous().t()


def row_bucket(rows: int) -> int:
    """The multiple that `packed_linear` rounds a row count up to: 8 below 128 rows, then
    an eighth of the power of two at or below the count (from 64 rows on, at most 12.5%
    more). oneDNN builds and caches a kernel per input shape (1,024 at most, each holding
    memory): without rounding, a server whose batches vary grew by one for each new count
    (bench/serve_load.py).
    Extra rows cost little: a product of few rows is bound by reading the weight."""
    return max(8, 1 << max(0, rows.bit_length() - 4))


def packed_linear(
    weight: torch.Tensor, bias: torch.Tensor | None = None
) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """x W^T + b through oneDNN, the weight reordered once into its blocked layout: for CPU
    inference. On decoder-step shapes it takes 0.5-0.9x MKL's time, on a 58k-piece output
    projection 0.5x (one thread, bench/marian.py's model). None where the weight is not a
    float32 CPU tensor or this torch build lacks the kernels (then use `F.linear`).

    Shape: weight (out, in), bias (out,); the function maps (R, in) -> (R, out).
    """
    usable = weight.is_cpu and weight.dtype == torch.float32
    if not usable or not torch.backends.mkldnn.is_available():
        return None
    b = None if bias is None else bias.detach().contiguous()
    try:
        packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach().contiguous())
        kernel = torch.ops.mkldnn._linear_pointwise
        kernel(weight.new_zeros(1, weight.size(1)), packed, b, "none", [], "")
    except (AttributeError, RuntimeError):  # (kernels of torch's inductor, not a public API)
        return None

    def linear(x: torch.Tensor) -> torch.Tensor:
        rows = x.size(0)
        pad = -rows % row_bucket(rows)
        if pad:
            x = torch.nn.functional.pad(x, (0, 0, 0, pad))
        return kernel(x, packed, b, "none", [], "")[:rows]

    return linear


def column_major_linears(model: torch.nn.Module) -> None:
    """Store each linear layer's weight as `column_major` does. For CPU inference only: the
    optimizer and checkpoints expect the usual layout."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.data = column_major(module.weight.data)
