"""Lexically constrained beam search and forced prefixes: what beam search is told to put
into an output.

A `Guide` holds, for one sentence, the target pieces that must appear somewhere in its
output (its constraints: glossary terms, or those a caller gives) and the pieces its output
must start with (a prefix, as CTranslate2's `target_prefix`).

The prefix is forced: at step t < len(prefix), every piece but prefix[t] gets -inf, and the
forced piece keeps the model's log-probability, so the model continues the prefix and the
scores stay comparable.

Constraints follow dynamic beam allocation (Post & Vilar, 2018), in the vectorized form of
Hu et al. (2019): every hypothesis tracks, per constraint, how many of its pieces it has
produced in a row (met constraints stay met). A hypothesis may end (EOS) only once every
constraint is met. At each step a sentence's candidates are the best 2k extensions of its
beams (plain beam search's), the next piece of every unmet constraint of every beam, and
every beam's best piece. Each candidate falls into a bank: the number of constraint pieces
it has met. The k beams that go on are dealt from the banks in turn, the best of the fullest
bank first (sort by rank within the bank, then by bank, fullest first), so hypotheses that
have met more constraints keep a place in the beam however low their score. All of it is
tensor work over the batch: no Python loop over sentences or beams runs per step.

Constraints are unordered and may overlap; a constraint that a hypothesis starts and then
leaves starts again from its first piece. With `word_ends` (a table of the pieces that can
follow a finished word: those that start a new word, punctuation, EOS), a constraint counts
as met only once the piece after its last one ends the word, so "Küche" is not met by
"Küchen": a hypothesis that goes on with the word starts the constraint again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Guide:
    """What one sentence's output must hold: piece ids (no BOS/EOS).

    constraints: each a sequence of pieces that must appear in the output, in that order.
    prefix: the pieces the output starts with.
    """

    constraints: tuple[tuple[int, ...], ...] = ()
    prefix: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if any(not c for c in self.constraints):
            raise ValueError("a constraint needs at least one piece")

    @property
    def needed(self) -> int:
        """Output pieces the prefix and the constraints need at least (if none overlap)."""
        return len(self.prefix) + sum(len(c) for c in self.constraints)

    def without_constraints(self) -> Guide:
        return Guide((), self.prefix)


def any_guidance(guides: Sequence[Guide] | None) -> bool:
    return guides is not None and any(g.constraints or g.prefix for g in guides)


def _padded(rows: Sequence[Sequence[int]], width: int, device: torch.device) -> Tensor:
    """Rows of ids as one (n, width) long tensor padded with -1."""
    out = torch.full((len(rows), max(width, 1)), -1, dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out.to(device)


class Guidance:
    """The guides of a beam search's batch and the constraint state of its hypotheses.

    Sentence tensors (B' live sentences): pieces (B', C, L) of each constraint, padded with
    -1; length (B', C), 0 for padding; prefix (B', P). Row tensors (R = B' x k): progress
    (R, C), the pieces of each constraint produced in a row; met (R, C).
    """

    def __init__(
        self,
        guides: Sequence[Guide],
        k: int,
        eos_id: int,
        device: torch.device,
        word_ends: Tensor | None = None,
    ):
        self.k, self.eos_id = k, eos_id
        self.word_ends = None if word_ends is None else word_ends.to(device)  # (V,) bool
        n_cons = max(len(g.constraints) for g in guides)
        self.constrained = n_cons > 0
        longest = max((len(c) for g in guides for c in g.constraints), default=1)
        cons = [list(g.constraints) + [()] * (n_cons - len(g.constraints)) for g in guides]
        flat = [c for row in cons for c in row]
        self.pieces = _padded(flat, longest, device).view(len(guides), n_cons, max(longest, 1))
        # (B, C, L)
        self.length = (self.pieces >= 0).sum(2)  # (B, C)
        self.total = self.length.sum(1)  # (B,)
        self.prefix_steps = max(len(g.prefix) for g in guides)
        self.prefix = _padded([g.prefix for g in guides], self.prefix_steps, device)  # (B, P)
        self.top_bank = int(self.total.max()) + 1
        self.progress = torch.zeros(len(guides) * k, n_cons, dtype=torch.long, device=device)
        self.met = (self.length == 0).repeat_interleave(k, 0)  # (R, C)

    def keep_sentences(self, keep: Tensor) -> None:
        """Only these live sentences go on (the rows follow in `set_rows`)."""
        self.pieces, self.length = self.pieces[keep], self.length[keep]
        self.total, self.prefix = self.total[keep], self.prefix[keep]

    def mask(self, scores: Tensor, t: int, columns, eos: int) -> None:
        """Force the prefix and forbid EOS to hypotheses with unmet constraints, in place.

        Args:
            scores: (R, V or N) next-piece scores of the rows.
            columns: maps piece ids to score columns (`_Output.columns`).
            eos: the score column of EOS.
        """
        if t < self.prefix_steps:
            forced = self.prefix[:, t].repeat_interleave(self.k)  # (R,)
            column = columns(forced.clamp(min=0))[:, None]  # (R, 1)
            kept = scores.gather(1, column)
            scores.masked_fill_((forced >= 0)[:, None], -torch.inf)
            scores.scatter_(1, column, kept)
        if self.constrained:  # (EOS ends the word of a constraint just produced)
            scores[:, eos].masked_fill_(~(self.met | self._complete()).all(1), -torch.inf)

    def _complete(self) -> Tensor:
        """Constraints whose pieces are all produced, met or waiting for the word to end.
        Shape: (R, C)."""
        return self.progress >= self.length.repeat_interleave(self.k, 0)

    def _next_pieces(self) -> Tensor:
        """The piece each row needs next for each constraint, -1 once met. Shape: (R, C)."""
        pieces = self.pieces.repeat_interleave(self.k, 0)  # (R, C, L)
        at = self.progress.clamp(max=pieces.size(2) - 1)[:, :, None]
        return pieces.gather(2, at).squeeze(2).masked_fill_(self.met | self._complete(), -1)

    # Over 60 lines: one vectorized step of dynamic beam allocation, shape comments included.
    def select(
        self, logprob: Tensor, beam_logprob: Tensor, token_of, columns
    ) -> tuple[tuple[Tensor, Tensor, Tensor, Tensor], Tensor, Tensor, Tensor]:
        """Choose the extensions of one step by dynamic beam allocation.

        Args:
            logprob: (R, N) log-probabilities of the next piece per row, masked.
            beam_logprob: (B', k) the beams' log-probabilities so far.
            token_of, columns: columns to piece ids and back (`_Output`).

        Returns:
            (logprob, token, parent row, is_eos) of the k best-placed candidates, for the
            finished lists; then the live beams' parent rows, pieces and log-probabilities
            (B', k). The chosen rows' constraint state waits in `pending` for `set_rows`.
        """
        k = self.k
        bb, n = beam_logprob.size(0), logprob.size(1)
        device = logprob.device
        total = logprob + beam_logprob.view(-1, 1)  # (R, N)
        first_row = torch.arange(bb, device=device)[:, None] * k  # (B', 1)
        # Candidates: the best 2k of each sentence, the constraints' next pieces, each row's best.
        top_lp, top_index = total.view(bb, k * n).topk(min(2 * k, k * n), dim=1)  # (B', 2k)
        top_row, top_col = top_index // n + first_row, top_index % n
        wanted = self._next_pieces()  # (R, C)
        want_col = columns(wanted.clamp(min=0))  # (R, C)
        want_lp = total.gather(1, want_col).masked_fill_(wanted < 0, -torch.inf)
        n_cons = wanted.size(1)
        want_row = torch.arange(bb * k, device=device)[:, None].expand(-1, n_cons)
        best_lp, best_col = total.max(1)  # (R,)
        own_row = torch.arange(bb * k, device=device)
        cand_lp = torch.cat([top_lp, want_lp.reshape(bb, -1), best_lp.view(bb, k)], 1)  # (B', M)
        cand_row = torch.cat([top_row, want_row.reshape(bb, -1), own_row.view(bb, k)], 1)
        cand_col = torch.cat([top_col, want_col.reshape(bb, -1), best_col.view(bb, k)], 1)
        # The same extension found twice counts once.
        key = cand_row * n + cand_col  # (B', M)
        key_sorted, order = key.sort(dim=1, stable=True)
        dup_sorted = torch.zeros_like(key_sorted, dtype=torch.bool)
        dup_sorted[:, 1:] = key_sorted[:, 1:] == key_sorted[:, :-1]
        dup = torch.zeros_like(dup_sorted).scatter_(1, order, dup_sorted)
        cand_lp = cand_lp.masked_fill(dup, -torch.inf)
        token = token_of(cand_col)  # (B', M)
        progress, met, bank = self._advance(cand_row, token)  # (B', M, C), (B', M, C), (B', M)
        # Deal the banks in turn: rank within the bank by score, then fullest bank first.
        m = cand_lp.size(1)
        by_score = cand_lp.argsort(dim=1, descending=True, stable=True)  # (B', M)
        bank_s = bank.gather(1, by_score)
        by_bank = bank_s.argsort(dim=1, descending=True, stable=True)
        bank_sb = bank_s.gather(1, by_bank)  # (B', M) grouped by bank, by score within
        position = torch.arange(m, device=device).expand(bb, -1)
        starts = torch.ones_like(bank_sb, dtype=torch.bool)
        starts[:, 1:] = bank_sb[:, 1:] != bank_sb[:, :-1]
        rank = position - torch.where(starts, position, 0).cummax(1).values
        slot = by_score.gather(1, by_bank)  # (B', M) the candidate at each sorted place
        top_bank = self.top_bank
        order_key = (rank * (top_bank + 1) + (top_bank - bank_sb)).float()
        order_key = order_key.masked_fill(cand_lp.gather(1, slot) == -torch.inf, torch.inf)
        placed = slot.gather(1, order_key.argsort(dim=1, stable=True))  # (B', M) best place first
        is_eos = token == self.eos_id
        first = placed[:, :k]
        fin = (cand_lp.gather(1, first), token.gather(1, first), cand_row.gather(1, first))
        fin_eos = is_eos.gather(1, first)
        # Live: the best-placed k that do not end.
        ends = is_eos.gather(1, placed)
        live_place = ends.float().argsort(dim=1, stable=True)[:, :k]  # (B', k) non-EOS first
        live = placed.gather(1, live_place)
        live_lp = cand_lp.gather(1, live).masked_fill(is_eos.gather(1, live), -torch.inf)
        c = progress.size(2)
        self.pending = (
            progress.gather(1, live[:, :, None].expand(-1, -1, c)),
            met.gather(1, live[:, :, None].expand(-1, -1, c)),
        )  # (B', k, C) each
        return (*fin, fin_eos), cand_row.gather(1, live), token.gather(1, live), live_lp

    def _advance(self, row: Tensor, token: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The constraint state after appending `token` to `row`, per candidate.

        Shape: row, token (B', M) -> progress, met (B', M, C); bank (B', M).
        """
        m = row.size(1)
        progress, met = self.progress[row], self.met[row]  # (B', M, C)
        wanted = self._next_pieces()[row]  # (B', M, C)
        tok = token[:, :, None]
        length = self.length[:, None].expand(-1, m, -1)  # (B', M, C)
        complete = (progress >= length) & ~met  # produced, waiting for the word to end
        hit = (wanted == tok) & ~met & ~complete
        restart = (self.pieces[:, None, :, 0] == tok).long()  # (B', M, C)
        progress = torch.where(hit, progress + 1, restart)
        if self.word_ends is None:
            met = met | (hit & (progress >= length))
        else:
            met = met | (complete & self.word_ends[token][:, :, None])
            progress = torch.where(complete & ~met, restart, progress)
        full = met | (progress >= length)
        bank = torch.where(full, length, progress.clamp(max=length)).sum(2)  # (B', M)
        return progress, met, bank

    def set_rows(self, keep: Tensor | None) -> None:
        """Take the chosen beams' state (`select`), of the sentences kept (None: all)."""
        progress, met = self.pending
        if keep is not None:
            progress, met = progress[keep], met[keep]
        c = progress.size(2)
        self.progress, self.met = progress.reshape(-1, c), met.reshape(-1, c)


def word_ends(pieces: Sequence[str], eos_id: int) -> Tensor:
    """Which pieces can follow a finished word: those that start a new word ("▁..."), or
    begin with a character that is not a letter or digit, and EOS. Shape: (V,) bool."""
    ends = [p.startswith("\u2581") or not p[:1].isalnum() for p in pieces]
    ends[eos_id] = True
    return torch.tensor(ends, dtype=torch.bool)


def fit_limits(limits: Tensor, guides: Sequence[Guide], cap: int) -> Tensor:
    """Room in each sentence's length limit for its prefix and constraints (up to `cap`).

    Shape: limits (B,) -> (B,).
    """
    needed = torch.tensor([g.needed for g in guides], dtype=limits.dtype, device=limits.device)
    return torch.maximum(limits, (needed + 2).clamp(max=cap))
