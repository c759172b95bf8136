"""Sequence generation: greedy search and batched beam search with a key/value cache.

The encoder runs once per batch. The decoder then runs one position at a time and, with the
cache (`attn.model.decoding.incremental`), only on the newest token: self-attention keys and values
grow step by step, cross-attention keys and values of the memory are computed on the first
step and reused. `use_cache=False` recomputes the whole prefix at every step instead; it exists
as the reference that the cached path must equal (tests).

Scores: `logprob` is the sum of the log-probabilities of the generated pieces, EOS included.
`score` ranks hypotheses: `logprob / lp(len)` with the GNMT length penalty
lp(len) = ((5 + len) / 6) ** alpha, where len counts the generated pieces and EOS
(alpha = 0 ranks by the plain sum, larger alpha favours longer outputs).

Both searches work on whole batches: no Python loop over sentences or beams runs per step.
Sentences that are done leave the batch (their rows are dropped from the cache, the memory
and the masks), so a long sentence does not keep short ones decoding.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from attn.model.decoding.constraints import Guidance, Guide, any_guidance, fit_limits
from attn.model.decoding.incremental import DecoderState, StepWeights
from attn.model.device import column_major
from attn.model.nn.transformer import Transformer


@dataclass(frozen=True)
class GenerationOptions:
    """How to search.

    Args:
        beam: beam size; 1 = greedy search.
        n_best: hypotheses returned per sentence (<= beam).
        length_penalty: alpha of the GNMT length penalty ((5 + len) / 6) ** alpha; 0 = none.
        no_repeat_ngram: forbid repeating any n-gram of this size within an output, and any
            piece three times in a row (the loops a longer n lets through: "blood blood
            blood blood"); 0 = off.
        max_length: absolute cap on generated pieces (EOS not counted); None = relative rule.
        max_length_a, max_length_b: the relative rule, a * source_pieces + b, capped by the
            model's max_length (and by `max_length` when given).
        exhaustive: beam search stops a sentence only when no live beam could still beat its
            finished ones at any length up to the limit; False (faster) stops it when they
            beat the best live beam's score were it to end at the next step.
    """

    beam: int = 4
    n_best: int = 1
    length_penalty: float = 0.6
    no_repeat_ngram: int = 0
    max_length: int | None = None
    max_length_a: float = 1.5
    max_length_b: int = 10
    exhaustive: bool = False

    def __post_init__(self) -> None:
        if self.beam < 1:
            raise ValueError(f"beam must be >= 1, got {self.beam}")
        if not 1 <= self.n_best <= self.beam:
            raise ValueError(
                f"n_best must be between 1 and the beam size {self.beam}, got {self.n_best}"
            )
        if self.length_penalty < 0:
            raise ValueError(f"length_penalty must be >= 0, got {self.length_penalty}")
        if self.no_repeat_ngram < 0:
            raise ValueError(f"no_repeat_ngram must be >= 0, got {self.no_repeat_ngram}")
        if self.max_length is not None and self.max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {self.max_length}")


@dataclass
class Hypothesis:
    """One generated sequence.

    tokens: generated piece ids, without BOS and EOS.
    logprob: sum of log-probabilities of the pieces and of EOS.
    score: logprob divided by the length penalty; hypotheses are ranked by it.
    """

    tokens: list[int]
    logprob: float
    score: float
    # False where the search could not meet the sentence's constraints and searched again
    # without them (`generate` with guides).
    constraints_met: bool = True


def length_penalty(length: Tensor | float, alpha: float) -> Tensor | float:
    """GNMT length penalty ((5 + length) / 6) ** alpha (Wu et al., 2016)."""
    return ((5.0 + length) / 6.0) ** alpha


def max_lengths(src_mask: Tensor, options: GenerationOptions, model_max: int) -> Tensor:
    """Per-sentence cap on generated pieces: a * source_pieces + b, capped.

    Shape: src_mask (B, S) -> (B,) long, each in [1, cap].
    """
    cap = model_max if options.max_length is None else min(options.max_length, model_max)
    src_len = src_mask.sum(1).to(torch.float32)  # (B,)
    if options.max_length is not None:
        return torch.full_like(src_len, cap, dtype=torch.long)
    relative = (options.max_length_a * src_len + options.max_length_b).floor().long()
    return relative.clamp(1, cap)


@torch.inference_mode()
def generate(
    model: Transformer,
    src: Tensor,
    src_mask: Tensor,
    options: GenerationOptions,
    *,
    use_cache: bool = True,
    allowed: Tensor | None = None,
    weights: StepWeights | None = None,
    guides: list[Guide] | None = None,
    word_ends: Tensor | None = None,
) -> list[list[Hypothesis]]:
    """Generate outputs for a batch of source sentences.

    Args:
        model: an encoder-decoder `Transformer` (eval mode).
        src, src_mask: source ids ending with EOS, and True where a piece is real.
        options: search settings; beam 1 runs greedy search.
        use_cache: decode incrementally with the key/value cache (False: recompute, reference).
        allowed: the pieces each sentence may generate (`Shortlist.candidates`), EOS always
            included; log-probabilities are normalized over a sentence's own pieces. None =
            the whole vocabulary.
        weights: the model's decoder prepared for incremental decoding (a loaded model's,
            possibly int8); None = prepared here from the model's float weights.
        guides: per sentence, the pieces its output must hold and start with
            (`attn.model.decoding.constraints`; their pieces must be in `allowed`). A
            sentence whose constraints no hypothesis met is searched again without them
            (keeping its prefix); its hypotheses then have `constraints_met` False.
        word_ends: with `guides`, the pieces that end a word (`constraints.word_ends`): a
            constraint is met only where the piece after it ends its word. None: wherever
            its pieces occur.

    Shape: src, src_mask (B, S).

    Returns:
        Per sentence, in batch order, up to `options.n_best` hypotheses, best first.
    """
    limits = max_lengths(src_mask, options, model.config.max_length)  # (B,)
    output = _Output(model, allowed, weights.output if weights is not None else None)
    if use_cache and weights is None:
        weights = StepWeights(model)
    if not any_guidance(guides):
        search = greedy_search if options.beam == 1 else beam_search
        return search(model, src, src_mask, limits, options, weights=weights, output=output)
    assert guides is not None
    cap = model.config.max_length if options.max_length is None else options.max_length
    limits = fit_limits(limits, guides, min(cap, model.config.max_length))
    guidance = Guidance(guides, options.beam, model.config.eos_id, src.device, word_ends)
    found = beam_search(
        model, src, src_mask, limits, options, weights=weights, output=output, guidance=guidance
    )
    unmet = [i for i, g in enumerate(guides) if g.constraints and not found[i]]
    if unmet:
        rows = torch.tensor(unmet, device=src.device)
        again = generate(
            model,
            src[rows],
            src_mask[rows],
            options,
            use_cache=use_cache,
            allowed=None if allowed is None else allowed[rows],
            weights=weights,
            guides=[guides[i].without_constraints() for i in unmet],
        )
        for i, hyps in zip(unmet, again, strict=True):
            for h in hyps:
                h.constraints_met = False
            found[i] = hyps
    return found


class _Output:
    """The pieces a search scores: the whole vocabulary, or per sentence a subset of it.

    With `allowed`, scores have one column per piece that some sentence of the batch may use
    (`token` maps columns back to piece ids), the projection uses only those rows of the
    output matrix, and `block` holds -inf at each sentence's columns it may not use (0
    elsewhere, or the model's logits bias of the column's piece): added to the scores before
    the softmax, so that a sentence's output does not depend on the others in its batch.
    """

    def __init__(
        self,
        model: Transformer,
        allowed: Tensor | None,
        project: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        c = model.config
        self.vocab: Tensor | None = None
        self.weight: Tensor | None = None  # the projection's rows of the subset
        # Or a projection: onto the whole vocabulary, `project` (`StepWeights.output`);
        # onto the subset, int8, the same rows of the quantized one.
        self.project: Callable[[Tensor], Tensor] | None = project
        self.block: Tensor | None = None
        self.eos, self.never = c.eos_id, (c.pad_id, c.bos_id)
        if allowed is None:
            return
        if allowed.dtype != torch.bool or allowed.dim() != 2 or allowed.size(1) != c.vocab_size:
            raise ValueError(f"allowed must be a (batch, {c.vocab_size}) boolean tensor")
        allowed = allowed.to(model.embed.weight.device, copy=True)  # (B, V)
        allowed[:, c.eos_id] = True  # every sentence may end
        allowed[:, [c.pad_id, c.bos_id]] = False  # never generated
        self.never, self.project = (), None
        self.vocab = allowed.any(0).nonzero().squeeze(1)  # (N,) sorted
        if model.output_proj is None:
            weight = model.embed.weight.index_select(0, self.vocab)  # (N, d): tied
            # On the CPU in MKL's faster layout, as the pipeline stores linear layers.
            self.weight = column_major(weight) if weight.is_cpu else weight
        else:  # int8 (attn.model.decoding.quantize): the same rows of its int8 projection
            from attn.model.decoding.quantize import select_rows

            self.project = select_rows(model.output_proj, self.vocab)
        block = torch.zeros(allowed.size(0), self.vocab.numel(), device=allowed.device)
        if model.logits_bias is not None:  # the bias of the subset's pieces
            block += model.logits_bias.index_select(0, self.vocab).to(block.dtype)
        self.block = block.masked_fill_(~allowed[:, self.vocab], -torch.inf)  # (B, N)
        # Column of each piece of the subset: a search only ever generates those, so every
        # generated id has one (`_block_repeats` works on columns).
        self.column = torch.zeros(c.vocab_size, dtype=torch.long, device=self.vocab.device)
        self.column[self.vocab] = torch.arange(self.vocab.numel(), device=self.vocab.device)
        self.eos = int(self.column[c.eos_id])

    def logits(self, model: Transformer, states: Tensor, block: Tensor | None = None) -> Tensor:
        """The projection, plus `block` when given. Shape: states (R, d_model) -> (R, V or N);
        block (R, N)."""
        if self.weight is not None:
            if block is not None:  # one product that starts from the block
                return torch.addmm(block, states, self.weight.t())
            return F.linear(states, self.weight)
        logits = self.project(states) if self.project is not None else model.project(states)
        return logits if block is None else logits.add_(block)

    def token(self, columns: Tensor) -> Tensor:
        """Piece ids of score columns (any shape)."""
        return columns if self.vocab is None else self.vocab[columns]

    def columns(self, tokens: Tensor) -> Tensor:
        """Score columns of generated piece ids (any shape)."""
        return tokens if self.vocab is None else self.column[tokens]


def _decoder_states(
    model: Transformer,
    state: DecoderState | None,
    seqs: Tensor,
    memory: Tensor,
    src_mask: Tensor,
    t: int,
) -> Tensor:
    """The final decoder states of each row's newest position: incrementally with `state`,
    or (the reference) by decoding the whole prefix again.

    Shape: seqs (R, t + 1) start piece first; returns (R, d_model).
    """
    if state is not None:
        return state.step(seqs[:, t], t)
    return model.decode(seqs, memory, src_mask, hidden=True)[:, -1]


def _next_scores(
    model: Transformer,
    states: Tensor,
    seqs: Tensor,
    t: int,
    limits: Tensor,
    shortest: int,
    no_repeat_ngram: int,
    output: _Output,
    block: Tensor | None,
) -> tuple[Tensor, Tensor | None]:
    """Scores of the next piece: logits with forbidden pieces at -inf, and the log of the
    softmax's normalizer, so that a piece's log-probability is `logits - lse`; or, over a
    subset (`block`), the log-probabilities themselves and None.

    Over the whole vocabulary the caller picks its best pieces from the logits and normalizes
    only those: a full log-softmax would write a (rows x vocabulary) tensor at every step only
    to be searched. Over a subset most of a row is -inf, where `logsumexp` (its `exp`) takes a
    slow path on the CPU and `log_softmax` does not: one pass gives the log-probabilities.
    PAD and BOS are never generated; rows that reached their length limit may only end (EOS);
    `no_repeat_ngram` blocks pieces that would repeat an n-gram. `shortest` is the smallest of
    `limits`, kept by the caller as a Python int, so that no step waits on the device to ask.
    Columns are those of `output` (pieces, or the pieces of its subset); `block` is -inf at
    each row's columns that its sentence may not use, 0 elsewhere.

    Shape: states (R, d_model); seqs (R, t + 1) BOS first, R = B x beams; limits (R,); block
    (R, N); returns scores (R, V or N) and lse (R, 1) or None, float32.
    """
    # (R, V), changed in place below (the model output is not kept)
    scores = output.logits(model, states, block).float()
    lse = None
    if block is None:
        # A log-probability's distance to its logit: torch's logsumexp makes four passes over
        # the rows (max, subtract, exp, sum), log_softmax one fused kernel, half the time.
        lse = scores[:, :1] - scores.log_softmax(-1)[:, :1]  # (R, 1)
    else:
        scores = scores.log_softmax(-1)
    # Scalar indices and masked_fill_: no index tensor copied to the device, no sync per step.
    for column in output.never:
        scores[:, column] = -torch.inf
    if no_repeat_ngram:
        _block_repeats(scores, output.columns(seqs[:, 1:]), no_repeat_ngram)
    if t >= shortest:
        at_limit = limits <= t  # (R,)
        eos_score = scores[:, output.eos].clone()  # (R,)
        scores.masked_fill_(at_limit[:, None], -torch.inf)
        scores[:, output.eos] = eos_score
    return scores, lse


# On a GPU, searches look every this many steps whether rows or sentences have finished: each
# look makes the host wait for the device, which otherwise queues steps ahead.
_GPU_CHECK_EVERY = 8


def check_every(device: torch.device) -> int:
    """Every how many steps a search on `device` reads which rows have finished (the CPU:
    every step, where reading costs nothing and finished rows leave the batch at once)."""
    return 1 if device.type == "cpu" else _GPU_CHECK_EVERY


# Columns are split into this many strided groups for `top_columns` (a power of two keeps the
# group maxima a vectorized reduction).
_GROUPS = 128


def top_columns(scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The k largest scores of each row and their columns, as `scores.topk(k, dim=1)`.

    On the CPU, `topk` (and `max` with indices) walks every element of a row serially, a
    millisecond a decoding step at 8k pieces. Here the columns are dealt into `_GROUPS` strided
    groups: a row's best k lie in its k groups with the highest maxima, so a vectorized
    maximum over groups, a topk over the group maxima and one over the k chosen groups find
    them. Same values and columns (ties aside); other devices call topk directly.

    Shape: scores (R, V); returns values and columns (R, k), best first.
    """
    rows, vocab = scores.shape
    size = vocab // _GROUPS  # columns of a group; the last vocab % _GROUPS columns join all
    if scores.device.type != "cpu" or size == 0 or 4 * k * size > vocab:
        return scores.topk(k, dim=1)  # (also where the chosen groups would hold much of a row)
    body = size * _GROUPS
    group_max = scores[:, :body].view(rows, size, _GROUPS).amax(1)  # (R, G)
    groups = group_max.topk(k, dim=1).indices  # (R, k)
    steps = torch.arange(0, body, _GROUPS, device=scores.device)  # (size,)
    columns = (groups[:, :, None] + steps).view(rows, k * size)  # (R, k * size)
    if body < vocab:
        rest = torch.arange(body, vocab, device=scores.device).expand(rows, -1)
        columns = torch.cat([columns, rest], dim=1)
    values, pick = scores.gather(1, columns).topk(k, dim=1)  # (R, k)
    return values, columns.gather(1, pick)


