"""Where the time of a whole `attn translate` process goes (a benchmark, not a test).

Each round times, start to exit, the command a user runs:

    attn translate -m MODEL_DIR --device DEVICE test2016.en > /dev/null

and then, in a fresh interpreter, the same work in phases: interpreter start, `import torch`,
the device's initialization (on a GPU: CUDA context, a first allocation and kernel), loading
the model, the first batch (on a GPU the first kernels and cuBLAS), the rest of the file, and
the file once more in the same process (the steady state, nothing left to initialize). On a
GPU it also times a variant that initializes CUDA on a second thread while the model loads.

    python bench/startup_phases.py -m MODEL_DIR [--device cuda] [--rounds 3]

Writes bench/results/startup_phases_<device>.json and prints a table of medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from peers import ATTN, MULTI30K, machine, save_result, wall

# Runs in a fresh interpreter: prints one JSON object of phase ends, seconds from the epoch.
CHILD = r"""
import json, sys, time
marks = {"python": time.time()}
model, device, source, overlap = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
import torch
marks["import torch"] = time.time()

def init_device():
    if device == "cuda":
        torch.cuda.init()
        torch.ones(1, device="cuda").add_(1)
        torch.cuda.synchronize()

thread = None
if overlap:
    import threading
    thread = threading.Thread(target=init_device)
    thread.start()
else:
    init_device()
    marks["device init"] = time.time()
from attn.model.inference.pipeline import load_pipeline
pipeline = load_pipeline("translate", model, device=device)
if thread is not None:
    thread.join()
marks["model load"] = time.time()
texts = open(source, encoding="utf-8").read().splitlines()
first = []
def progress(sentences, pieces):
    if not first:
        first.append(time.time())
list(pipeline.generate(texts, progress=progress))
marks["first batch"] = first[0]
marks["rest of the file"] = time.time()
list(pipeline.generate(texts))
marks["the file again (warm)"] = time.time()
print(json.dumps(marks))
"""


def phases(model: Path, device: str, source: Path, overlap: bool) -> dict[str, float]:
    """Seconds of each phase of one fresh process (see CHILD), "launch" counted from the
    moment the process was started."""
    launched = time.time()
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(model), device, str(source), "1" if overlap else "0"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    marks = json.loads(out.splitlines()[-1])
    result, before = {}, launched
    for name, at in marks.items():
        result[name] = at - before
        before = at
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-m", "--model", type=Path, required=True, help="a translate model dir")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--source", type=Path, default=MULTI30K / "test2016.en")
    parser.add_argument("--out", type=Path, help="default: bench/results/startup_phases_DEV.json")
    args = parser.parse_args()
    variants = {"in order": False}
    if args.device == "cuda":
        variants["device initialized beside the load"] = True
    command = [ATTN, "translate", "-m", str(args.model), "--device", args.device, str(args.source)]
    walls: list[float] = []
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    for r in range(args.rounds):
        walls.append(wall(command, runs=1))
        for name, overlap in variants.items():
            runs[name].append(phases(args.model, args.device, args.source, overlap))
        print(f"round {r + 1}: whole process {walls[-1]:.2f} s", file=sys.stderr)
    medians = {
        name: {phase: round(statistics.median(run[phase] for run in rs), 3) for phase in rs[0]}
        for name, rs in runs.items()
    }
    for phase_medians in medians.values():
        phase_medians["start to the file's end"] = round(
            sum(v for k, v in phase_medians.items() if k != "the file again (warm)"), 3
        )
    result = {
        "benchmark": f"whole `attn translate {args.source.name}` and its phases, {args.device}",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine(os.cpu_count() or 1),
        "gpu": _gpu_name(args.device),
        "model": args.model.name,
        "rounds": args.rounds,
        "whole process s": [round(w, 2) for w in walls],
        "whole process median s": round(statistics.median(walls), 2),
        "phases median s": medians,
    }
    out = save_result(result, args.out, f"startup_phases_{args.device}.json")
    print(f"{result['machine']['cpu']} {result['gpu']}".strip())
    print(f"attn translate {args.source.name}, whole process: {result['whole process median s']} s")
    for name, phase_medians in medians.items():
        print(f"phases, {name}:")
        for phase, seconds in phase_medians.items():
            print(f"  {phase:<32} {seconds:>7.3f} s")
    print(f"written to {out}")


def _gpu_name(device: str) -> str:
    if device != "cuda":
        return ""
    import torch

    return torch.cuda.get_device_name()


if __name__ == "__main__":
    main()
