"""The encoded data: token ids stored flat, padded batches of them, each epoch's batch order.

Batches hold about `batch_tokens` padded tokens, length-bucketed (`attn.data.token_batches`);
epoch `e` uses the seed `seed * 100_003 + e`, so the batch order of any epoch is known without
replaying earlier ones, and resuming needs only (epoch, position).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any, NamedTuple

import torch
from torch import Tensor

from attn.model.nn.config import ModelConfig


class Sequences:
    """Token id sequences stored flat (one int32 tensor plus offsets), batched by gather."""

    def __init__(self, chunks: Iterator[list[list[int]]]) -> None:
        flats, lengths = [], []
        for seqs in chunks:
            lengths.extend(len(s) for s in seqs)
            flats.append(torch.tensor(list(chain.from_iterable(seqs)), dtype=torch.int32))
        self.lengths = lengths
        self.flat = torch.cat(flats) if flats else torch.zeros(0, dtype=torch.int32)
        starts = torch.tensor([0, *lengths[:-1]], dtype=torch.long).cumsum(0)
        self.offsets = starts[: len(lengths)]

    def __len__(self) -> int:
        return len(self.lengths)

    def batch(self, index: Sequence[int], pad_id: int, multiple: int = 1, cap: int = 0) -> Tensor:
        """The sequences at `index`, padded. Shape: (B, T), T the longest of them, rounded up
        to a multiple of `multiple` where that stays within `cap`."""
        idx = torch.tensor(index, dtype=torch.long)
        lengths = torch.tensor([self.lengths[i] for i in index], dtype=torch.long)  # (B,)
        longest = int(lengths.max())
        pos = torch.arange(max(longest, min(-(-longest // multiple) * multiple, cap)))  # (T,)
        gather = (self.offsets[idx, None] + pos).clamp_(max=max(0, len(self.flat) - 1))  # (B, T)
        ids = self.flat[gather].long()
        return ids.masked_fill_(pos >= lengths[:, None], pad_id)


def encode(tokenizer: Any, texts: Sequence[str], max_length: int, keep: str = "head") -> Sequences:
    """`texts` as token ids, cut to `max_length` pieces (`keep`: which ones stay)."""
    chunk = 10_000
    return Sequences(
        tokenizer.encode(texts[i : i + chunk], max_length=max_length, keep=keep)[0]
        for i in range(0, len(texts), chunk)
    )


class Batch(NamedTuple):
    """A batch on the device. Shapes: src (B, S); tgt_in and target (B, T), or for sentiment
    an empty tgt_in and the class ids as target (B,). n_src/n_tgt: real (unpadded) tokens;
    for sentiment n_tgt counts the examples."""

    src: Tensor
    tgt_in: Tensor
    target: Tensor
    n_src: int
    n_tgt: int


@dataclass
class Split:
    """One encoded split: the sources, and the targets (seq2seq) or class ids (sentiment).

    `lengths`: per example, the longer of source and target, the size batching goes by.
    """

    src: Sequences
    lengths: list[int]
    tgt: Sequences | None = None
    labels: Tensor | None = None

    @classmethod
    def encode(cls, tokenizer: Any, examples: Sequence[Any], config: ModelConfig) -> Split:
        """Encode `examples` (with `.src` and `.tgt`) for a model of `config`."""
        n = config.max_length
        src = encode(tokenizer, [ex.src for ex in examples], n, config.keep)
        if config.task == "sentiment":
            index = {label: i for i, label in enumerate(config.labels)}
            labels = torch.tensor([index[ex.tgt] for ex in examples])
            return cls(src, list(src.lengths), labels=labels)
        tgt = encode(tokenizer, [ex.tgt for ex in examples], n)
        lengths = [max(a, b) for a, b in zip(src.lengths, tgt.lengths, strict=True)]
        return cls(src, lengths, tgt=tgt)

    def batch(self, index: Sequence[int], config: ModelConfig, device: torch.device) -> Batch:
        """The examples at `index` as a padded batch on `device`."""
        pad = config.pad_id
        # On a GPU: lengths in multiples of 8 (fewer distinct shapes for the kernels to be
        # chosen and tuned for, tensor-core friendly), copies from pinned memory that do
        # not wait for the GPU.
        cuda = device.type == "cuda"
        multiple, cap = (8 if cuda else 1), config.max_length

        def dev(t: Tensor) -> Tensor:
            return (t.pin_memory() if cuda else t).to(device, non_blocking=True)

        src = self.src.batch(index, pad, multiple, cap)  # (B, S)
        n_src = sum(self.src.lengths[i] for i in index)
        if self.tgt is None:
            assert self.labels is not None
            empty = torch.zeros(0, dtype=torch.long)
            return Batch(dev(src), empty, dev(self.labels[list(index)]), n_src, len(index))
        target = self.tgt.batch(index, pad, multiple, cap)  # (B, T): pieces then EOS
        # Teacher forcing: the decoder reads BOS + target[:-1] (EOS never as input).
        tgt_in = torch.cat([torch.full_like(target[:, :1], config.bos_id), target[:, :-1]], 1)
        tgt_in.masked_fill_(tgt_in == config.eos_id, pad)
        n_tgt = sum(self.tgt.lengths[i] for i in index)
        return Batch(dev(src), dev(tgt_in), dev(target), n_src, n_tgt)


def token_batches(lengths: Sequence[int], max_tokens: int, seed: int | None) -> list[list[int]]:
    """Length-bucketed batches of about `max_tokens` padded tokens; shuffled when seeded."""
    from attn.data import token_batches as batches

    if seed is None:
        return batches(lengths, max_tokens, shuffle=False)
    return batches(lengths, max_tokens, shuffle=True, seed=seed)


def epoch_batches(
    lengths: Sequence[int], max_tokens: int, seed: int, epoch: int, rank: int, world: int
) -> list[list[int]]:
    """Rank `rank`'s batches of `epoch`: every world-th of one seeded list, equal counts."""
    batches = token_batches(lengths, max_tokens, seed * 100_003 + epoch)
    usable = len(batches) // world * world
    return batches[rank:usable:world]
