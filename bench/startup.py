"""Start-up time of the `attn` script: what a user pays before any work starts.

Runs each command several times and reports the median wall time.

    python bench/startup.py [--runs 10] [-m MODEL_DIR]

With -m, also times `echo "A dog runs." | attn translate -m MODEL_DIR` end to end.
Writes bench/results/startup.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ATTN = str(Path(sys.executable).parent / "attn")
RESULTS = Path(__file__).resolve().parent / "results"


def wall_time(cmd: list[str], runs: int, stdin: str | None = None) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, input=stdin, capture_output=True, text=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("-m", "--model", type=Path, help="a translate model dir")
    args = parser.parse_args()

    rows = {
        "python -c pass": wall_time([sys.executable, "-c", "pass"], args.runs),
        "python -c 'import torch'": wall_time([sys.executable, "-c", "import torch"], args.runs),
        "attn --help": wall_time([ATTN, "--help"], args.runs),
        "attn --version": wall_time([ATTN, "--version"], args.runs),
    }
    if args.model:
        rows["echo 'A dog runs.' | attn translate"] = wall_time(
            [ATTN, "translate", "-m", str(args.model)], args.runs, stdin="A dog runs.\n"
        )
    width = max(map(len, rows))
    print(f"{'command':<{width}}  median wall time ({args.runs} runs)")
    for name, seconds in rows.items():
        print(f"{name:<{width}}  {seconds:.3f} s")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "startup.json"
    machine = {"platform": platform.platform(), "python": platform.python_version()}
    out.write_text(json.dumps({"machine": machine, "median_seconds": rows}, indent=2) + "\n")
    print(f"saved {out}")


if __name__ == "__main__":
    main()
