"""Task-adaptive pretraining for summarization: does a denoising first stage on DialogSum's own
training texts pay off in the same budget? (a benchmark, not a test)

Runs two at a time side by side, `--threads` each, the same total minutes of training:

- "recipe": `attn train summarize --config recipes/dialogsum.toml` for `--budget`;
- "denoise-Nm", for each N of `--first`: first N minutes of training on pairs that rebuild
  each training text (the dialogues and their summaries) from a copy with about 30% of its
  words hidden in spans
  (BART's text infilling, Lewis et al. 2020: span lengths drawn from Poisson(3), each span
  one `<mask>`), with the recipe's settings; then the rest of the budget on DialogSum from
  that model (`--init`, the recipe's optimizer settings).

Each is scored with `attn evaluate summarize` on val, beam 4 and greedy (rouge-score's
`rougeL`, Porter stemming). Adds its rows to bench/results/denoise.json and prints them.

    python bench/denoise.py [--budget 27m] [--first 6m[,9m...]] [--threads 1] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import tempfile
from datetime import date
from pathlib import Path

from backtranslation import ATTN, run_together
from peers import cpu_name

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "summarization" / "dialogsum"
RESULTS = ROOT / "bench" / "results" / "denoise.json"
RECIPE = ROOT / "recipes" / "dialogsum.toml"
MASK, SHARE, SPAN = "<mask>", 0.3, 3.0
BEAMS, ROUGE = (4, 1), ("rouge1", "rouge2", "rougeL")
# The recipe's optimizer settings, for the second stage (--init takes the size and tokenizer
# from the first stage's model, so the recipe's preset and vocabulary cannot be passed).
SECOND = "--batch-tokens 4096 --lr 2e-3 --warmup 300 --label-smoothing 0.1 --val-every 800"


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw (Knuth's method; small means only)."""
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p < limit:
            return k
        k += 1


def infill(text: str, rng: random.Random) -> str:
    """`text` with about SHARE of its words hidden: spans of Poisson(SPAN) words (0: a
    `<mask>` inserted) each replaced by one `<mask>`."""
    words = text.split()
    budget = round(len(words) * SHARE)
    out: list[str] = []
    i = 0
    while i < len(words):
        # a span starts with the probability that hides SHARE of the words on average
        if budget > 0 and rng.random() < SHARE / (SPAN - SHARE * (SPAN - 1)):
            span = min(_poisson(rng, SPAN), budget, len(words) - i)
            out.append(MASK)
            i += span
            budget -= span
            if span == 0:
                out.append(words[i])
                i += 1
        else:
            out.append(words[i])
            i += 1
    return " ".join(out)


