"""Linear-layer kernels on this CPU at the `small` model's shapes (a benchmark, not a test).

Times one linear layer, x W^T + b with x (M, K) and W (N, K), on one thread, with each kernel
torch offers on a CPU: float32 (MKL, the weight stored column-major as attn stores it),
dynamic int8 through FBGEMM and through oneDNN (the two quantized engines; `--int8` uses
torch's default, FBGEMM on x86), and bfloat16 through oneDNN with the weight prepacked, with
and without casting float32 input and output (on CPUs with AMX, bfloat16 products run on the
tile units). M is the rows of a decoding step (32: greedy over a batch of 32 sentences; 128:
beam 4) or of the encoder (640: 32 sentences of 20 pieces); N x K the decoder's layers and the
output projection onto a shortlisted subset (2,800 pieces) or the whole vocabulary.

    python bench/low_precision.py

Writes bench/results/low_precision.json and prints a table (microseconds per call, medians).
Kernel timings alone do not decide: a search pays for casts, per-shape kernel generation
(oneDNN) and everything around the products; see docs/performance.md.
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
SHAPES = [(256, 768), (256, 256), (256, 1024), (1024, 256), (256, 2800), (256, 8000)]  # (K, N)


def timed(fn, calls: int = 50, repeats: int = 7) -> float:
    """Median microseconds per call of `fn`, after a warm-up."""
    for _ in range(5):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - start) / calls)
    return round(statistics.median(times) * 1e6, 1)


def int8_layer(weight: torch.Tensor, bias: torch.Tensor, engine: str):
    """The int8 product of a dynamic quantized linear layer packed by `engine`."""
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        layer = torch.nn.Linear(weight.size(1), weight.size(0))
        with torch.no_grad():
            layer.weight.copy_(weight)
            layer.bias.copy_(bias)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantized = torch.ao.quantization.quantize_dynamic(
                torch.nn.Sequential(layer), {torch.nn.Linear}, dtype=torch.qint8
            )[0]
    finally:
        torch.backends.quantized.engine = previous
    packed = quantized._packed_params._packed_params
    return lambda x: torch.ops.quantized.linear_dynamic(x, packed, reduce_range=True)


def measure(m: int, k: int, n: int) -> dict:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(m, k, generator=g)
    weight, bias = torch.randn(n, k, generator=g) * 0.05, torch.randn(n, generator=g)
    column_major = weight.t().contiguous().t()
    row = {"rows": m, "in": k, "out": n}
    row["float32"] = timed(lambda: F.linear(x, column_major, bias))
    for engine in ("fbgemm", "onednn"):
        if engine in torch.backends.quantized.supported_engines:
            layer = int8_layer(weight, bias, engine)
            row[f"int8_{engine}"] = timed(lambda layer=layer: layer(x))
    if torch.backends.mkldnn.is_available():
        packed = torch.ops.mkldnn._reorder_linear_weight(weight.bfloat16(), m)
        xb, bb = x.bfloat16(), bias.bfloat16()
        row["bfloat16"] = timed(
            lambda: torch.ops.mkldnn._linear_pointwise(xb, packed, bb, "none", [], "")
        )
        row["bfloat16_with_casts"] = timed(
            lambda: torch.ops.mkldnn._linear_pointwise(
                x.bfloat16(), packed, bb, "none", [], ""
            ).float()
        )
    return row


def main() -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    from peers import cpu_features, cpu_name

    torch.set_num_threads(1)
    rows = [measure(m, k, n) for m in (32, 128, 640) for k, n in SHAPES]
    result = {
        "benchmark": "low_precision: one linear layer per kernel, 1 thread, microseconds/call",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {
            "platform": platform.platform(),
            "cpu": cpu_name(),
            "cpu_features": cpu_features(),
            "torch": torch.__version__,
            "quantized_engine": torch.backends.quantized.engine,
        },
        "layers": rows,
    }
    out = ROOT / "bench" / "results" / "low_precision.json"
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    kinds = [k for k in rows[0] if k not in ("rows", "in", "out")]
    print(f"{result['machine']['cpu']} ({', '.join(result['machine']['cpu_features'])})")
    print(f"{'M x K x N':<16}" + "".join(f"{k:>21}" for k in kinds))
    for row in rows:
        shape = f"{row['rows']}x{row['in']}x{row['out']}"
        print(f"{shape:<16}" + "".join(f"{row.get(k, float('nan')):>21}" for k in kinds))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
