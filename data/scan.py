"""The first pass over a training corpus, streaming: what preparing it needs to know before a
tokenizer exists.

One read of the files decides the role of every row (training, held-out validation, or
dropped: an empty side, or an exact duplicate with `dedup`), collects the sentiment labels
and keeps a seeded reservoir sample of the texts for training the tokenizer. Memory: one byte
per row, eight more with `dedup`, and the sample; never the corpus. Bad rows stop it with the
file and line (`DataError`).
"""

from __future__ import annotations

import random
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from attn.data.progress import StageProgress
from attn.data.readers import DataError
from attn.data.task_files import Example, TaskFiles, check_val_label, held_out, training_labels

# The role of a row of the training files.
DROPPED, TRAIN, VAL = 0, 1, 2


@dataclass
class Scan:
    """What the first pass found.

    roles: (rows,) uint8, the role of each row (DROPPED, TRAIN or VAL).
    sample: texts to train the tokenizer on: the sampled sources, then the sampled targets
        (sentiment: sources only), each in file order; all of them when the corpus holds
        fewer than the sample size, as the tokenizer was always trained.
    real: how many rows the real training files hold: the synthetic files' rows come after
        them (none is held out for validation).
    sampled_sources: how many texts of `sample` are sources (the rest are targets).
    """

    roles: np.ndarray
    empty: int
    duplicates: int
    labels: list[str] | None
    sample: list[str]
    val_from_train: bool
    seconds: float
    real: int
    sampled_sources: int

    @property
    def rows(self) -> int:
        return len(self.roles)

    @property
    def train(self) -> int:
        return int(np.count_nonzero(self.roles == TRAIN))


class _Reservoir:
    """A seeded reservoir sample of at most `size` (row, text) items, in row order."""

    def __init__(self, size: int, rng: random.Random) -> None:
        self.size, self.rng, self.seen = size, rng, 0
        self.items: list[tuple[int, str]] = []

    def add(self, row: int, text: str) -> None:
        self.seen += 1
        if len(self.items) < self.size:
            self.items.append((row, text))
        else:
            j = self.rng.randrange(self.seen)
            if j < self.size:
                self.items[j] = (row, text)

    def texts(self, keep: Callable[[int], bool]) -> list[str]:
        return [text for row, text in sorted(self.items, key=lambda item: item[0]) if keep(row)]


def scan_training_data(
    files: TaskFiles,
    *,
    dedup: bool,
    sample_size: int,
    seed: int,
    emit: Callable[[dict[str, Any]], None],
    val_fraction: float = 0.05,
    max_val: int = 2000,
) -> Scan:
    """Read the training files once (see the module's docstring).

    Without validation files, a seeded `val_fraction` of the kept rows (at most `max_val`)
    is held out for validation, the same rows `attn.data.load_task_data` holds out.

    Raises:
        DataError: unreadable files or bad rows (file:line), no training example, or fewer
            than two sentiment labels.
    """
    sentiment = files.task == "sentiment"
    rng = random.Random(seed)
    sources = _Reservoir(sample_size if sentiment else sample_size // 2, rng)
    targets = _Reservoir(sample_size // 2, rng)
    roles, hashes = bytearray(), array("q")
    labels: set[str] = set()
    total_bytes = sum(Path(f).stat().st_size for f in files.train) or 1
    chars, empty, real = 0, 0, 0
    synthetic = set(files.synthetic)
    total_bytes += sum(Path(f).stat().st_size for f in files.synthetic)
    progress = StageProgress(emit, "reading the training data", "rows")
    for row, (path, _, ex) in enumerate(files.examples("train", empty="keep")):
        if path not in synthetic:
            real = row + 1
        chars += len(ex.src) + len(ex.tgt) + 2
        if not ex.src.strip() or not ex.tgt.strip():
            roles.append(DROPPED)
            empty += 1
            if dedup:
                hashes.append(0)
        else:
            roles.append(TRAIN)
            if dedup:
                hashes.append(hash((ex.src, ex.tgt)))
            if sentiment:
                labels.add(ex.tgt)
            else:
                targets.add(row, ex.tgt)
            sources.add(row, ex.src)
        if row % 4096 == 0:
            progress.update(row + 1, fraction=min(1.0, chars / total_bytes))
    seconds = progress.finish(len(roles))
    role = np.frombuffer(bytes(roles), dtype=np.uint8).copy()
    duplicates = _drop_duplicates(role, np.frombuffer(hashes, dtype=np.int64)) if dedup else 0
    names = ", ".join(str(f) for f in files.train)
    if not np.any(role == TRAIN):
        raise DataError(names, "no training examples")
    sorted_labels = training_labels(labels, files.train) if sentiment else None
    # Validation holds real pairs only: the held-out rows are chosen among the real ones.
    val_from_train = not files.val and _hold_out(role[:real], val_fraction, max_val, seed)

    def keep(row: int) -> bool:
        return bool(role[row] == TRAIN)

    sample = sources.texts(keep)
    n_sources = len(sample)
    sample += [] if sentiment else targets.texts(keep)
    return Scan(
        role, empty, duplicates, sorted_labels, sample, val_from_train, seconds, real, n_sources
    )


def read_validation(files: TaskFiles, labels: list[str] | None) -> tuple[list[Example], int]:
    """The validation files' examples, and how many rows were dropped for an empty side.

    Raises:
        DataError: bad rows, or a sentiment label that the training data lacks (file:line).
    """
    examples, empty = [], 0
    for path, line, ex in files.examples("val", empty="keep"):
        if not ex.src.strip() or not ex.tgt.strip():
            empty += 1
            continue
        check_val_label(path, line, ex.tgt, labels)
        examples.append(ex)
    return examples, empty


def _drop_duplicates(roles: np.ndarray, hashes: np.ndarray) -> int:
    """Mark every kept row whose (source, target) a kept row before it had as DROPPED."""
    kept = np.flatnonzero(roles == TRAIN)
    _, first = np.unique(hashes[kept], return_index=True)
    repeated = np.ones(len(kept), dtype=bool)
    repeated[first] = False
    roles[kept[repeated]] = DROPPED
    return int(repeated.sum())


def _hold_out(roles: np.ndarray, fraction: float, max_val: int, seed: int) -> bool:
    """Hold out the kept rows that load_task_data would hold out (`held_out`) for validation."""
    kept = np.flatnonzero(roles == TRAIN)
    held = held_out(len(kept), fraction, max_val, seed)
    roles[kept[np.asarray(held, dtype=np.int64)]] = VAL
    return bool(held)