def _block_repeats(logp: Tensor, generated: Tensor, n: int) -> None:
    """Set to -inf every piece that would complete an n-gram already in `generated`, and the
    last piece where the two last pieces are the same (no piece three times in a row).

    Shape: logp (R, V), modified in place; generated (R, t) pieces so far, BOS excluded.
    """
    t = generated.size(1)
    if t >= 2:
        last = generated[:, -1:]  # (R, 1)
        twice = generated[:, -1:] == generated[:, -2:-1]  # (R, 1)
        logp.scatter_(1, last, logp.gather(1, last).masked_fill(twice, -torch.inf))
    if t < n:
        return
    ngrams = generated.unfold(1, n, 1)  # (R, t - n + 1, n)
    prefix = generated[:, t - n + 1 :]  # (R, n - 1): the n-gram the next piece would complete
    seen = (ngrams[:, :, :-1] == prefix[:, None, :]).all(-1)  # (R, t - n + 1)
    # scatter_add, not scatter: the same piece can follow several matching prefixes.
    banned = torch.zeros_like(logp).scatter_add_(1, ngrams[:, :, -1], seen.to(logp.dtype))
    logp.masked_fill_(banned > 0, -torch.inf)


def greedy_search(
    model: Transformer,
    src: Tensor,
    src_mask: Tensor,
    limits: Tensor,
    options: GenerationOptions,
    *,
    weights: StepWeights | None = None,
    output: _Output | None = None,
    pick: Callable[[Tensor, Tensor, int], tuple[Tensor, Tensor]] | None = None,
) -> list[list[Hypothesis]]:
    """Pick the most probable piece at every step.

    Args:
        weights: the decoder prepared for incremental decoding; None = decode the whole
            prefix at every step (the reference).
        pick: another choice of the next piece (`attn.model.decoding.sampling`): (scores
            (R, V or N), each row's sentence in the batch (R,), t) -> the chosen columns'
            scores and the columns (R,); None = the best.

    Shape: src, src_mask (B, S); limits (B,) cap on generated pieces per sentence.
    Returns one hypothesis per sentence.
    """
    c = model.config
    output = output or _Output(model, None)
    b, device = src.size(0), src.device
    memory = model.encode(src, src_mask)  # (B, S, d)
    width = int(limits.max()) + 1
    state = None if weights is None else weights.start(memory, src_mask, 1, width)
    # The start piece, then the piece of step t in column t + 1.
    seqs = torch.full((b, width + 1), c.pad_id, dtype=torch.long, device=device)  # (R, width + 1)
    seqs[:, 0] = c.start_id
    logprob = torch.zeros(b, device=device)  # (R,)
    rows = torch.arange(b, device=device)  # original sentence of each live row
    shortest = int(limits.min())
    out_tokens = torch.full((b, width), c.pad_id, dtype=torch.long, device=device)
    out_logprob = torch.zeros(b, device=device)
    out_length = torch.zeros(b, dtype=torch.long, device=device)
    block = output.block  # (R, N) or None
    on_gpu = device.type != "cpu"
    every = check_every(device)
    # The step at which each row generated EOS (-1: not yet) and its log-probability then:
    # recorded on the device, read by the host only every `every` steps.
    ended_at = torch.full((b,), -1, dtype=torch.long, device=device)  # (R,)
    end_logprob = torch.zeros(b, device=device)  # (R,)
    for t in range(width):
        states = _decoder_states(model, state, seqs[:, : t + 1], memory, src_mask, t)
        logits, lse = _next_scores(
            model,
            states,
            seqs[:, : t + 1],
            t,
            limits,
            shortest,
            options.no_repeat_ngram,
            output,
            block,
        )
        if pick is None:
            best, column = (x.squeeze(1) for x in top_columns(logits, 1))  # (R,)
        else:
            best, column = pick(logits, rows, t)
        token = output.token(column)
        logprob = logprob + (best if lse is None else best - lse.squeeze(1))
        seqs[:, t + 1] = token
        now = (token == c.eos_id) & (ended_at < 0)  # (R,) rows that end here
        ended_at = ended_at.masked_fill_(now, t)
        end_logprob = torch.where(now, logprob, end_logprob)
        if (t + 1) % every and t + 1 < width:
            continue  # (on a GPU: rows that ended decode on, ignored, until the next look)
        done = ended_at >= 0  # (R,)
        if not bool(done.any()):  # the host waits for the device here
            continue
        # Index tensors, not boolean masks: each boolean index would wait for the device.
        ended = done.nonzero().squeeze(1)  # (D,)
        finished = rows[ended]
        out_tokens[finished, : t + 1] = seqs[ended, 1 : t + 2]  # (after EOS: ignored)
        out_logprob[finished] = end_logprob[ended]
        out_length[finished] = ended_at[ended] + 1
        keep = (~done).nonzero().squeeze(1)  # (R',)
        if keep.numel() == 0:
            break
        seqs, logprob, rows, limits = seqs[keep], logprob[keep], rows[keep], limits[keep]
        ended_at, end_logprob = ended_at[keep], end_logprob[keep]
        if not on_gpu:  # a stale (smaller) value only applies the length limit early
            shortest = int(limits.min())
        if block is not None:
            block = block.index_select(0, keep)
        if state is None:
            memory, src_mask = memory.index_select(0, keep), src_mask.index_select(0, keep)
        else:
            state.reorder(keep, t + 1)
            state.keep_sentences(keep)
    scores = out_logprob / length_penalty(out_length.float(), options.length_penalty)
    return [
        [Hypothesis(tokens[: n - 1], lp, s)]
        for tokens, n, lp, s in zip(
            out_tokens.tolist(),
            out_length.tolist(),
            out_logprob.tolist(),
            scores.tolist(),
            strict=True,
        )
    ]


