"""The second pass over a training corpus: encode its training rows into a prepared directory.

The rows stream in chunks to worker processes (one per core), each of which encodes a
chunk with SentencePiece's batched encoding and returns flat numpy arrays; the parent
appends them, in order, to the arrays of `attn.data.prepared`. Memory: a few chunks, never
the corpus. The held-out validation rows are collected as text (at most a few thousand).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from attn.data.prepared import ArrayWriter
from attn.data.progress import StageProgress
from attn.data.scan import TRAIN, VAL, Scan
from attn.data.task_files import Example, TaskFiles
from attn.model.training.lengths import LengthHistogram

# Rows per chunk sent to a worker: large enough that pickling is cheap beside encoding.
_CHUNK = 8192
# Below this many rows the parent encodes alone: starting workers would cost more.
_POOL_ROWS = 50_000
# A translation pair whose longer side has more than this many times the pieces of the
# shorter is skipped as misaligned (Moses' clean-corpus-n uses the same ratio on words).
MAX_RATIO = 9


@dataclass(frozen=True)
class Encoding:
    """How rows become ids: the tokenizer (pickled for workers that are not forked), the
    task and the model's cuts."""

    tokenizer: Any
    task: str
    max_length: int
    keep: str
    labels: tuple[str, ...] = ()


@dataclass
class Counts:
    """What the encoding pass did, for the manifest and the summary."""

    pairs: int = 0
    src_tokens: int = 0
    tgt_tokens: int = 0
    src_cut: int = 0
    tgt_cut: int = 0
    ratio_skipped: int = 0
    synthetic: int = 0  # of the pairs, those from the synthetic files
    val: list[Example] = field(default_factory=list)
    # The lengths in pieces before the cut, of the sources and (seq2seq) the targets.
    src_lengths: LengthHistogram = field(default_factory=LengthHistogram)
    tgt_lengths: LengthHistogram = field(default_factory=LengthHistogram)


class _Writers:
    """The arrays of a prepared training split, appended chunk by chunk."""

    def __init__(self, directory: Path, encoding: Encoding, vocab_size: int) -> None:
        ids = np.uint16 if vocab_size <= 1 << 16 else np.int32
        sides = ("src",) if encoding.task == "sentiment" else ("src", "tgt")
        self.arrays: dict[str, ArrayWriter] = {}
        for side in sides:
            self.arrays[f"{side}_tokens"] = ArrayWriter(directory, f"{side}_tokens", ids)
            self.arrays[f"{side}_offsets"] = ArrayWriter(directory, f"{side}_offsets", np.int64)
            self.arrays[f"{side}_lengths"] = ArrayWriter(directory, f"{side}_lengths", np.int32)
            self.arrays[f"{side}_offsets"].append(np.zeros(1, dtype=np.int64))
        self.arrays["lengths"] = ArrayWriter(directory, "lengths", np.int32)
        if encoding.task == "sentiment":
            self.arrays["labels"] = ArrayWriter(directory, "labels", np.int16)
        self.ends = dict.fromkeys(sides, 0)

    def add(self, result: dict[str, np.ndarray]) -> None:
        for side in self.ends:
            lengths = result[f"{side}_lengths"]
            offsets = self.ends[side] + np.cumsum(lengths, dtype=np.int64)
            self.arrays[f"{side}_tokens"].append(result[f"{side}_tokens"])
            self.arrays[f"{side}_offsets"].append(offsets)
            self.arrays[f"{side}_lengths"].append(lengths)
            self.ends[side] = int(offsets[-1]) if len(offsets) else self.ends[side]
        longest = result["src_lengths"]
        if "tgt_lengths" in result:
            longest = np.maximum(longest, result["tgt_lengths"])
        self.arrays["lengths"].append(longest)
        if "labels" in result:
            self.arrays["labels"].append(result["labels"])

    def close(self) -> dict[str, Any]:
        return {name: writer.close() for name, writer in self.arrays.items()}


def encode_training_rows(
    files: TaskFiles,
    scan: Scan,
    encoding: Encoding,
    vocab_size: int,
    directory: Path,
    emit: Callable[[dict[str, Any]], None],
) -> tuple[dict[str, Any], Counts]:
    """Encode the rows of role TRAIN into `directory`'s arrays; collect the VAL rows.

    Returns the arrays' manifest entries and the counts.
    """
    counts = Counts()
    writers = _Writers(directory, encoding, vocab_size)
    progress = StageProgress(emit, "encoding", "pairs", total=scan.train)
    synthetic: list[bool] = []  # of each chunk, whether its rows are synthetic
    with _Encoder(encoding, scan.train) as encode:
        for i, result in enumerate(encode(_chunks(files, scan, counts.val, synthetic))):
            writers.add(result)
            counts.pairs += len(result["src_lengths"])
            counts.synthetic += len(result["src_lengths"]) if synthetic[i] else 0
            counts.src_tokens += int(result["src_lengths"].sum())
            counts.tgt_tokens += int(result.get("tgt_lengths", np.zeros(0)).sum())
            counts.src_cut += int(result["src_cut"])
            counts.tgt_cut += int(result.get("tgt_cut", 0))
            counts.ratio_skipped += int(result.get("ratio_skipped", 0))
            counts.src_lengths.add(result["src_uncut"])
            if "tgt_uncut" in result:
                counts.tgt_lengths.add(result["tgt_uncut"])
            progress.update(counts.pairs + counts.ratio_skipped)
    progress.finish()
    return writers.close(), counts


