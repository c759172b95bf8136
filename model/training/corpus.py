"""The encoded data: token ids stored flat, padded batches of them, each epoch's batch order.

Batches hold about `batch_tokens` padded tokens, length-bucketed (`attn.data.token_batches`);
epoch `e` uses the seed `seed * 100_003 + e`, so the batch order of any epoch is known without
replaying earlier ones, and resuming needs only (epoch, position).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from attn.model.nn.config import ModelConfig

if TYPE_CHECKING:
    from attn.data.batching import Batches
    from attn.data.prepared import FileArray


class Sequences:
    """Token id sequences stored flat (one array of ids plus offsets), batched by gather.

    The arrays are numpy in memory for a small split; for the training data, the ids and
    offsets are read by position from a prepared directory (`attn.data.prepared.FileArray`)
    and the lengths memory-mapped, so a batch reads only its rows.
    flat: (N,) ids; offsets: (n + 1,) int64, sequence i is flat[offsets[i]:offsets[i + 1]];
    lengths: (n,) int32.
    """

    def __init__(
        self,
        flat: np.ndarray | FileArray,
        offsets: np.ndarray | FileArray,
        lengths: np.ndarray,
    ) -> None:
        self.flat, self.offsets, self.lengths = flat, offsets, lengths

    @classmethod
    def from_lists(cls, chunks: Iterator[list[list[int]]]) -> Sequences:
        """Sequences from chunks of id lists (a small split, encoded in memory)."""
        flats, lengths = [], []
        for seqs in chunks:
            lengths.extend(len(s) for s in seqs)
            flats.append(np.fromiter(chain.from_iterable(seqs), dtype=np.int32))
        flat = np.concatenate(flats) if flats else np.zeros(0, dtype=np.int32)
        sizes = np.asarray(lengths, dtype=np.int32)
        offsets = np.zeros(len(sizes) + 1, dtype=np.int64)
        np.cumsum(sizes, out=offsets[1:])
        return cls(flat, offsets, sizes)

    def __len__(self) -> int:
        return len(self.lengths)

    def batch(
        self,
        index: Sequence[int],
        pad_id: int,
        multiple: int = 1,
        cap: int = 0,
        resegment: Callable[[list[list[int]]], list[list[int]]] | None = None,
    ) -> Tensor:
        """The sequences at `index`, padded. Shape: (B, T), T the longest of them, rounded up
        to a multiple of `multiple` where that stays within `cap`. `resegment` replaces the
        rows' ids (subword sampling) before they are padded."""
        idx = np.asarray(index, dtype=np.int64)
        lengths = self.lengths[idx].astype(np.int64)  # (B,)
        starts = np.asarray(self.offsets[idx], dtype=np.int64)  # (B,)
        if isinstance(self.flat, np.ndarray):
            firsts = np.cumsum(lengths) - lengths  # where each row's run begins in `values`
            within = np.arange(int(lengths.sum())) - np.repeat(firsts, lengths)
            values = self.flat[np.repeat(starts, lengths) + within]
        else:  # a prepared array, read by position (attn.data.prepared.FileArray)
            values = self.flat.runs(starts, lengths)
        if resegment is not None:
            rows = resegment([r.tolist() for r in np.split(values, np.cumsum(lengths)[:-1])])
            lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
            values = np.fromiter(chain.from_iterable(rows), dtype=np.int64, count=lengths.sum())
        longest = int(lengths.max())
        pos = np.arange(max(longest, min(-(-longest // multiple) * multiple, cap)))  # (T,)
        ids = np.full((len(idx), len(pos)), pad_id, dtype=np.int64)  # (B, T)
        ids[pos < lengths[:, None]] = values  # row by row, as the runs are concatenated
        return torch.from_numpy(ids)


def encode(tokenizer: Any, texts: Sequence[str], max_length: int, keep: str = "head") -> Sequences:
    """`texts` as token ids, cut to `max_length` pieces (`keep`: which ones stay)."""
    chunk = 10_000
    return Sequences.from_lists(
        tokenizer.encode(texts[i : i + chunk], max_length=max_length, keep=keep)[0]
        for i in range(0, len(texts), chunk)
    )


@dataclass(frozen=True)
class SubwordSampling:
    """`--subword-alpha`: each training batch's rows are segmented anew, sampled with
    smoothing `alpha` (`Tokenizer.resample`). Draw `d` of a run seeded `seed` always samples
    the same segmentations, so a resumed run goes on as an uninterrupted one would."""

    tokenizer: Any
    alpha: float
    seed: int

    def resegment(
        self, tokenizer: Any, draw: int, side: int, max_length: int, keep: str
    ) -> Callable[[list[list[int]]], list[list[int]]]:
        """The function that segments anew one side (0 source, 1 target) of draw `draw`."""
        seed = (self.seed * 1_000_003 + draw * 2 + side) % (1 << 32)

        def resegment(rows: list[list[int]]) -> list[list[int]]:
            return tokenizer.resample(
                rows, alpha=self.alpha, seed=seed, max_length=max_length, keep=keep
            )

        return resegment


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
    lengths: np.ndarray
    tgt: Sequences | None = None
    labels: np.ndarray | None = None
    sampling: SubwordSampling | None = None

    @classmethod
    def encode(cls, tokenizer: Any, examples: Sequence[Any], config: ModelConfig) -> Split:
        """Encode `examples` (with `.src` and `.tgt`) for a model of `config`."""
        n = config.max_length
        src = encode(tokenizer, [ex.src for ex in examples], n, config.keep)
        if config.task == "sentiment":
            index = {label: i for i, label in enumerate(config.labels)}
            labels = np.asarray([index[ex.tgt] for ex in examples], dtype=np.int64)
            return cls(src, src.lengths, labels=labels)
        tgt = encode(tokenizer.target, [ex.tgt for ex in examples], n)
        return cls(src, np.maximum(src.lengths, tgt.lengths), tgt=tgt)

    @classmethod
    def open(cls, prepared: Any) -> Split:
        """The training split of a prepared directory (`attn.data.prepared.PreparedData`),
        read in place."""

        def sequences(side: str) -> Sequences:
            return Sequences(
                prepared.reader(f"{side}_tokens"),
                prepared.reader(f"{side}_offsets"),
                prepared.array(f"{side}_lengths"),
            )

        if "labels" in prepared.manifest["arrays"]:
            return cls(sequences("src"), prepared.array("lengths"), labels=prepared.array("labels"))
        return cls(sequences("src"), prepared.array("lengths"), tgt=sequences("tgt"))

    def labelled(
        self, config: ModelConfig, device: torch.device, rows: int = 256
    ) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        """Every example of a sentiment split in order, `rows` at a time, as `batch` gives
        them. Shape: src, src_mask (B, S), class ids (B,)."""
        assert self.labels is not None, "a sentiment split has labels"
        for start in range(0, len(self.src), rows):
            batch = self.batch(range(start, min(start + rows, len(self.src))), config, device)
            yield batch.src, batch.src != config.pad_id, batch.target

    def batch(
        self, index: Sequence[int], config: ModelConfig, device: torch.device, draw: int = 0
    ) -> Batch:
        """The examples at `index` as a padded batch on `device`; with `sampling`, in the
        segmentations of draw `draw`."""
        pad = config.pad_id
        # On a GPU: lengths in multiples of 8 (fewer distinct shapes for the kernels to be
        # chosen and tuned for, tensor-core friendly), copies from pinned memory that do
        # not wait for the GPU.
        cuda = device.type == "cuda"
        multiple, cap = (8 if cuda else 1), config.max_length

        def dev(t: Tensor) -> Tensor:
            return (t.pin_memory() if cuda else t).to(device, non_blocking=True)

        idx = np.asarray(index, dtype=np.int64)
        resegment: list[Any] = [None, None]
        if self.sampling is not None:
            tokenizer = self.sampling.tokenizer
            resegment = [
                self.sampling.resegment(tokenizer, draw, 0, cap, config.keep),
                self.sampling.resegment(tokenizer.target, draw, 1, cap, "head"),
            ]
        src = self.src.batch(idx, pad, multiple, cap, resegment[0])  # (B, S)
        n_src = int((src != pad).sum())
        if self.tgt is None:
            assert self.labels is not None
            empty = torch.zeros(0, dtype=torch.long)
            labels = torch.from_numpy(self.labels[idx].astype(np.int64))  # (B,)
            return Batch(dev(src), empty, dev(labels), n_src, len(idx))
        target = self.tgt.batch(idx, pad, multiple, cap, resegment[1])  # (B, T): pieces, EOS
        # Teacher forcing: the decoder reads the start piece (BOS) + target[:-1] (EOS never
        # as input).
        tgt_in = torch.cat([torch.full_like(target[:, :1], config.start_id), target[:, :-1]], 1)
        tgt_in.masked_fill_(tgt_in == config.eos_id, pad)
        n_tgt = int((target != pad).sum())
        return Batch(dev(src), dev(tgt_in), dev(target), n_src, n_tgt)


def token_batches(
    lengths: Sequence[int] | np.ndarray, max_tokens: int, seed: int | None
) -> Batches:
    """Length-bucketed batches of about `max_tokens` padded tokens; shuffled when seeded."""
    from attn.data import token_batches as batches

    if seed is None:
        return batches(lengths, max_tokens, shuffle=False)
    return batches(lengths, max_tokens, shuffle=True, seed=seed)


def epoch_batches(
    lengths: Sequence[int] | np.ndarray,
    max_tokens: int,
    seed: int,
    epoch: int,
    rank: int,
    world: int,
) -> Batches:
    """Rank `rank`'s batches of `epoch`: every world-th of one seeded list, equal counts."""
    batches = token_batches(lengths, max_tokens, seed * 100_003 + epoch)
    usable = len(batches) // world * world
    return batches[rank:usable:world]