def beam_search(
    model: Transformer,
    src: Tensor,
    src_mask: Tensor,
    limits: Tensor,
    options: GenerationOptions,
    *,
    weights: StepWeights | None = None,
    output: _Output | None = None,
    guidance: Guidance | None = None,
) -> list[list[Hypothesis]]:
    """Batched beam search with a length penalty and n-best lists.

    Each step takes the top 2k of the k * V extensions of every sentence (one topk over the
    flattened beams): extensions ending in EOS among the best k join the sentence's finished
    list (kept at n_best, ranked by `score`), the best k others continue. A sentence is done
    when its n_best-th finished score reaches best_live_logprob / lp(t + 2): the best live
    beam's score if it ended at the next step without losing log-probability (the stopping
    rule of OpenNMT-py and CTranslate2, which stop when the top beam has ended, up to that
    one step). With `options.exhaustive` it goes on until no live beam could win at any
    length: their log-probability can only fall and the penalty is largest at the length
    limit, so best_live_logprob / lp(limit + 1) bounds every continuation.

    `weights` is the decoder prepared for incremental decoding; None decodes the whole prefix
    at every step (the reference). `guidance` forces prefixes and constrains the outputs
    (`attn.model.decoding.constraints`).

    Shape: src, src_mask (B, S); limits (B,) cap on generated pieces per sentence.
    """
    search = _BeamSearch(model, src, src_mask, limits, options, weights, output, guidance)
    for t in range(search.width - 1):
        if not search.step(t):
            break
    out = search.out
    return _hypotheses(out.tokens, out.logprob, out.score, model.config.eos_id)


