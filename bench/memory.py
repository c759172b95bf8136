"""Streaming memory: RSS of `attn translate` over time on a large file (a benchmark, not a test).

Writes a large input (test2016 sentences repeated, --megabytes of text), runs
`attn translate FILE -o OUT` for --seconds, samples the resident memory of the command and
its workers (from /proc) twice a second, then stops it with Ctrl-C. Flat RSS while the output
grows means the input is streamed: chunks are read, translated, written and dropped.

    python bench/memory.py [-m MODEL_DIR] [--megabytes 60] [--seconds 60] [--beam 1]

Without -m it uses a `small` model with random weights (see bench/translate_speed.py).
Writes bench/results/memory.json and prints the samples.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MULTI30K = ROOT.parent / "shared" / "data" / "translation" / "multi30k"
ATTN = str(Path(sys.executable).parent / "attn")


def tree_rss_mib(pid: int) -> float:
    """Resident memory of a process and its children, MiB (Linux /proc)."""
    total = 0
    pids = [pid]
    while pids:
        p = pids.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
            with open(f"/proc/{p}/task/{p}/children") as f:
                pids.extend(int(c) for c in f.read().split())
        except (OSError, StopIteration):
            continue
    return total / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-m", "--model", type=Path, help="a translate model dir")
    parser.add_argument("--megabytes", type=int, default=60)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--beam", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "memory.json")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "bench"))
    from translate_speed import build_random_model

    lines = (MULTI30K / "test2016.en").read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model or build_random_model(Path(tmp), 8000)
        source, output = Path(tmp) / "big.en", Path(tmp) / "big.de"
        with open(source, "w", encoding="utf-8") as f:
            for _ in range(args.megabytes * 2**20 // len(lines.encode()) + 1):
                f.write(lines)
        size_mib = source.stat().st_size / 2**20
        cmd = [ATTN, "translate", "-m", str(model_dir), "--beam", str(args.beam)]
        cmd += ["--threads", str(args.threads), str(source), "-o", str(output)]
        proc = subprocess.Popen(cmd, start_new_session=True, stderr=subprocess.DEVNULL)
        start, samples = time.monotonic(), []
        while time.monotonic() - start < args.seconds and proc.poll() is None:
            time.sleep(0.5)
            with open(output, "rb") if output.exists() else open(os.devnull, "rb") as f:
                written = sum(1 for _ in f)
            samples.append(
                {
                    "s": round(time.monotonic() - start, 1),
                    "rss_mib": round(tree_rss_mib(proc.pid), 1),
                    "lines_out": written,
                }
            )
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
        rc = proc.wait(30)
    # After start-up (model loaded, first chunk read): what the steady state adds.
    steady = [s["rss_mib"] for s in samples if s["lines_out"] > 0]
    result = {
        "benchmark": "memory",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "input_mib": round(size_mib, 1),
        "command": " ".join(cmd[1:]),
        "exit_code": rc,
        "samples": samples,
        "rss_mib_first_output": steady[0] if steady else None,
        "rss_mib_max": max(s["rss_mib"] for s in samples) if samples else None,
        "rss_mib_last": samples[-1]["rss_mib"] if samples else None,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for s in samples[:: max(1, len(samples) // 20)]:
        print(f"{s['s']:>6} s  RSS {s['rss_mib']:>7} MiB  {s['lines_out']:>8} lines out")
    print(
        f"input {size_mib:.0f} MiB; RSS at first output {result['rss_mib_first_output']} MiB, "
        f"max {result['rss_mib_max']} MiB, last {result['rss_mib_last']} MiB; exit {rc}"
    )
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