def _chunks(
    files: TaskFiles, scan: Scan, val: list[Example], synthetic: list[bool]
) -> Iterator[tuple[list[str], list[str]]]:
    """The training rows as chunks of (sources, targets); appends the VAL rows to `val`, and
    to `synthetic` whether each chunk yielded holds the synthetic rows (no chunk holds both)."""
    roles = scan.roles.tobytes()
    sources: list[str] = []
    targets: list[str] = []
    for row, (_, _, ex) in enumerate(files.examples("train", empty="keep")):
        if row == scan.real and sources:
            synthetic.append(False)
            yield sources, targets
            sources, targets = [], []
        role = roles[row]
        if role == TRAIN:
            sources.append(ex.src)
            targets.append(ex.tgt)
            if len(sources) == _CHUNK:
                synthetic.append(row >= scan.real)
                yield sources, targets
                sources, targets = [], []
        elif role == VAL:
            val.append(ex)
    if sources:
        synthetic.append(len(roles) > scan.real)
        yield sources, targets


class _Encoder:
    """`encode(chunks)` -> results in order: in worker processes for a large corpus."""

    def __init__(self, encoding: Encoding, rows: int) -> None:
        self.encoding = encoding
        self.workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
        self.pool: Any = None
        if rows >= _POOL_ROWS and self.workers > 1:
            # fork where there is one: the workers need no import; spawn elsewhere.
            method = "fork" if sys.platform.startswith("linux") else "spawn"
            context = multiprocessing.get_context(method)
            self.pool = context.Pool(self.workers, _start_worker, (encoding,))

    def __enter__(self) -> Callable[[Iterator[Any]], Iterator[dict[str, np.ndarray]]]:
        if self.pool is not None:
            return lambda chunks: self.pool.imap(_encode_chunk, chunks)
        _start_worker(self.encoding)
        return lambda chunks: map(_encode_chunk, chunks)

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.terminate() if exc[0] is not None else self.pool.close()
            self.pool.join()


_worker: dict[str, Any] = {}


def _start_worker(encoding: Encoding) -> None:
    _worker["encoding"] = encoding
    _worker["tokenizer"] = encoding.tokenizer


def _encode_chunk(chunk: tuple[list[str], list[str]]) -> dict[str, np.ndarray]:
    """Encode one chunk of rows (in a worker): flat ids and lengths per side, the cuts and,
    for translation, the pairs skipped for their length ratio."""
    encoding: Encoding = _worker["encoding"]
    tokenizer = _worker["tokenizer"]
    sources, targets = chunk
    n = encoding.max_length
    src, src_lengths, src_cut, src_uncut = tokenizer.encode_flat(
        sources, max_length=n, keep=encoding.keep
    )
    result = {
        "src_tokens": src,
        "src_lengths": src_lengths,
        "src_cut": np.int64(src_cut),
        "src_uncut": src_uncut,
    }
    if encoding.task == "sentiment":
        index = {label: i for i, label in enumerate(encoding.labels)}
        result["labels"] = np.fromiter(map(index.__getitem__, targets), np.int16, len(targets))
        return result
    tgt, tgt_lengths, tgt_cut, tgt_uncut = tokenizer.target.encode_flat(targets, max_length=n)
    result.update(
        tgt_tokens=tgt, tgt_lengths=tgt_lengths, tgt_cut=np.int64(tgt_cut), tgt_uncut=tgt_uncut
    )
    if encoding.task == "translate":
        longer = np.maximum(src_lengths, tgt_lengths)
        misaligned = longer > MAX_RATIO * np.minimum(src_lengths, tgt_lengths)
        if misaligned.any():
            result = _without(result, ~misaligned)
        result["ratio_skipped"] = np.int64(misaligned.sum())
    return result


def _without(result: dict[str, Any], kept: np.ndarray) -> dict[str, Any]:
    """The chunk's pairs where `kept`, (cut counts stay those of the whole chunk)."""
    out = dict(result)
    for side in ("src", "tgt"):
        lengths = result[f"{side}_lengths"]
        out[f"{side}_tokens"] = result[f"{side}_tokens"][np.repeat(kept, lengths)]
        out[f"{side}_lengths"] = lengths[kept]
        out[f"{side}_uncut"] = result[f"{side}_uncut"][kept]
    return out
