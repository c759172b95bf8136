"""Batching: token budgets, every example once, determinism, inference order restored."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attn.data import restore_order, sorted_chunks, token_batches

lengths_st = st.lists(st.integers(min_value=0, max_value=300), max_size=400)


@settings(max_examples=200, deadline=None)
@given(
    lengths=lengths_st,
    max_tokens=st.integers(min_value=1, max_value=2000),
    shuffle=st.booleans(),
    seed=st.integers(0, 2**32),
    window=st.one_of(st.none(), st.integers(1, 500)),
)
def test_token_batches_properties(
    lengths: list[int], max_tokens: int, shuffle: bool, seed: int, window: int | None
) -> None:
    batches = token_batches(lengths, max_tokens, shuffle=shuffle, seed=seed, window=window)
    flat = [i for batch in batches for i in batch]
    assert sorted(flat) == list(range(len(lengths)))  # every example exactly once
    for batch in batches:
        assert len(batch)
        padded = len(batch) * max(max(1, lengths[i]) for i in batch)
        assert padded <= max_tokens or len(batch) == 1  # only a lone over-long example
    again = token_batches(lengths, max_tokens, shuffle=shuffle, seed=seed, window=window)
    assert again == batches


def test_token_batches_bucket_by_length() -> None:
    lengths = [5, 50, 6, 48, 4, 52, 7, 49]
    batches = token_batches(lengths, 110, shuffle=False, window=8)
    assert batches == [[4, 0, 2, 6], [3, 7], [1, 5]]


def test_token_batches_over_long_example_alone() -> None:
    assert token_batches([3, 500, 3], 100, shuffle=False) == [[0, 2], [1]]


def test_token_batches_seed_changes_order() -> None:
    lengths = [i % 37 + 1 for i in range(1000)]
    a = token_batches(lengths, 200, seed=0)
    b = token_batches(lengths, 200, seed=1)
    assert a != b


def test_token_batches_bad_arguments() -> None:
    with pytest.raises(ValueError, match="max_tokens must be at least 1"):
        token_batches([1], 0)
    with pytest.raises(ValueError, match="lengths must not be negative"):
        token_batches([-1], 10)


@settings(max_examples=200, deadline=None)
@given(items=st.lists(st.text(max_size=20), max_size=100), chunk_size=st.integers(1, 30))
def test_sorted_chunks_restore_input_order(items: list[str], chunk_size: int) -> None:
    restored: list[str] = []
    consumed = iter(items)
    for chunk, order in sorted_chunks(consumed, chunk_size, key=len):
        assert len(chunk) <= chunk_size
        assert [len(s) for s in chunk] == sorted(len(s) for s in chunk)
        results = [s.upper() for s in chunk]  # stands in for model outputs
        restored.extend(restore_order(results, order))
    assert restored == [s.upper() for s in items]


def test_sorted_chunks_streams() -> None:
    pulled: list[int] = []

    def source():
        for i in range(10):
            pulled.append(i)
            yield i

    chunks = sorted_chunks(source(), 4, key=lambda i: -i)
    first, order = next(chunks)
    assert first == [3, 2, 1, 0] and order == [3, 2, 1, 0]
    assert len(pulled) == 4  # nothing read beyond the first chunk


def test_restore_order_length_mismatch() -> None:
    with pytest.raises(ValueError, match="got 1 results for 2 items"):
        restore_order(["a"], [1, 0])


def test_token_batches_of_a_large_corpus_use_numpy_and_keep_every_property(monkeypatch) -> None:
    """Beyond PYTHON_SHUFFLE_MAX examples the shuffle is numpy's: the same guarantees."""
    import numpy as np

    import attn.data.batching as batching

    lengths = np.array([i % 37 + 1 for i in range(5000)], dtype=np.int32)
    python = token_batches(lengths, 200, seed=4)
    monkeypatch.setattr(batching, "PYTHON_SHUFFLE_MAX", 1000)
    batches = token_batches(lengths, 200, seed=4)
    assert batches == token_batches(lengths, 200, seed=4) and batches != python
    assert sorted(np.concatenate(list(batches)).tolist()) == list(range(5000))
    assert all(len(b) * int(lengths[b].max()) <= 200 for b in batches)
    assert batches[1:3] == [batches[1].tolist(), batches[2].tolist()]
