"""Does Naive Bayes help a sentiment model's bag of n-grams? (a benchmark, not a test)

NBSVM (Wang and Manning, 2012) scales each n-gram by its Naive Bayes log-count ratio. Here the
bag of n-grams of attn's sentiment models (`NgramBag`: pieces, pairs and triples, each
distinct feature once, weighted 1 / sqrt(features)) is trained alone, outside attn, for
`--epochs` as attn trains it (AdamW, peak rate NGRAM_LR, warmup 300, inverse square root,
batches of 8 inputs): unscaled (`ngram_scale = "none"`) once from zero and once from each
scale of the centred Naive Bayes log-probabilities of the training inputs' features (add-one
smoothing), then from zero with each feature scaled by its log-count ratio (`ngram_scale =
"ratio"`, attn's bag since 2026-12-07); it prints the dev accuracy of Naive Bayes alone and
the best of each run. `--scales ""` runs the scaled bag alone. `--buckets` and `--max-length`
change every bag's features from the model's; `--feature-dropout` (the share of an input's
features dropped at random in each training step, the rest scaled up to match) the scaled
bag's.

    python bench/ngram_prior.py MODEL [--data DIR] [--scales 0,0.1,0.3] [--epochs 1]
        [--buckets N] [--max-length N] [--feature-dropout P] [--threads 2]

MODEL is a sentiment model directory trained on the data (`attn train sentiment --config
recipes/imdb.toml`); its tokenizer and its max_length / keep / ngram settings are used.
Adds its rows to bench/results/ngram_prior.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import torch
from peers import cpu_name

from attn.data.task_files import find_task_files
from attn.model.nn.config import ModelConfig, load_config
from attn.model.nn.model import NgramBag
from attn.model.training.optimizer import BETAS, EPS, NGRAM_LR, WEIGHT_DECAY
from attn.model.training.schedule import lr_at
from attn.tokenizer.sentencepiece import PAD_ID, Tokenizer, collate

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "sentiment" / "imdb"
RESULTS = ROOT / "bench" / "results" / "ngram_prior.json"
BATCH, WARMUP, EVAL_BATCH = 8, 300, 256


class DroppingBag(NgramBag):
    """attn's bag whose training steps drop each feature with probability `p` (the kept ones
    weigh 1 / (1 - p) more); evaluation sees every feature."""

    def __init__(self, *args, p: float = 0.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.p = p

    def features(self, src: torch.Tensor, src_mask: torch.Tensor) -> tuple:
        features, weights = super().features(src, src_mask)
        if self.training and self.p:
            weights = weights * (torch.rand_like(weights) >= self.p) / (1 - self.p)
        return features, weights


def read(
    data: Path, split: str, tokenizer: Tokenizer, config: ModelConfig
) -> tuple[list[list[int]], torch.Tensor]:
    """A split's inputs as piece ids (cut as the model cuts them) and its label ids."""
    files = find_task_files("sentiment", data)
    rows = [ex for _, _, ex in files.examples(split)]
    ids, _ = tokenizer.encode(
        [ex.src for ex in rows], max_length=config.max_length, keep=config.keep
    )
    labels = torch.tensor([config.labels.index(ex.tgt) for ex in rows])
    return ids, labels


