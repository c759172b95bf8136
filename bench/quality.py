"""Quality in a training budget: a dataset's recipe against each change alone and their
combination, at the same budget on the same machine (a benchmark, not a test).

Each variant is the recipe's `attn train` with a few more flags (or, "defaults", no recipe
at all: `attn train TASK --data DIR --time-budget T`, what a user without one gets). Every
run is scored with `attn evaluate` (beam 4) on the split used for choices (val, or dev);
`--test` also scores on the test split (Multi30k test2016), which is for the end only.

Runs `--parallel` variants side by side, each with `--threads` threads (the recipes' 2
threads: one at a time; one thread two side by side is a machine half as fast). A variant
already trained in --work is only scored again.

    python bench/quality.py multi30k --variants baseline,ema [--threads 1 --parallel 2]
        [--budget 25m] [--test] [--work DIR]

Adds its rows to bench/results/quality.json and prints them as a table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

from backtranslation import ATTN, run_together
from peers import cpu_name

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "bench" / "results" / "quality.json"

# dataset -> (task, recipe, data directory, validation split, test split, metric)
DATASETS = {
    "multi30k": ("translate", "multi30k-en-de", "translation/multi30k", "val", "test2016", "bleu"),
    "dialogsum": ("summarize", "dialogsum", "summarization/dialogsum", "val", None, "rougeL"),
    "imdb": ("sentiment", "imdb", "sentiment/imdb", "dev", None, "accuracy"),
}
# variant -> the flags it adds to the recipe (None: no recipe, the chosen defaults). Each
# names every option it measures, so that the defaults chosen for what a recipe leaves out
# (`attn.model.training.defaults`, e.g. --ema) do not reach the others.
# The Multi30k recipe since 2026-12-06: the later variants add one change to it.
_BATCH_2048 = "--ema 0.995 --precision bfloat16 --batch-tokens 2048 --warmup 600"
VARIANTS: dict[str, list[str] | None] = {
    name: None if flags is None else flags.split()
    for name, flags in {
        "baseline": "--ema 0",
        "ema": "--ema 0.995",
        "ema-0.998": "--ema 0.998",
        "average": "--ema 0 --average-last 4",
        "sampling-0.5": "--ema 0 --subword-alpha 0.5",
        "linear": "--ema 0 --decay linear",
        "ema+sampling-0.5": "--ema 0.995 --subword-alpha 0.5",
        "linear+ema": "--decay linear --ema 0.995",
        "bf16": "--ema 0 --precision bfloat16",
        "ema+bf16": "--ema 0.995 --precision bfloat16",
        "ema+bf16+batch-2048": _BATCH_2048,
        "ema+bf16+batch-1024": "--ema 0.995 --precision bfloat16 --batch-tokens 1024 --warmup 1200",
        "ema+bf16+dropout-0": "--ema 0.995 --precision bfloat16 --set dropout=0",
        "ema+bf16+batch-2048+lr-3.5e-3": f"{_BATCH_2048} --lr 3.5e-3",
        "ema+bf16+batch-2048+cooldown": f"{_BATCH_2048} --decay cooldown",
        "ema+bf16+batch-2048+cooldown+vocab-6000": f"{_BATCH_2048} --decay cooldown"
        " --vocab-size 6000",
        "ema+bf16+batch-2048+vocab-10000": f"{_BATCH_2048} --vocab-size 10000",
        "ema+bf16+batch-2048+layers-4-2": f"{_BATCH_2048} --set n_encoder_layers=4"
        " --set n_decoder_layers=2",
        "ema+bf16+batch-2048+post-norm": f"{_BATCH_2048} --set norm=post",
        "ema+bf16+batch-2048+dropout-0.2": f"{_BATCH_2048} --set dropout=0.2",
        "ema-0.998+bf16+batch-2048": _BATCH_2048.replace("--ema 0.995", "--ema 0.998"),
        "ema+bf16+batch-2048+smoothing-0.2": f"{_BATCH_2048} --label-smoothing 0.2",
        "ema-0.998+bf16+batch-2048+dropout-0.2": _BATCH_2048.replace("--ema 0.995", "--ema 0.998")
        + " --set dropout=0.2",
        "ema+bf16+batch-2048+sampling-0.5": f"{_BATCH_2048} --subword-alpha 0.5",
        "ema+bf16+batch-2048+r-drop-5": f"{_BATCH_2048} --r-drop 5",
        "ema+bf16+batch-2048+average-5": f"{_BATCH_2048} --average-last 5",
        "ema+bf16+batch-2048+ff-2048+dropout-0.2": f"{_BATCH_2048} --set d_ff=2048"
        " --set dropout=0.2",
        # sentiment (IMDB): the recipe's settings in bfloat16, as `--precision auto` trains
        # it on a CPU with AVX512-BF16 or AMX
        "bf16+r-drop-5": "--ema 0 --precision bfloat16 --r-drop 5",
        "bf16+ema": "--ema 0.995 --precision bfloat16",
        # summarization (DialogSum): the recipe in float32 (`--precision auto` for its tiny
        # model on a CPU with AMX) without dropout
        "dropout-0": "--set dropout=0",
        # the small preset, in bfloat16 as `--precision auto` trains it on such a CPU
        "small": "--preset small --precision bfloat16",
        "defaults": None,
    }.items()
}
# The variants measured before --precision existed trained in float32, and those measured
# before the Multi30k recipe took 2048-token batches on 4096 (the other recipes' size); each
# keeps what it measured.
for _flags in VARIANTS.values():
    if _flags is not None and "--precision" not in _flags:
        _flags += ["--precision", "float32"]
    if _flags is not None and "--batch-tokens" not in _flags:
        _flags += ["--batch-tokens", "4096", "--warmup", "300"]


def train_job(args: argparse.Namespace, name: str) -> tuple[list[str], Path]:
    task, recipe, data, *_ = DATASETS[args.dataset]
    model = args.work / name
    cmd = [ATTN, "train", task, "--data", str(DATA / data), "--model-dir", str(model)]
    cmd += ["--src", "en", "--tgt", "de"] if args.dataset == "multi30k" else []
    cmd += ["--overwrite", "--threads", str(args.threads)]
    extra = VARIANTS[name]
    if extra is None:
        cmd += ["--time-budget", args.budget] if args.budget else []
    else:
        cmd += ["--config", str(ROOT / "recipes" / f"{recipe}.toml"), *extra]
        cmd += ["--time-budget", args.budget] if args.budget else []
    return cmd, args.work / f"{name}.done"


def evaluate_job(args: argparse.Namespace, name: str, split: str) -> tuple[list[str], Path]:
    task, _, data, *_ = DATASETS[args.dataset]
    cmd = [ATTN, "evaluate", task, "-m", str(args.work / name), "--data", str(DATA / data)]
    cmd += ["--src", "en", "--tgt", "de"] if args.dataset == "multi30k" else []
    cmd += ["--split", split, "--threads", str(args.threads), "--format", "json"]
    cmd += ["--beam", "4"] if task != "sentiment" else []
    return cmd, args.work / f"score-{name}-{split}.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=sorted(DATASETS))
    parser.add_argument(
        "--variants", default="baseline", help="comma-separated: " + ", ".join(VARIANTS)
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--budget", default=None, help="time budget (default: the recipe's)")
    parser.add_argument("--test", action="store_true", help="also score on the test split")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "attn-quality")
    args = parser.parse_args()
    names = args.variants.split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        sys.exit(f"unknown variant(s): {', '.join(unknown)}")
    args.work.mkdir(parents=True, exist_ok=True)
    # the code the runs train with (the commit at the start)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    _, recipe, _, val, test, metric = DATASETS[args.dataset]
    splits = [val] + ([test] if args.test and test else [])
    for start in range(0, len(names), args.parallel):
        group = names[start : start + args.parallel]
        run_together({n: train_job(args, n) for n in group}, args.work)
    jobs = {f"{n}-{s}": evaluate_job(args, n, s) for n in names for s in splits}
    keys = list(jobs)
    for start in range(0, len(keys), args.parallel):
        run_together({k: jobs[k] for k in keys[start : start + args.parallel]}, args.work)
    rows = []
    for name in names:
        model = args.work / name
        config = json.loads((model / "config.json").read_text(encoding="utf-8"))
        lines = (model / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
        # (`attn evaluate` appends its scores to the same file, without a step.)
        metrics = [r for r in map(json.loads, lines) if "step" in r]
        scored = {
            s: json.loads((args.work / f"score-{name}-{s}.json").read_text(encoding="utf-8"))
            for s in splits
        }
        scores = {s: scored[s]["scores"] for s in splits}
        rows.append(
            {
                "dataset": args.dataset,
                "variant": name,
                "flags": VARIANTS[name],
                "recipe": None if VARIANTS[name] is None else recipe,
                "steps": metrics[-1]["step"] if metrics else 0,
                "train_seconds": metrics[-1]["time"] if metrics else 0,
                "best_step": config["best"]["step"],
                "preset": config["train"]["preset"],
                "scores": scores,
                # the search of `attn evaluate` (beam 4, the task's length penalty then)
                "length_penalty": scored[val].get("length_penalty"),
                "metric": metric,
                "threads": args.threads,
                "side_by_side": args.parallel,
                "cpu": cpu_name(),
                "date": date.today().isoformat(),
                "commit": commit,
            }
        )
    previous = json.loads(RESULTS.read_text(encoding="utf-8")) if RESULTS.is_file() else []
    RESULTS.write_text(json.dumps(previous + rows, indent=1) + "\n", encoding="utf-8")
    print(f"| variant | steps | {' | '.join(f'{s} {metric}' for s in splits)} |")
    print("|---|---:|" + "---:|" * len(splits))
    for r in rows:
        values = " | ".join(f"{r['scores'][s][metric]:.2f}" for s in splits)
        print(f"| {r['variant']} | {r['steps']:,} | {values} |")


if __name__ == "__main__":
    main()
