"""The lengths of a corpus in pieces, and the model length chosen from them.

A new model's `max_length` (its longest input, and its longest output: one table of
positions serves both) is chosen at preparation, unless the user gives it (`--set
max_length=N`, a config file's `[set]`): the smallest multiple of 8 that holds at least
`COVER` of the training sources and of the targets, EOS included, within two caps:

- the preset's (`PRESET_CAPS`): a longer input costs the encoder quadratic attention work,
  which the small presets do not repay;
- the memory budget's: a batch of `batch_tokens` padded tokens holds at least
  `ROWS_PER_BATCH` rows of the longest length, so that memory stays that of the batch and a
  gradient is never one example's.

It never goes below `ModelConfig`'s default (256), so a corpus of short sentences trains the
model it always did. The choice is made before the corpus is encoded (the encoding cuts at
it), from the tokenizer's sample of the training rows (`attn.data.scan`: every row of a
corpus up to its size, 250,000 pairs or 500,000 sentiment texts; an even sample of a larger
one). The encoding pass then measures every training row (`LengthHistogram`), which the
one-line summary and config.json report.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from attn.model.nn.config import ModelConfig

# The share of training sources (and of targets) a chosen length holds whole.
COVER = 0.99
# The longest length the choice may give a model of each preset.
PRESET_CAPS = {"tiny": 1024, "small": 1024, "base": 2048}
# A batch of batch_tokens holds at least this many rows of the chosen length.
ROWS_PER_BATCH = 4
# Lengths are chosen in multiples of this (kernels like round shapes).
MULTIPLE = 8
# Lengths up to this are counted one by one; longer ones together (their maximum is kept).
_HISTOGRAM_BINS = 1 << 16


def default_max_length() -> int:
    """`ModelConfig`'s own max_length: what a model gets when nothing is chosen."""
    return next(f.default for f in dataclasses.fields(ModelConfig) if f.name == "max_length")


def length_cap(preset: str, batch_tokens: int) -> int:
    """The longest length the choice may give: the preset's cap and the memory budget's,
    never below the default max_length."""
    memory = batch_tokens // ROWS_PER_BATCH // MULTIPLE * MULTIPLE
    return max(default_max_length(), min(PRESET_CAPS.get(preset, 1024), memory))


def covering_length(lengths: np.ndarray, cover: float = COVER) -> int:
    """The smallest length that at least `cover` of `lengths` fit in (0 for none)."""
    if len(lengths) == 0:
        return 0
    ordered = np.sort(np.asarray(lengths))
    return int(ordered[int(np.ceil(cover * len(ordered))) - 1])


def choose_max_length(sides: Sequence[np.ndarray], cap: int) -> int:
    """The max_length that holds `COVER` of each side's `lengths` (pieces, EOS included),
    rounded up to a multiple of `MULTIPLE`, between the default max_length and `cap`."""
    need = max((covering_length(lengths) for lengths in sides), default=0)
    rounded = -(-need // MULTIPLE) * MULTIPLE
    return max(default_max_length(), min(rounded, cap))


def choose_from_sample(tokenizer: Any, scan: Any, task: str, cap: int) -> int:
    """The max_length chosen from the tokenizer's sample of the training rows
    (`attn.data.scan.Scan`: its sources, then for seq2seq its targets)."""
    sides = [sample_lengths(tokenizer, scan.sample[: scan.sampled_sources])]
    if task != "sentiment":
        sides.append(sample_lengths(tokenizer, scan.sample[scan.sampled_sources :]))
    return choose_max_length(sides, cap)


def sample_lengths(tokenizer: Any, texts: Sequence[str], chunk: int = 10_000) -> np.ndarray:
    """The length in pieces (EOS included) of each text, uncut."""
    out = [
        tokenizer.encode_flat(texts[i : i + chunk], max_length=1 << 30)[3]
        for i in range(0, len(texts), chunk)
    ]
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int32)


class LengthHistogram:
    """The lengths of one side of a corpus, counted chunk by chunk (memory: 64k counters)."""

    def __init__(self) -> None:
        self.counts = np.zeros(_HISTOGRAM_BINS + 1, dtype=np.int64)
        self.longest = 0

    def add(self, lengths: np.ndarray) -> None:
        if len(lengths) == 0:
            return
        self.counts += np.bincount(
            np.minimum(lengths, _HISTOGRAM_BINS), minlength=_HISTOGRAM_BINS + 1
        )
        self.longest = max(self.longest, int(lengths.max()))

    def quantile(self, q: float) -> int:
        """The smallest length that at least `q` of the rows fit in (the last bin: longest)."""
        total = int(self.counts.sum())
        if not total:
            return 0
        at = int(np.searchsorted(np.cumsum(self.counts), int(np.ceil(q * total))))
        return at if at < _HISTOGRAM_BINS else self.longest

    def summary(self, max_length: int) -> dict[str, int]:
        """median, p99, max and how many rows are longer than `max_length` ("over")."""
        over = int(self.counts[max_length + 1 :].sum()) if max_length < _HISTOGRAM_BINS else 0
        return {
            "median": self.quantile(0.5),
            "p99": self.quantile(0.99),
            "max": self.longest,
            "over": over,
        }
