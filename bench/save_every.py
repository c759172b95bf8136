"""The cost of `--save-every`: steps of the Multi30k recipe in a fixed time, with and without
periodic `last/` writes, and the time of each write (a benchmark, not a test).

Trains the recipe's settings (recipes/multi30k-en-de.toml: small preset, 4096-token batches)
for `--minutes` twice, in-process: with `--save-every 0` (last/ only at validations) and
with `--save-every EVERY`. The recipe's validation every 300 steps runs in both.

    python bench/save_every.py --threads 2 [--minutes 25] [--every 10m] [--data DIR]

Writes bench/results/save_every.json and prints a table. A shorter `--every` than the
default 10m gives an upper bound of the overhead on a short run.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MULTI30K = ROOT.parent / "shared" / "data" / "translation" / "multi30k"


def run(data: Path, minutes: float, every: float, threads: int) -> dict:
    from attn.cli.commands.train import _toml
    from attn.model.training.checkpointer import Checkpointer
    from attn.model.training.train import train

    recipe = _toml().loads((ROOT / "recipes" / "multi30k-en-de.toml").read_text("utf-8"))
    keys = ("src", "tgt", "preset", "vocab_size", "batch_tokens", "lr", "warmup", "seed")
    options = {key: recipe[key] for key in keys}
    options.update(
        data=str(data),
        overrides=recipe["set"],
        val_every=recipe["val_every"],
        time_budget=minutes * 60,
        save_every=every,
    )
    writes: list[float] = []
    original = Checkpointer.save_last

    def timed(self, rngs=None):  # every write of last/: validations and periodic ones
        start = time.perf_counter()
        original(self, rngs)
        writes.append(time.perf_counter() - start)

    Checkpointer.save_last = timed
    try:
        with tempfile.TemporaryDirectory() as tmp:
            result = train("translate", Path(tmp) / "m", options, threads=threads, device="cpu")
    finally:
        Checkpointer.save_last = original
    return {
        "save_every_s": every,
        "steps": result.step,
        "last_writes": len(writes),
        "mean_write_s": round(sum(writes) / max(1, len(writes)), 3),
        "best_bleu": None if result.best_value is None else round(result.best_value, 2),
    }


def main() -> None:
    from attn.cli.commands.train import parse_duration

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=MULTI30K)
    parser.add_argument("--minutes", type=float, default=25.0)
    parser.add_argument("--every", default="10m", help="the --save-every of the second run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "save_every.json")
    args = parser.parse_args()
    every = parse_duration(args.every, "--every")
    runs = [run(args.data, args.minutes, e, args.threads) for e in (0.0, every)]
    off, on = runs
    record = {
        "cpu": platform.processor() or platform.machine(),
        "threads": args.threads,
        "minutes": args.minutes,
        "runs": runs,
        "steps_ratio": round(on["steps"] / max(1, off["steps"]), 4),
    }
    print(f"{'save_every':>10}  {'steps':>6}  {'last/ writes':>12}  {'s/write':>7}  bleu")
    for r in runs:
        every_text = f"{r['save_every_s']:g}s" if r["save_every_s"] else "off"
        print(
            f"{every_text:>10}  {r['steps']:>6}  {r['last_writes']:>12}  "
            f"{r['mean_write_s']:>7.3f}  {r['best_bleu']}"
        )
    print(f"steps with / without: {record['steps_ratio']:.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
