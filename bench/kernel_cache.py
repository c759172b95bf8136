"""oneDNN's kernel cache: what a bfloat16 product of a new shape costs before and after the
cache is full (a benchmark, not a test).

oneDNN builds a kernel for every shape of a bfloat16 product and keeps them in a cache of
ONEDNN_PRIMITIVE_CACHE_CAPACITY kernels (1,024 by default; `attn train` asks for 16,384).
Each capacity runs in its own process: 500 products of new shapes while the cache has room,
then new shapes until it is full, then 500 more (each one now also evicts one), then the
last 500 again (cache hits). The shapes are small (up to 128 x 215 by 215 x 64), so the
figures are the cost of building, finding and evicting kernels, not of the products.

    python bench/kernel_cache.py [--threads 2] [--capacities 1024,4096,16384]

Writes bench/results/kernel_cache.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from peers import cpu_name

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "kernel_cache.json"


def child(threads: int, capacity: int) -> dict[str, float]:
    """In a process whose ONEDNN_PRIMITIVE_CACHE_CAPACITY is `capacity`: ms per product."""
    import torch

    torch.set_num_threads(threads)
    weights = {k: torch.randn(k, 64, dtype=torch.bfloat16) for k in range(16, 216)}
    shapes = [(m, k) for k in weights for m in range(1, 129)]  # 25,600 shapes
    if len(shapes) < capacity + 1000:
        raise SystemExit(f"capacity {capacity}: more than the {len(shapes)} shapes can fill")

    def ms_per_product(part: list[tuple[int, int]]) -> float:
        start = time.perf_counter()
        for m, k in part:
            torch.ones(m, k, dtype=torch.bfloat16) @ weights[k]
        return (time.perf_counter() - start) / len(part) * 1e3

    room = ms_per_product(shapes[:500])
    ms_per_product(shapes[500 : capacity + 500])  # fill it
    full = ms_per_product(shapes[-500:])
    cached = ms_per_product(shapes[-500:])
    return {"new_shape_ms_cache_not_full": room, "new_shape_ms_cache_full": full,
            "cached_shape_ms": cached}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--capacities", default="1024,4096,16384")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.threads, args.child)))
        return
    rows = []
    for capacity in map(int, args.capacities.split(",")):
        env = {**os.environ, "ONEDNN_PRIMITIVE_CACHE_CAPACITY": str(capacity)}
        cmd = [sys.executable, __file__, "--threads", str(args.threads), "--child", str(capacity)]
        out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
        rows.append({"capacity": capacity, **json.loads(out)})
        print(f"{capacity:>6} kernels: a new shape {rows[-1]['new_shape_ms_cache_not_full']:.2f}"
              f" ms with room, {rows[-1]['new_shape_ms_cache_full']:.2f} ms once full; a "
              f"cached one {rows[-1]['cached_shape_ms']:.3f} ms")  # fmt: skip
    import torch

    record = {"cpu": cpu_name(), "threads": args.threads, "torch": torch.__version__,
              "python": platform.python_version(), "date": time.strftime("%Y-%m-%d"),
              "rows": rows}  # fmt: skip
    OUT.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
