"""Batching: token-budget batches with length bucketing (training) and sorted chunks
(inference)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def token_batches(
    lengths: Sequence[int],
    max_tokens: int,
    *,
    shuffle: bool = True,
    seed: int = 0,
    window: int | None = None,
) -> list[list[int]]:
    """Group example indices into batches of at most ``max_tokens`` padded tokens.

    A batch satisfies ``len(batch) * max(lengths[i] for i in batch) <= max_tokens``, except
    that an example longer than ``max_tokens`` forms a batch of its own. Every index appears
    exactly once; nothing is dropped. Examples are sorted by length within windows of
    ``window`` examples so batches hold similar lengths (little padding); with ``shuffle``,
    the windows are filled in a seeded random order and the batch order is shuffled.

    Args:
        lengths: a length per example (for pairs, the caller passes max(src, tgt)).
        max_tokens: the token budget per batch (padding included).
        shuffle: randomize (training); False keeps a fixed order (evaluation).
        seed: the seed for shuffling; the same seed gives the same batches.
        window: examples sorted together; default about 100 batches' worth (>= 1000).

    Returns:
        the batches, each a list of indices into ``lengths``.

    Raises:
        ValueError: ``max_tokens`` or ``window`` below 1, or a negative length.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
    if any(n < 0 for n in lengths):
        raise ValueError("lengths must not be negative")
    if window is None:
        mean = max(1, sum(lengths) // max(1, len(lengths)))
        window = max(1000, 100 * max_tokens // mean)
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    if shuffle:
        rng.shuffle(order)
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        bucket = sorted(order[start : start + window], key=lambda i: lengths[i])
        batch: list[int] = []
        longest = 0
        for i in bucket:
            # An empty example still occupies a position (at least an EOS in practice).
            n = max(1, lengths[i])
            if batch and (len(batch) + 1) * max(longest, n) > max_tokens:
                batches.append(batch)
                batch, longest = [], 0
            batch.append(i)
            longest = max(longest, n)
        if batch:
            batches.append(batch)
    if shuffle:
        rng.shuffle(batches)
    return batches


def sorted_chunks(
    items: Iterable[T], chunk_size: int, key: Callable[[T], int]
) -> Iterator[tuple[list[T], list[int]]]:
    """Read ``items`` ``chunk_size`` at a time and yield each chunk sorted by ``key``.

    For inference: sorting by length puts similar lengths in a batch. Yields
    ``(sorted_chunk, order)`` where ``sorted_chunk[k] == chunk[order[k]]``; pass the
    results and ``order`` to :func:`restore_order` to get them back in input order.
    Only one chunk is held in memory.

    Raises:
        ValueError: ``chunk_size`` below 1.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    iterator = iter(items)
    while chunk := list(islice(iterator, chunk_size)):
        order = sorted(range(len(chunk)), key=lambda i: key(chunk[i]))
        yield [chunk[i] for i in order], order


def restore_order(sorted_results: Sequence[R], order: Sequence[int]) -> list[R]:
    """Undo :func:`sorted_chunks`' sort: ``result[order[k]] = sorted_results[k]``.

    Raises:
        ValueError: the lengths differ.
    """
    if len(sorted_results) != len(order):
        raise ValueError(f"got {len(sorted_results)} results for {len(order)} items")
    restored: list[R] = [None] * len(order)  # type: ignore[list-item]
    for result, position in zip(sorted_results, order, strict=True):
        restored[position] = result
    return restored
