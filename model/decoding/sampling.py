"""Sampling: draw each next piece from the model's distribution instead of taking the best.

What back-translation needs (Edunov et al., 2018: sampled back-translations train better
models than beam ones). The search is greedy search's loop (`search.greedy_search`: the same
incremental decoder step, key/value cache, shortlist subsets and int8 weights); only the
choice of a row's next piece differs, made by `_Sampler`:

- the logits are divided by the temperature (0 = take the best piece: greedy search);
- top-k keeps the k most probable pieces (0 = all; 1 = greedy search);
- top-p (nucleus) keeps the fewest most probable pieces whose probabilities sum to p or more;
- a piece is drawn from what is left, renormalized, by inverse transform sampling with one
  uniform number per row and step.

Reproducible whatever the batching: each output row draws its uniform numbers from its own
`torch.Generator` (never the global one), seeded from (seed, the input's index, the sample's
index), so that a line gets the same samples alone or in a batch of eight, in this process or
in a worker. N samples of an input are N rows of the batch, the source repeated.

A hypothesis's `logprob` is the model's (temperature 1, unfiltered) log-probability of its
pieces and EOS, as greedy search reports it; `score` applies the length penalty.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
from torch import Tensor

from attn.model.decoding.incremental import StepWeights
from attn.model.decoding.sampling_options import SamplingOptions
from attn.model.decoding.search import (
    GenerationOptions,
    Hypothesis,
    _Output,
    greedy_search,
    max_lengths,
    top_columns,
)
from attn.model.nn.transformer import Transformer


def filter_logits(logits: Tensor, temperature: float, top_k: int, top_p: float) -> Tensor:
    """The logits to sample from: divided by `temperature` (> 0), and -inf outside the
    `top_k` best (0 = no limit; ties with the k-th are kept) and outside the nucleus: the
    fewest best pieces whose probabilities (after the temperature) sum to `top_p` or more.
    The best piece always stays. A new tensor; `logits` is not changed.

    Shape: logits (R, V), -inf where a piece may not come; returns (R, V) float32.
    """
    scores = logits.float() / temperature
    vocab = scores.size(1)
    if 0 < top_k < vocab:
        kth = top_columns(scores, top_k)[0][:, -1:]  # (R, 1)
        scores = scores.masked_fill(scores < kth, -torch.inf)
    if top_p < 1:
        probs, order = scores.softmax(-1).sort(-1, descending=True)  # (R, V)
        # A piece is out when the more probable pieces alone already reach top_p.
        before = probs.cumsum(-1) - probs  # (R, V)
        out = torch.zeros_like(scores, dtype=torch.bool).scatter_(1, order, before >= top_p)
        scores = scores.masked_fill(out, -torch.inf)
    return scores


def draw(scores: Tensor, uniform: Tensor) -> Tensor:
    """Inverse transform sampling: per row, the column where the cumulative softmax of
    `scores` first exceeds `uniform`. Columns at -inf are never drawn.

    Shape: scores (R, V); uniform (R,) in [0, 1); returns columns (R,) long.
    """
    cdf = scores.softmax(-1).cumsum(-1)  # (R, V)
    # Scaled by the total, not 1: the rounding of the sum never lets a draw fall off the end.
    target = uniform[:, None].to(cdf.dtype) * cdf[:, -1:]  # (R, 1)
    return torch.searchsorted(cdf, target, right=True).squeeze(1).clamp_(max=cdf.size(1) - 1)


def row_seed(seed: int, index: int, sample: int) -> int:
    """The seed of one output row: the same on every machine and Python (no `hash`)."""
    digest = hashlib.blake2b(f"{seed}:{index}:{sample}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1  # (a non-negative int64)


class _Sampler:
    """`greedy_search`'s choice of the next piece, drawn at random: see the module doc.

    Each row's uniform numbers for every step are drawn up front, on the CPU, from the row's
    own generator: one per step up to the model's max_length, whatever the batch's limits.
    """

    def __init__(
        self, options: SamplingOptions, seeds: Sequence[int], steps: int, device: torch.device
    ) -> None:
        self.options = options
        uniform = torch.empty(len(seeds), steps)  # (R, steps)
        for row, seed in enumerate(seeds):
            uniform[row] = torch.rand(steps, generator=torch.Generator().manual_seed(seed))
        self.uniform = uniform.to(device)

    def __call__(self, logits: Tensor, rows: Tensor, t: int) -> tuple[Tensor, Tensor]:
        """The drawn columns and their (unfiltered) scores. Shape: logits (R, V); rows (R,)
        the batch row of each live row; returns two (R,)."""
        o = self.options
        if o.greedy:
            best, column = top_columns(logits, 1)
            return best.squeeze(1), column.squeeze(1)
        column = draw(filter_logits(logits, o.temperature, o.top_k, o.top_p), self.uniform[rows, t])
        return logits.gather(1, column[:, None]).squeeze(1), column


@torch.inference_mode()
def sample(
    model: Transformer,
    src: Tensor,
    src_mask: Tensor,
    options: GenerationOptions,
    sampling: SamplingOptions,
    indices: Sequence[int],
    *,
    allowed: Tensor | None = None,
    weights: StepWeights | None = None,
) -> list[list[Hypothesis]]:
    """Sample `sampling.n` outputs for each source sentence of a batch.

    Args:
        model, src, src_mask, allowed: as for `search.generate`.
        weights: the decoder prepared for incremental decoding; None = prepared here.
        options: the length rule, length penalty and `no_repeat_ngram` (beam and n_best are
            not used).
        sampling: temperature, top-k, top-p, seed and the number of samples.
        indices: each sentence's index in the whole input: with the seed, it decides the
            sentence's random numbers (not its place in this batch).

    Shape: src, src_mask (B, S); allowed (B, V).

    Returns:
        Per sentence, in batch order, `sampling.n` hypotheses, best score first.

    Raises:
        ValueError: `indices` does not have one index per sentence.
    """
    b, n = src.size(0), sampling.n
    if len(indices) != b:
        raise ValueError(f"got {len(indices)} indices for {b} sentences")
    if n > 1:  # each source n times in a row: (B * n, S)
        src, src_mask = src.repeat_interleave(n, 0), src_mask.repeat_interleave(n, 0)
        allowed = None if allowed is None else allowed.repeat_interleave(n, 0)
    seeds = [row_seed(sampling.seed, i, j) for i in indices for j in range(n)]
    sampler = _Sampler(sampling, seeds, model.config.max_length + 1, src.device)
    limits = max_lengths(src_mask, options, model.config.max_length)  # (B * n,)
    if weights is None:
        weights = StepWeights(model)
    output = _Output(model, allowed, weights.output)
    hyps = greedy_search(
        model, src, src_mask, limits, options, weights=weights, output=output, pick=sampler
    )
    grouped = [[h[0] for h in hyps[i * n : (i + 1) * n]] for i in range(b)]
    return [sorted(group, key=lambda h: -h.score) for group in grouped]