@dataclass
class _NBest:
    """The n best finished hypotheses of each sentence, best first.

    Shape: score, logprob (B, n); tokens (B, n, width) BOS first, EOS-terminated, padded.
    """

    score: Tensor
    logprob: Tensor
    tokens: Tensor

    @classmethod
    def empty(cls, b: int, n: int, width: int, pad_id: int, device: torch.device) -> _NBest:
        return cls(
            torch.full((b, n), -torch.inf, device=device),
            torch.zeros(b, n, device=device),
            torch.full((b, n, width), pad_id, dtype=torch.long, device=device),
        )

    def merge(self, score: Tensor, logprob: Tensor, tokens: Tensor) -> None:
        """Keep the n best of these and the new candidates (B, k), (B, k), (B, k, width)."""
        n, width = self.score.size(1), self.tokens.size(2)
        self.score, pick = torch.cat([self.score, score], dim=1).topk(n, dim=1)  # (B, n)
        self.logprob = torch.cat([self.logprob, logprob], dim=1).gather(1, pick)
        self.tokens = torch.cat([self.tokens, tokens], dim=1).gather(
            1, pick[:, :, None].expand(-1, -1, width)
        )  # (B, n, width)

    def select(self, index: Tensor) -> _NBest:
        return _NBest(self.score[index], self.logprob[index], self.tokens[index])

    def put(self, rows: Tensor, other: _NBest) -> None:
        """Write `other`'s lists into these rows."""
        self.score[rows], self.logprob[rows], self.tokens[rows] = (
            other.score,
            other.logprob,
            other.tokens,
        )