def write_pairs(work: Path, seed: int) -> Path:
    """The denoising pairs (train and val) from DialogSum's texts, in `work`/pairs."""
    pairs = work / "pairs"
    if (pairs / "val.tgt").is_file():
        return pairs
    pairs.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    for split in ("train", "val"):
        texts = [
            line.strip()
            for name in ("src", "tgt")
            for line in (DATA / f"{split}.{name}").read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]
        if split == "val":
            texts = texts[:500]  # the dialogues: the validation picks the checkpoint only
        rng.shuffle(texts)
        src = [infill(t, rng) for t in texts]
        (pairs / f"{split}.src").write_text("\n".join(src) + "\n", encoding="utf-8")
        (pairs / f"{split}.tgt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    return pairs


def _minutes(budget: str) -> float:
    return float(budget.removesuffix("m"))


def train_jobs(args: argparse.Namespace, pairs: Path) -> dict[str, tuple[list[str], Path]]:
    """The runs to compare: "recipe", and "denoise-Nm" for each first stage of N minutes."""
    common = ["--threads", str(args.threads), "--overwrite", "--seed", str(args.seed)]
    recipe = [ATTN, "train", "summarize", "--config", str(RECIPE), *common]
    whole = [*recipe, "--data", str(DATA), "--model-dir", str(args.work / "recipe")]
    jobs = {"recipe": ([*whole, "--time-budget", args.budget], args.work / "recipe.done")}
    for first in args.first.split(","):
        name = f"denoise-{first}"
        rest = f"{_minutes(args.budget) - _minutes(first):g}m"
        stage1 = args.work / f"{name}-first"
        stages = [
            [*recipe, "--data", str(pairs), "--model-dir", str(stage1), "--time-budget", first],
            [ATTN, "train", "summarize", "--init", str(stage1), "--data", str(DATA), *common,
             "--model-dir", str(args.work / name), "--time-budget", rest, *SECOND.split()],
        ]  # fmt: skip
        chained = " && ".join(" ".join(stage) for stage in stages)
        jobs[name] = (["bash", "-c", chained], args.work / f"{name}.done")
    return jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", default="27m", help="minutes of training in all (NNm)")
    parser.add_argument(
        "--first", default="6m", help="minutes of the denoising stage (NNm; several: 3m,9m)"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "attn-denoise")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    jobs = train_jobs(args, write_pairs(args.work, args.seed))
    names = [name for name in jobs if not jobs[name][1].exists()]  # not run again
    for start in range(0, len(names), 2):
        run_together({name: jobs[name] for name in names[start : start + 2]}, args.work)
    evaluate = [ATTN, "evaluate", "summarize", "--data", str(DATA), "--split", "val"]
    evaluate += ["--threads", str(args.threads), "--format", "json"]
    scores = {
        f"{name}-beam{beam}": (
            [*evaluate, "--beam", str(beam), "-m", str(args.work / name)],
            args.work / f"score-{name}-beam{beam}.json",
        )
        for name in jobs
        for beam in BEAMS
    }
    keys = list(scores)
    for start in range(0, len(keys), 2):
        run_together({key: scores[key] for key in keys[start : start + 2]}, args.work)
    rows = [row(args, name, scores) for name in jobs]
    previous = json.loads(RESULTS.read_text(encoding="utf-8")) if RESULTS.is_file() else []
    RESULTS.write_text(json.dumps(previous + rows, indent=1) + "\n", encoding="utf-8")
    print("| variant | steps | best step | last val loss | val ROUGE-1 / 2 / L, beam 4 | greedy |")
    print("|---|---|---:|---:|---|---|")
    for r in rows:
        steps = " + ".join(f"{s:,}" for s in r["steps"].values())
        v = [" / ".join(f"{r['val'][b][k]:.2f}" for k in ROUGE) for b in ("beam4", "beam1")]
        print(f"| {r['variant']} | {steps} | {r['best_step']:,} | {r['val_loss']:.2f} | {v[0]} | "
              f"{v[1]} |")  # fmt: skip


def row(args: argparse.Namespace, name: str, scores: dict) -> dict:
    """One run's row: steps of each stage, its best step, its last val loss, its scores."""
    steps, last = {}, {}
    for model in (args.work / f"{name}-first", args.work / name):
        if model.is_dir():
            lines = (model / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
            stepped = [r for r in map(json.loads, lines) if "step" in r]
            steps[model.name] = stepped[-1]["step"] if stepped else 0
            last = next((r for r in reversed(stepped) if "val_loss" in r), {})
    config = json.loads((args.work / name / "config.json").read_text(encoding="utf-8"))
    val = {}
    for beam in BEAMS:
        result = json.loads(scores[f"{name}-beam{beam}"][1].read_text(encoding="utf-8"))
        val[f"beam{beam}"] = {k: round(result["scores"][k], 2) for k in ROUGE}
    return {
        "variant": name,
        "budget": args.budget,
        "steps": steps,
        "best_step": config["best"]["step"],
        "val_loss": last.get("val_loss"),
        "val": val,
        "threads": args.threads,
        "side_by_side": 2,
        "cpu": cpu_name(),
        "date": date.today().isoformat(),
    }


if __name__ == "__main__":
    main()
