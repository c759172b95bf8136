"""Whole-process translation time beside OpenNMT-py (a benchmark, not a test).

Times, as a user runs them, start to exit: `attn translate -m MODEL_DIR test2016.en` (the
defaults: beam 4, workers chosen automatically), the same with `--workers 2`, and, when the
peers are set up (shared/peers/setup.sh, and a checkpoint trained by shared/peers/mt/train.sh),
`onmt_translate` with beam 4 on the same sentences (SentencePiece pieces prepared by the peers'
scripts: its time does not include tokenizing). The commands alternate over `--rounds`
rounds, so that a machine whose speed drifts (shared cores) slows them alike; each ratio is
the median of the rounds' own ratios.

    python bench/whole_process.py -m MODEL_DIR [--rounds 3]

Writes bench/results/whole_process.json and prints a table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from peers import (
    ATTN,
    MULTI30K,
    PEERS_VENV,
    PEERS_WORK,
    machine,
    ratio_summary,
    rotations,
    save_result,
    wall,
)


def _shown(part: str) -> str:
    return Path(part).name if part.startswith("/") else part


def commands(model_dir: Path, source: Path) -> dict[str, tuple[list[str], Path | None, dict]]:
    """Name -> (command, working directory, environment) of each timed command."""
    env = dict(os.environ)
    attn = [ATTN, "translate", "-m", str(model_dir)]
    runs = {
        "attn translate (defaults)": ([*attn, str(source)], None, env),
        "attn translate --workers 2": ([*attn, "--workers", "2", str(source)], None, env),
    }
    checkpoints = sorted(PEERS_WORK.glob("run/model_step_*.pt"), key=os.path.getmtime)
    onmt = PEERS_VENV / "bin" / "onmt_translate"
    if onmt.exists() and checkpoints and (PEERS_WORK / "test2016.sp.en").exists():
        peer_env = {**env, "OMP_NUM_THREADS": "2", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
        cmd = [str(onmt), "-model", str(checkpoints[-1]), "-src", "test2016.sp.en"]
        cmd += ["-output", os.devnull, "-beam_size", "4"]
        runs["onmt_translate (beam 4)"] = (cmd, PEERS_WORK, peer_env)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-m", "--model", type=Path, required=True, help="a translate model dir")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, help="default: bench/results/whole_process.json")
    args = parser.parse_args()
    source = MULTI30K / "test2016.en"
    runs = commands(args.model, source)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for r, name in rotations(list(runs), args.rounds):
        cmd, cwd, env = runs[name]
        times[name].append(wall(cmd, runs=1, env=env, cwd=cwd))
        print(f"round {r + 1}: {name} {times[name][-1]:.2f} s", file=sys.stderr)
    peer = "onmt_translate (beam 4)"
    rows = {}
    for name, seconds in times.items():
        row: dict = {"seconds": [round(s, 2) for s in seconds]}
        row["median_s"] = round(statistics.median(seconds), 2)
        if peer in times and name != peer:
            ratios = [p / s for p, s in zip(times[peer], seconds, strict=True)]
            row["times_faster_than_onmt_translate"], row["ratio_range"] = ratio_summary(ratios)
        rows[name] = row
    result = {
        "benchmark": "whole-process translation of test2016 (1,000 sentences), alternated",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine(os.cpu_count() or 1),
        "model": args.model.name,
        "rounds": args.rounds,
        # Paths as their last part: the result speaks of the commands, not of this machine.
        "commands": {name: " ".join(_shown(part) for part in runs[name][0]) for name in runs},
        "results": rows,
    }
    out = save_result(result, args.out, "whole_process.json")
    print(f"{result['machine']['cpu']}; {args.rounds} rounds, alternated")
    print(f"{'command':<30} {'median s':>9} {'x onmt_translate':>17}")
    for name, row in rows.items():
        ratio = row.get("times_faster_than_onmt_translate", "")
        span = f" ({row['ratio_range'][0]}-{row['ratio_range'][1]})" if ratio else ""
        print(f"{name:<30} {row['median_s']:>9} {ratio!s:>17}{span}")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
