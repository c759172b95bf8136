"""Training speed: source and target tokens/s of `attn train` (a benchmark, not a test).

Trains the `small` preset on Multi30k en->de with 4096-token batches, the setting of the
OpenNMT-py peer baseline in shared/peers (about 2,550 target tokens/s on 2 CPU threads), or
with `--corpus dialogsum` the DialogSum recipe's model (summarize, the `tiny` preset,
dialogues cut at 256 pieces). Tokens are real SentencePiece pieces, padding not counted
(target: pieces + EOS). The first `--warmup-steps` are not measured; the run then stops
itself (as Ctrl-C would) so no validation time is counted.

    python bench/train_speed.py --threads 2 [--steps 100] [--device cpu]
        [--precision auto|float32|bfloat16] [--corpus multi30k|dialogsum]

Writes bench/results/train_speed.json (train_speed_dialogsum.json) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

from peers import cpu_name

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
# corpus -> (task, data directory, preset, options beyond the preset, description)
CORPORA = {
    "multi30k": (
        "translate",
        "translation/multi30k",
        "small",
        {"src": "en", "tgt": "de"},
        "multi30k en->de train",
    ),
    "dialogsum": (
        "summarize",
        "summarization/dialogsum",
        "tiny",
        {"vocab_size": 8000, "overrides": {"max_length": 256}},
        "dialogsum train",
    ),
}


def measure(args: argparse.Namespace) -> dict:
    import torch

    from attn.model.device import apply_process_settings
    from attn.model.training.loop import LOG_EVERY
    from attn.model.training.train import train

    # The process settings `attn train` applies (malloc thresholds, oneDNN's kernel cache).
    apply_process_settings(args.device, args.threads, training=True)
    task, data, preset, extra, described = CORPORA[args.corpus]
    logs: list[dict] = []
    precision: list[str] = []
    step = 0
    # Throughput is only reported every LOG_EVERY steps: measure whole intervals.
    warmup = -(-args.warmup_steps // LOG_EVERY) * LOG_EVERY
    total = warmup + -(-args.steps // LOG_EVERY) * LOG_EVERY

    cuda = args.device.startswith("cuda")

    def on_event(event: dict) -> None:
        nonlocal step
        if event["event"] == "progress":
            step = event["step"]
            if cuda and step == warmup:
                # From here on, each operation that waits for the GPU is recorded ...
                torch.cuda.set_sync_debug_mode("warn")
            elif cuda and step == total:
                # ... up to the stop (not the final save).
                torch.cuda.set_sync_debug_mode("default")
        elif event["event"] == "log":
            logs.append(event)
            print(
                f"step {event['step']}: {event['tgt_tokens_per_s']:,.0f} tgt tok/s",
                file=sys.stderr,
            )
        elif event["event"] == "start":
            precision.append(event["precision"])

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        started = time.monotonic()
        train(
            task,
            Path(tmp) / "model",
            {
                "data": str(DATA / data),
                **extra,
                "preset": preset,
                "batch_tokens": args.batch_tokens,
                "max_steps": total + 1,
                "val_every": 10**9,
                "seed": 0,
                "precision": args.precision,
            },
            device=args.device,
            threads=args.threads,
            on_event=on_event,
            stop_requested=lambda: step >= total,
        )
        wall = time.monotonic() - started
    syncs = sum("synchroniz" in str(w.message) for w in caught)
    measured = [e for e in logs if e["step"] > warmup]
    (start,) = [e for e in logs if e["step"] == warmup]
    tgt = statistics.mean(e["tgt_tokens_per_s"] for e in measured)
    src = statistics.mean(e["src_tokens_per_s"] for e in measured)
    return {
        "benchmark": "train_speed",
        "data": described,
        "preset": preset,
        "batch_tokens": args.batch_tokens,
        "device": args.device,
        "precision": precision[0],
        "threads": torch.get_num_threads(),
        "warmup_steps": warmup,
        "measured_steps": measured[-1]["step"] - warmup,
        "tgt_tokens_per_s": round(tgt),
        "src_tokens_per_s": round(src),
        "seconds_per_step": round(
            (measured[-1]["elapsed"] - start["elapsed"]) / (measured[-1]["step"] - warmup), 3
        ),
        "wall_s": round(wall, 1),
        **(
            {
                "gpu": torch.cuda.get_device_name(),
                "host_syncs_per_step": round(syncs / (measured[-1]["step"] - warmup), 2),
                "peak_gpu_memory_mib": round(torch.cuda.max_memory_allocated() / 2**20),
            }
            if cuda
            else {}
        ),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
        "cpu": cpu_name(),
        "date": time.strftime("%Y-%m-%d"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-tokens", type=int, default=4096)
    parser.add_argument("--warmup-steps", type=int, default=50)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--precision", default="auto", choices=("auto", "float32", "bfloat16"))
    parser.add_argument("--corpus", default="multi30k", choices=sorted(CORPORA))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    suffix = "" if args.corpus == "multi30k" else f"_{args.corpus}"
    args.out = args.out or ROOT / "bench" / "results" / f"train_speed{suffix}.json"
    if not (DATA / CORPORA[args.corpus][1]).is_dir():
        sys.exit(f"{args.corpus} not found at {DATA / CORPORA[args.corpus][1]}")
    result = measure(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
