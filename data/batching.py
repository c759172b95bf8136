"""Batching: token-budget batches with length bucketing (training) and sorted chunks
(inference)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from typing import TYPE_CHECKING, Any, TypeVar, overload

if TYPE_CHECKING:  # numpy is imported where batches are made: `attn --help` stays quick
    import numpy as np

T = TypeVar("T")
R = TypeVar("R")


class Batches(Sequence):
    """Batches of example indices, stored flat (numpy) rather than as lists of Python ints.

    Batch `b` is `order[starts[b]:ends[b]]`; a slice is a `Batches` of the same `order` (no
    copy of the indices). Compares equal to a list of lists with the same indices.
    """

    def __init__(self, order: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> None:
        self.order, self.starts, self.ends = order, starts, ends

    def __len__(self) -> int:
        return len(self.starts)

    @overload
    def __getitem__(self, key: int) -> np.ndarray: ...

    @overload
    def __getitem__(self, key: slice) -> Batches: ...

    def __getitem__(self, key: int | slice) -> np.ndarray | Batches:
        if isinstance(key, slice):
            return Batches(self.order, self.starts[key], self.ends[key])
        return self.order[self.starts[key] : self.ends[key]]

    def __iter__(self) -> Iterator[np.ndarray]:
        for start, end in zip(self.starts.tolist(), self.ends.tolist(), strict=True):
            yield self.order[start:end]

    def tolist(self) -> list[list[int]]:
        return [batch.tolist() for batch in self]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Batches):
            other = other.tolist()
        if not isinstance(other, Sequence):
            return NotImplemented
        return self.tolist() == [list(batch) for batch in other]

    __hash__ = None  # type: ignore[assignment]


def token_batches(
    lengths: Sequence[int] | np.ndarray,
    max_tokens: int,
    *,
    shuffle: bool = True,
    seed: int = 0,
    window: int | None = None,
) -> Batches:
    """Group example indices into batches of at most ``max_tokens`` padded tokens.

    A batch satisfies ``len(batch) * max(lengths[i] for i in batch) <= max_tokens``, except
    that an example longer than ``max_tokens`` forms a batch of its own. Every index appears
    exactly once; nothing is dropped. Examples are sorted by length (stable) within windows of
    ``window`` examples so batches hold similar lengths (little padding); with ``shuffle``,
    the windows are filled in a seeded random order and the batch order is shuffled.

    Works on a numpy array of lengths (memory-mapped for a large corpus): the batches of 5M
    examples take well under a second and about 16 bytes per example.

    Args:
        lengths: a length per example (for pairs, the caller passes max(src, tgt)).
        max_tokens: the token budget per batch (padding included).
        shuffle: randomize (training); False keeps a fixed order (evaluation).
        seed: the seed for shuffling; the same seed gives the same batches.
        window: examples sorted together; default about 100 batches' worth (>= 1000).

    Returns:
        the batches, each an array of indices into ``lengths``.

    Raises:
        ValueError: ``max_tokens`` or ``window`` below 1, or a negative length.
    """
    import numpy as np

    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
    sizes = np.asarray(lengths, dtype=np.int64).reshape(-1)
    if sizes.size and int(sizes.min()) < 0:
        raise ValueError("lengths must not be negative")
    if window is None:
        mean = max(1, int(sizes.sum()) // max(1, sizes.size))
        window = max(1000, 100 * max_tokens // mean)
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    permutation = _Permutations(seed, sizes.size)
    order = permutation(sizes.size) if shuffle else np.arange(sizes.size)
    starts: list[np.ndarray] = []
    for first in range(0, sizes.size, window):
        part = order[first : first + window]
        part = part[np.argsort(sizes[part], kind="stable")]
        order[first : first + window] = part
        # An empty example still occupies a position (at least an EOS in practice).
        starts.append(first + _batch_starts(np.maximum(sizes[part], 1), max_tokens))
    begin = np.concatenate(starts) if starts else np.zeros(0, dtype=np.int64)
    end = np.append(begin[1:], sizes.size)[: begin.size]
    if shuffle:
        permuted = permutation(begin.size)
        begin, end = begin[permuted], end[permuted]
    return Batches(order, begin, end)


# Up to this many examples, batches are shuffled with Python's random.Random (the batches attn
# has always made for a seed, about a second for 1M examples); beyond, with numpy's PCG64,
# 50 times faster and without a Python int per example.
PYTHON_SHUFFLE_MAX = 1_000_000


class _Permutations:
    """Seeded random permutations of range(n), one after the other from one generator."""

    def __init__(self, seed: int, examples: int) -> None:
        import numpy as np

        self.python = examples <= PYTHON_SHUFFLE_MAX
        self.rng: Any = (
            random.Random(seed) if self.python else np.random.Generator(np.random.PCG64(seed))
        )

    def __call__(self, n: int) -> np.ndarray:
        import numpy as np

        if not self.python:
            return self.rng.permutation(n)
        order = list(range(n))
        self.rng.shuffle(order)
        return np.asarray(order, dtype=np.int64)


def _batch_starts(sorted_sizes: np.ndarray, max_tokens: int) -> np.ndarray:
    """Where each batch of a length-sorted window starts: greedily, a batch takes examples
    while (count) x (the last, longest one) stays within `max_tokens`.

    Position p fits in a batch that starts at s when (p - s + 1) * size[p] <= max_tokens,
    i.e. s >= p + 1 - max_tokens // size[p] =: reach[p]; sizes ascend, so reach strictly
    ascends and each batch ends where a binary search says.
    """
    import numpy as np

    reach = np.arange(1, sorted_sizes.size + 1) - max_tokens // sorted_sizes
    found = []
    start = 0
    while start < sorted_sizes.size:
        found.append(start)
        # At least one example: an over-long one makes a batch of its own.
        start = max(start + 1, int(np.searchsorted(reach, start, side="right")))
    return np.asarray(found, dtype=np.int64)


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