class _BeamSearch:
    """The state of `beam_search` between steps: live beams, finished lists, the results.

    Sentences are "live" until done; R = B' x k rows, B' the live sentences.
    """

    def __init__(
        self,
        model: Transformer,
        src: Tensor,
        src_mask: Tensor,
        limits: Tensor,
        options: GenerationOptions,
        weights: StepWeights | None,
        output: _Output | None,
        guidance: Guidance | None = None,
    ) -> None:
        c = model.config
        self.guidance = guidance
        self.model, self.options, self.limits = model, options, limits
        self.output = output or _Output(model, None)
        self.k, self.alpha = options.beam, options.length_penalty
        self.eos_id, self.pad_id = c.eos_id, c.pad_id
        b, device = src.size(0), src.device
        self.device, self.on_gpu = device, device.type != "cpu"
        # One memory per sentence: cross-attention groups the queries of its k beams.
        self.memory, self.src_mask = model.encode(src, src_mask), src_mask  # (B', S, d)
        self.width = int(limits.max()) + 2  # BOS, at most `limit` pieces, EOS
        self.state = None
        if weights is not None:
            self.state = weights.start(self.memory, src_mask, self.k, self.width)
        self.seqs = torch.full((b * self.k, 1), c.start_id, dtype=torch.long, device=device)
        # All beams start as copies of the start piece; only the first may extend, or the
        # beam would fill with k copies of the same hypothesis.
        self.beam_logprob = torch.full((b, self.k), -torch.inf, device=device)  # (B', k)
        self.beam_logprob[:, 0] = 0.0
        self.fin = _NBest.empty(b, options.n_best, self.width, c.pad_id, device)  # live ones
        self.out = _NBest.empty(b, options.n_best, self.width, c.pad_id, device)  # all, final
        self.rows = torch.arange(b, device=device)  # original sentence of each live sentence
        self.row_limits = limits.repeat_interleave(self.k)  # (R,)
        self.block = self.output.block  # (B', N) or None
        self.row_block = None if self.block is None else self.block.repeat_interleave(self.k, 0)
        self.shortest = int(limits.min())
        # Sentences are retired every `every` steps (every step on the CPU); in between, those
        # done are frozen: their beams go on, but their finished lists no longer change.
        self.every = check_every(device)
        self.frozen = torch.zeros(b, dtype=torch.bool, device=device)  # (B',)

    def step(self, t: int) -> bool:
        """Extend every live beam by one piece; False once every sentence is done."""
        k = self.k
        bb = self.rows.numel()
        states = _decoder_states(
            self.model, self.state, self.seqs, self.memory, self.src_mask, t
        )  # (R, d)
        logits, lse = _next_scores(
            self.model,
            states,
            self.seqs,
            t,
            self.row_limits,
            self.shortest,
            self.options.no_repeat_ngram,
            self.output,
            self.row_block,
        )  # (R, V), (R, 1)
        guided = self.guidance is not None and self.guidance.constrained
        if self.guidance is not None:
            self.guidance.mask(logits, t, self.output.columns, self.output.eos)
        first_row = torch.arange(bb, device=self.device)[:, None] * k  # (B', 1): beam 0's row
        if guided:
            logprob = logits if lse is None else logits - lse  # (R, N)
            fin, parent, next_token, live_logprob = self.guidance.select(
                logprob, self.beam_logprob, self.output.token, self.output.columns
            )
            self._finish(t, *fin)
        elif lse is None:  # log-probabilities already: extend all k beams of a sentence at once
            n = logits.size(1)
            cand = logits.add_(self.beam_logprob.view(-1, 1)).view(bb, k * n)  # (B', k * N)
            top_logprob, top_index = top_columns(cand, min(2 * k, k * n))  # (B', 2k)
            origin = top_index // n + first_row  # (B', 2k): the row each extension continues
            token = self.output.token(top_index % n)  # (B', 2k)
        else:
            # The best 2k extensions of a sentence are among the best 2k of each of its beams:
            # found from the logits, only those are normalized.
            per_row = min(2 * k, logits.size(1))
            row_best, row_column = top_columns(logits, per_row)  # (R, per_row)
            row_token = self.output.token(row_column)
            cand = (self.beam_logprob.view(-1, 1) + (row_best - lse)).view(bb, k * per_row)
            top_logprob, top_index = cand.topk(2 * k, dim=1)  # (B', 2k)
            origin = top_index // per_row + first_row
            token = row_token.view(bb, k * per_row).gather(1, top_index)  # (B', 2k)
        if not guided:
            is_eos = token == self.eos_id
            self._finish(t, top_logprob[:, :k], token[:, :k], origin[:, :k], is_eos[:, :k])
            # Live: the best k extensions that do not end.
            live_logprob, pick = top_logprob.masked_fill(is_eos, -torch.inf).topk(k, dim=1)
            parent = origin.gather(1, pick)  # (B', k) rows in the current batch
            next_token = token.gather(1, pick)  # (B', k)
        # Live beams have t + 1 pieces; ending adds EOS.
        reach = self.limits[self.rows].float() + 1.0 if self.options.exhaustive else t + 2.0
        # (Guided, the live beams are not in score order.)
        best_live = live_logprob.amax(1) if guided else live_logprob[:, 0]
        bound = best_live / length_penalty(reach, self.alpha)  # (B',)
        done = (self.fin.score[:, -1] >= bound) | self.frozen  # (B',)
        keep = None
        if (t + 1) % self.every and t + 2 < self.width:
            self.frozen = done  # (a GPU: no look at `done` this step, no wait for the device)
        elif bool(done.any()):
            keep = self._retire(done)
            if keep is None:
                return False
            parent, next_token, live_logprob = parent[keep], next_token[keep], live_logprob[keep]
        if guided:
            self.guidance.set_rows(keep)
        parent = parent.view(-1)  # (R,)
        self.seqs = torch.cat([self.seqs.index_select(0, parent), next_token.view(-1, 1)], 1)
        self.beam_logprob = live_logprob
        if self.state is not None:
            self.state.reorder(parent, t + 1)
        return True

    def _finish(
        self, t: int, logprob: Tensor, token: Tensor, parent: Tensor, is_eos: Tensor
    ) -> None:
        """EOS among the best k extensions joins the n-best list of its sentence.

        Shape: logprob, token, parent (rows), is_eos (B', k).
        """
        new_fin = is_eos & (logprob > -torch.inf)  # (B', k)
        if self.every > 1:
            new_fin &= ~self.frozen[:, None]
        # On a GPU the merge costs less than asking the host whether it is needed (a sync).
        if not (self.on_gpu or bool(new_fin.any())):
            return
        bb, k = new_fin.shape
        score = (logprob / length_penalty(t + 1.0, self.alpha)).masked_fill(~new_fin, -torch.inf)
        tokens = torch.cat(
            [self.seqs.index_select(0, parent.reshape(-1)), token.reshape(-1, 1)], dim=1
        )  # (B'*k, t + 2)
        tokens = F.pad(tokens, (0, self.width - t - 2), value=self.pad_id).view(bb, k, -1)
        self.fin.merge(score, logprob, tokens)

    def _retire(self, done: Tensor) -> Tensor | None:
        """Move done sentences' lists to the results and drop them from the batch.

        Returns the live sentences kept (B'',), or None when none is left.
        """
        ended = done.nonzero().squeeze(1)  # (D,): index tensors, as in greedy_search
        self.out.put(self.rows[ended], self.fin.select(ended))
        keep = (~done).nonzero().squeeze(1)  # (B'',)
        if keep.numel() == 0:
            return None
        self.rows = self.rows[keep]
        self.frozen = self.frozen[keep]  # (all False: the done sentences left)
        self.row_limits = self.limits[self.rows].repeat_interleave(self.k)  # (R,)
        if not self.on_gpu:
            self.shortest = int(self.limits[self.rows].min())
        self.fin = self.fin.select(keep)
        if self.guidance is not None:
            self.guidance.keep_sentences(keep)
        if self.block is not None:
            self.block = self.block.index_select(0, keep)
            self.row_block = self.block.repeat_interleave(self.k, 0)
        if self.state is None:
            self.memory = self.memory.index_select(0, keep)
            self.src_mask = self.src_mask.index_select(0, keep)
        else:
            # Cross-attention keys/values (one per sentence) change only when sentences
            # leave; the self-attention cache follows the parents (`step`).
            self.state.keep_sentences(keep)
        return keep


def _hypotheses(
    tokens: Tensor, logprob: Tensor, score: Tensor, eos_id: int
) -> list[list[Hypothesis]]:
    """Unpack the n-best tensors into per-sentence lists (BOS and EOS stripped).

    Shape: tokens (B, n, width) BOS first, EOS-terminated then padded; logprob, score (B, n).
    """
    results = []
    for seqs, lps, scores in zip(tokens.tolist(), logprob.tolist(), score.tolist(), strict=True):
        hyps = []
        for seq, lp, s in zip(seqs, lps, scores, strict=True):
            if s == -float("inf"):
                continue
            body = seq[1:]
            end = body.index(eos_id) if eos_id in body else len(body)
            hyps.append(Hypothesis(body[:end], lp, s))
        results.append(hyps)
    return results