def pad(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Piece ids and mask of one batch, padded as attn pads them."""
    batch = collate(rows, [False] * len(rows), PAD_ID, None)
    return batch.ids, batch.mask


def labelled(ids: list, labels: torch.Tensor) -> Iterator[tuple[torch.Tensor, ...]]:
    """The inputs as the bag reads them: (ids, mask, labels) batches."""
    for start in range(0, len(ids), EVAL_BATCH):
        yield (*pad(ids[start : start + EVAL_BATCH]), labels[start : start + EVAL_BATCH])


def naive_bayes(bag: NgramBag, ids: list, labels: torch.Tensor) -> torch.Tensor:
    """Centred log-probabilities of each bucket under each class, (buckets, classes)."""
    counts = bag.class_counts(labelled(ids, labels)).float() + 1  # add-one smoothing
    logp = (counts / counts.sum(0)).log()
    return logp - logp.mean(1, keepdim=True)


@torch.no_grad()
def accuracy(bag: NgramBag, ids: list, labels: torch.Tensor) -> float:
    bag.eval()
    right = 0
    for start in range(0, len(ids), EVAL_BATCH):
        scores = bag(*pad(ids[start : start + EVAL_BATCH]))
        right += int((scores.argmax(1) == labels[start : start + EVAL_BATCH]).sum())
    bag.train()
    return 100 * right / len(ids)


def train(bag: NgramBag, train_set: tuple, dev_set: tuple, epochs: int) -> float:
    """`epochs` as attn trains the bag; the best dev accuracy of its evaluations."""
    ids, labels = train_set
    optimizer = torch.optim.AdamW(
        bag.parameters(), lr=NGRAM_LR, betas=BETAS, eps=EPS, weight_decay=WEIGHT_DECAY
    )
    per_epoch = len(ids) // BATCH
    order: list[int] = []
    for epoch in range(epochs):
        shuffled = list(range(len(ids)))
        random.Random(epoch).shuffle(shuffled)
        order += shuffled[: per_epoch * BATCH]
    steps, best = per_epoch * epochs, 0.0
    for step in range(1, steps + 1):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, NGRAM_LR, WARMUP)
        chosen = order[(step - 1) * BATCH : step * BATCH]
        loss = torch.nn.functional.cross_entropy(
            bag(*pad([ids[i] for i in chosen])), labels[chosen]
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 700 == 0 or step == steps:
            best = max(best, accuracy(bag, *dev_set))
            print(f"  step {step}/{steps}: best dev accuracy {best:.2f}%", flush=True)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--scales", default="0,0.1,0.3")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--buckets", type=int, help="the bag's (default: the model's)")
    parser.add_argument("--max-length", type=int, help="pieces the bag reads of an input")
    parser.add_argument("--feature-dropout", type=float, default=0.0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config, _ = load_config(args.model / "config.json")
    if args.max_length:
        config = dataclasses.replace(config, max_length=args.max_length)
    tokenizer = Tokenizer.load(args.model / "tokenizer.model")
    train_set = read(args.data, "train", tokenizer, config)
    dev_set = read(args.data, "val", tokenizer, config)
    buckets = args.buckets or config.ngram_buckets
    shape = (config.vocab_size, buckets, config.ngram_order, config.n_classes)
    bag = NgramBag(*shape)
    prior = naive_bayes(bag, *train_set)
    with torch.no_grad():
        bag.weight.copy_(prior)
    rows = [{"start": "naive bayes alone", "dev_accuracy": accuracy(bag, *dev_set)}]
    print(f"Naive Bayes alone: {rows[0]['dev_accuracy']:.2f}%")
    for scale in [float(x) for x in args.scales.split(",") if x]:
        with torch.no_grad():
            bag.weight.copy_(prior * scale)
        print(f"start: naive bayes x {scale}" if scale else "start: zero")
        best = train(bag, train_set, dev_set, args.epochs)
        rows.append({"start": f"naive bayes x {scale}", "dev_accuracy": best})
    scaled = DroppingBag(*shape, scale="ratio", p=args.feature_dropout)
    scaled.fit_ratios(labelled(*train_set))
    with torch.no_grad():
        scaled.weight.zero_()
    print("start: zero, features scaled by their log-count ratios")
    best = train(scaled, train_set, dev_set, args.epochs)
    rows.append({"start": "zero, log-count ratio scaling", "dev_accuracy": best})
    common = {
        "data": str(args.data.name),
        "epochs": args.epochs,
        "max_length": config.max_length,
        "buckets": buckets,
        "feature_dropout": args.feature_dropout,
        "cpu": cpu_name(),
        "date": str(date.today()),
    }
    saved = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    RESULTS.write_text(json.dumps(saved + [common | row for row in rows], indent=1) + "\n")
    for row in rows:
        print(f"| {row['start']} | {row['dev_accuracy']:.2f}% |")


if __name__ == "__main__":
    main()
