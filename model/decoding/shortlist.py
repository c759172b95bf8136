"""A lexical shortlist: the target pieces a translation of a batch may need.

Most of a decoding step over an 8k vocabulary is spent on the output side: the projection
onto every piece, the softmax's normalizer and the search for the best pieces. A sentence
about a dog needs a few hundred of those pieces at most. The shortlist, learned from the
training pairs when a translation model is trained, holds the most frequent target pieces and,
for every source piece, the target pieces that best go with it: those most often in the
translations of sentences that hold it, weighted by how specific they are (count of the pair
x log(all target pieces / count of the target piece), so that "der" does not fill every list).
Each sentence decodes over the frequent pieces, the lists of its source pieces and its source
pieces themselves (names and numbers are copied), about 840 of 8k pieces on Multi30k, with
scores normalized over that set, as Marian's lexical shortlists and CTranslate2's vocabulary
maps do; a batch projects once onto the union of its sentences' sets (about a third of the
vocabulary for 32 sentences).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

# The most frequent target pieces, and the pieces kept per source piece beyond those.
# Measured on Multi30k en->de val, beam 4, three models (bench/shortlist_size.py): 100 x 50
# (about 430 pieces a sentence) scored 0.06-0.22 BLEU below the whole vocabulary; 200 x 100
# (about 840) -0.12 to +0.15, mean +0.02, at 4% more time for `attn translate` on test2016
# (the whole vocabulary: 12%); 300 x 150 cost 9%.
FREQUENT = 200
PER_SOURCE = 100
# Keys gathered between merges of the counts (memory: 8 bytes each, and the distinct keys
# seen so far at a merge): 4M keys, 32 MB.
_MERGE_KEYS = 1 << 22


@dataclass(frozen=True)
class Shortlist:
    """The always-allowed pieces and, per source piece, the pieces it allows.

    frequent: (F,) long target piece ids, EOS among them.
    by_source: (V, K) long; row s lists the pieces source piece s allows, padded with EOS.
    """

    frequent: Tensor
    by_source: Tensor

    @classmethod
    def build(
        cls,
        batches: Iterable[tuple[Tensor, Tensor]],
        vocab_size: int,
        eos_id: int,
        skip: Sequence[int] = (),
        frequent: int = FREQUENT,
        per_source: int = PER_SOURCE,
    ) -> Shortlist:
        """Count which target pieces appear in the translations of sentences holding each
        source piece, and keep the best `per_source` of each (see the module's docstring).

        Args:
            batches: source and target ids of the training pairs, (n, S) and (n, T) long,
                padded with an id of `skip`.
            vocab_size: V, shared by both sides.
            eos_id: always allowed.
            skip: ids that are never source or target pieces to count (padding, BOS).
        """
        skipped = torch.zeros(vocab_size, dtype=torch.bool)
        skipped[list(skip)] = True
        skipped[eos_id] = True
        target_count = torch.zeros(vocab_size, dtype=torch.long)
        # Distinct keys s * V + t and the number of sentence pairs that hold each.
        keys, together = torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
        pending: list[Tensor] = []
        waiting = 0
        for src, tgt in batches:
            pending.append(_pair_keys(src, tgt, vocab_size, skipped, target_count))
            waiting += pending[-1].numel()
            if waiting >= _MERGE_KEYS:
                keys, together = _merge(keys, together, pending)
                pending, waiting = [], 0
        keys, together = _merge(keys, together, pending)
        top = target_count.topk(min(frequent, vocab_size)).indices
        top = top[target_count[top] > 0]
        always = torch.cat([torch.tensor([eos_id]), top]).unique()
        by_source = torch.full((vocab_size, per_source), eos_id, dtype=torch.long)
        if keys.numel():
            source, target = keys // vocab_size, keys % vocab_size
            allowed = torch.ones(vocab_size, dtype=torch.bool)
            allowed[always] = False
            useful = allowed[target]
            source, target, together = source[useful], target[useful], together[useful]
            # Rank each source piece's targets by count x idf, best first, stable for ties.
            idf = (target_count.sum() / target_count.clamp(min=1).double()).log()  # (V,)
            order = (together * idf[target]).argsort(descending=True, stable=True)
            order = order[source[order].argsort(stable=True)]
            source, target = source[order], target[order]
            start = torch.searchsorted(source, source, side="left")
            rank = torch.arange(source.numel()) - start
            keep = rank < per_source
            by_source[source[keep], rank[keep]] = target[keep]
        return cls(frequent=always, by_source=by_source)

    def to(self, device: torch.device | str) -> Shortlist:
        """The same shortlist with its tensors on `device` (where the batches are)."""
        return Shortlist(frequent=self.frequent.to(device), by_source=self.by_source.to(device))

    def candidates(self, src: Tensor, src_mask: Tensor) -> Tensor:
        """The target pieces each sentence may use: the frequent ones, those its source
        pieces allow, and its source pieces themselves.

        Shape: src, src_mask (B, S) -> (B, V) bool, on src's device.
        """
        b, v = src.size(0), self.by_source.size(0)
        allowed = torch.zeros(b, v, dtype=torch.bool, device=src.device)
        frequent = self.frequent.to(src.device)
        allowed.index_fill_(1, frequent, True)
        # Allowed anyway, so it stands in for padding; a 0-dim tensor, not read by the host.
        fill = frequent[0]
        pieces = torch.where(src_mask, src, fill)  # (B, S)
        by_source = self.by_source.to(src.device)
        lists = torch.where(src_mask[:, :, None], by_source[pieces], fill).view(b, -1)
        allowed.scatter_(1, lists, True)
        # Names and numbers are copied: the vocabulary is shared by both sides.
        allowed.scatter_(1, pieces, True)
        return allowed

    def save(self, path: Path) -> None:
        """Write the shortlist as safetensors, atomically (int32: ids fit, half the size)."""
        from safetensors.torch import save

        from attn.atomic import atomic_write_bytes

        tensors = {"frequent": self.frequent, "by_source": self.by_source}
        atomic_write_bytes(path, save({k: v.int().contiguous() for k, v in tensors.items()}))

    @classmethod
    def load(cls, path: Path, vocab_size: int) -> Shortlist:
        """Read a shortlist file.

        Raises:
            ModelError: the file is unreadable or does not fit a vocabulary of that size.
        """
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        from attn.model.storage.checkpoint import ModelError

        try:
            tensors = load_file(str(path))
            frequent, by_source = tensors["frequent"], tensors["by_source"]
        except (SafetensorError, OSError, ValueError, KeyError) as e:
            raise ModelError(f"{path}: unreadable shortlist ({e})") from None

        def ids(t: Tensor) -> bool:  # piece ids of this vocabulary
            return not t.is_floating_point() and (
                t.numel() == 0 or (int(t.min()) >= 0 and int(t.max()) < vocab_size)
            )

        fits = (
            frequent.dim() == 1
            and frequent.numel() > 0
            and by_source.dim() == 2
            and by_source.size(0) == vocab_size
            and ids(frequent)
            and ids(by_source)
        )
        if not fits:
            raise ModelError(f"{path}: the shortlist does not fit a {vocab_size}-piece model")
        return cls(frequent=frequent.long(), by_source=by_source.long())


def _merge(keys: Tensor, counts: Tensor, pending: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Add the keys of `pending` (one per sentence pair each) to the counted `keys`.

    Shape: keys, counts (P,) -> (P',), (P',).
    """
    if not pending:
        return keys, counts
    fresh = torch.cat(pending)
    every = torch.cat([keys, fresh])
    weight = torch.cat([counts, torch.ones_like(fresh)])
    merged, inverse = every.unique(return_inverse=True)
    return merged, torch.zeros_like(merged).scatter_add_(0, inverse, weight)


def _pair_keys(
    src: Tensor, tgt: Tensor, vocab_size: int, skipped: Tensor, target_count: Tensor
) -> Tensor:
    """The distinct (source piece, target piece) keys s * V + t of each pair of a batch;
    adds the batch's target pieces to `target_count`.

    Shape: src (n, S), tgt (n, T); skipped, target_count (V,); returns (P,) long.
    """
    src, tgt = src.long(), tgt.long()
    target_count += torch.bincount(tgt[~skipped[tgt]], minlength=vocab_size)
    # One count per sentence pair: each sentence's distinct pieces on either side, whose
    # pairs are then distinct too (sorting rows is much cheaper than a unique over all keys).
    src, src_ok = _distinct_rows(src, skipped)  # (n, S)
    tgt, tgt_ok = _distinct_rows(tgt, skipped)  # (n, T)
    both = src_ok[:, :, None] & tgt_ok[:, None, :]  # (n, S, T)
    key = src[:, :, None] * vocab_size + tgt[:, None, :]  # (n, S, T)
    return key[both]


def _distinct_rows(ids: Tensor, skipped: Tensor) -> tuple[Tensor, Tensor]:
    """Each row sorted, and a mask of its first occurrence of each id that is not skipped.

    Shape: ids (n, L) -> (n, L), (n, L) bool.
    """
    ids = ids.sort(dim=1).values
    ok = ~skipped[ids]  # padding is skipped too
    ok[:, 1:] &= ids[:, 1:] != ids[:, :-1]
    return ids, ok
