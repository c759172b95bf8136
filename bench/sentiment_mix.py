"""How much would other weights of a sentiment model's two halves give? (a benchmark, not a test)

A sentiment model with a bag of n-grams answers with the mean of the two halves'
log-probabilities (`Classifier.classify`). This scores a trained model's dev split with the
transformer alone, the bag alone, and `w * bag + (1 - w) * transformer` for w from 0 to 1 in
steps of 0.05, on log-probabilities and on probabilities. Choosing w on the split it is
scored on flatters it: read the spread, not the best figure.

    python bench/sentiment_mix.py MODEL [--data DIR] [--split dev] [--threads 2]

MODEL is a sentiment model directory with a bag (`attn train sentiment --config
recipes/imdb.toml`, or recipes/sst2.toml); inputs are cut as the model was trained. Adds its
row to bench/results/sentiment_mix.json.
"""

from __future__ import annotations

import argparse
import json
from datetime import date
from pathlib import Path

import torch
from ngram_prior import pad, read
from peers import cpu_name

from attn.model.storage.checkpoint import load_model

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "sentiment_mix.json"
BATCH = 64


@torch.inference_mode()
def halves(model_dir: Path, data: Path, split: str) -> tuple[torch.Tensor, ...]:
    """Each example's log-probabilities from the transformer and from the bag, (N, C) each,
    and the gold label ids (N,)."""
    loaded = load_model(model_dir, task="sentiment")
    model, config = loaded.model, loaded.config
    if model.ngrams is None:
        raise SystemExit(f"{model_dir} has no bag of n-grams")
    ids, gold = read(data, split, loaded.tokenizer, config)  # cut as the model was trained
    transformer, bag = [], []
    for start in range(0, len(ids), BATCH):
        t, b = model.class_logits(*pad(ids[start : start + BATCH]))
        transformer.append(t.float().log_softmax(-1))
        bag.append(b.float().log_softmax(-1))
    return torch.cat(transformer), torch.cat(bag), gold


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--data", type=Path, default=None, help="default: the model's data")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.data is None:
        config = json.loads((args.model / "config.json").read_text(encoding="utf-8"))
        data = config["train"]["data"]
        args.data = Path(data[0] if isinstance(data, list) else data)
    t, b, gold = halves(args.model, args.data, args.split)

    def accuracy(scores: torch.Tensor) -> float:
        return round((scores.argmax(-1) == gold).float().mean().item() * 100, 2)

    weights = [i / 20 for i in range(21)]
    row = {
        "model": args.model.name,
        "split": args.split,
        "examples": len(gold),
        "transformer": accuracy(t),
        "bag": accuracy(b),
        "attn (w = 0.5)": accuracy(t + b),
        "log_probs": {w: accuracy(w * b + (1 - w) * t) for w in weights},
        "probs": {w: accuracy(w * b.exp() + (1 - w) * t.exp()) for w in weights},
        "cpu": cpu_name(),
        "date": date.today().isoformat(),
    }
    previous = json.loads(RESULTS.read_text(encoding="utf-8")) if RESULTS.is_file() else []
    RESULTS.write_text(json.dumps([*previous, row], indent=1) + "\n", encoding="utf-8")
    print(f"transformer {row['transformer']}%, bag {row['bag']}%, attn {row['attn (w = 0.5)']}%")
    print("| w (bag) | " + " | ".join(f"{w:g}" for w in weights) + " |")
    print("|---|" + "---:|" * len(weights))
    for name in ("log_probs", "probs"):
        print(f"| {name} | " + " | ".join(f"{row[name][w]:.2f}" for w in weights) + " |")


if __name__ == "__main__":
    main()
