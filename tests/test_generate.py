"""Greedy and beam search: the cache changes nothing, batching changes nothing, beams help.

What holds for any weights (the cache, beam 1 as greedy, batching, subsets of the
vocabulary, int8's beam 1) runs on random weights, in a second; the slow set runs it on a
model trained to reverse sequences too, and what needs a model that learned something."""

from __future__ import annotations

import itertools

import pytest
import torch

from attn.model.decoding.incremental import DecoderState
from attn.model.decoding.search import (
    GenerationOptions,
    Hypothesis,
    generate,
    length_penalty,
    top_columns,
)
from attn.model.nn.config import ModelConfig
from attn.model.nn.transformer import Transformer

PAD, BOS, EOS = 0, 2, 3
FIRST, VOCAB = 4, 16  # pieces 4..15 are "words"


def _reverse_batch(g: torch.Generator, n: int, max_len: int = 8) -> tuple[torch.Tensor, ...]:
    """Random word sequences and their reversal: src + EOS, BOS + tgt, tgt + EOS."""
    lengths = torch.randint(2, max_len + 1, (n,), generator=g)
    src = torch.full((n, max_len + 1), PAD)
    tgt_in = torch.full((n, max_len + 1), PAD)
    tgt_out = torch.full((n, max_len + 1), PAD)
    for i, n_words in enumerate(lengths.tolist()):
        words = torch.randint(FIRST, VOCAB, (n_words,), generator=g)
        src[i, :n_words], src[i, n_words] = words, EOS
        tgt_in[i, 0], tgt_in[i, 1 : n_words + 1] = BOS, words.flip(0)
        tgt_out[i, :n_words], tgt_out[i, n_words] = words.flip(0), EOS
    return src, tgt_in, tgt_out


@pytest.fixture(scope="module")
def trained() -> Transformer:
    """A tiny model trained to reverse sequences: good, not perfect. About a minute on two
    CPU cores: the tests that use it are marked slow."""
    torch.manual_seed(0)
    config = ModelConfig(
        task="translate",
        vocab_size=VOCAB,
        d_model=64,
        n_heads=4,
        n_encoder_layers=2,
        n_decoder_layers=2,
        d_ff=128,
        dropout=0.0,
        max_length=24,
    )
    model = Transformer(config)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(250):
        src, tgt_in, tgt_out = _reverse_batch(g, 64)
        logits = model(src, tgt_in)  # (B, T, V)
        loss = torch.nn.functional.cross_entropy(
            logits.view(-1, VOCAB), tgt_out.view(-1), ignore_index=PAD
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def _random_model() -> Transformer:
    """The same architecture with random weights, built in a blink: what holds for any
    weights is tested on it outside the slow set. The final layer norm gets random gains:
    with tied embeddings an untrained decoder prefers the piece it was fed and repeats it to
    the length limit; with them, outputs vary in pieces and length (some end early, some at
    the limit), as a trained model's do. Gains of 4 spread the logits so widely that the
    searches' choices survive relative changes of 1e-4 to every weight: float rounding, which
    differs between the paths compared here, never flips one."""
    torch.manual_seed(1)
    config = ModelConfig(
        task="translate",
        vocab_size=VOCAB,
        d_model=64,
        n_heads=4,
        n_encoder_layers=2,
        n_decoder_layers=2,
        d_ff=128,
        dropout=0.0,
        max_length=24,
    )
    model = Transformer(config).eval()
    with torch.no_grad():
        model.decoder_norm.weight.copy_(torch.randn(config.d_model) * 4)
    return model


@pytest.fixture(scope="module", params=["random", pytest.param("trained", marks=pytest.mark.slow)])
def model(request) -> Transformer:
    """For the properties of the search that hold for any weights: random weights (fast),
    and in the slow set the trained model too, whose outputs end where it learned to."""
    return _random_model() if request.param == "random" else request.getfixturevalue("trained")


@pytest.fixture(scope="module")
def sources() -> tuple[torch.Tensor, torch.Tensor]:
    src, _, _ = _reverse_batch(torch.Generator().manual_seed(1), 24, max_len=10)
    return src, src != PAD


@torch.inference_mode()
def _reference_greedy(model: Transformer, src: torch.Tensor, limit: int) -> Hypothesis:
    """One sentence, no cache, no batching: the textbook loop."""
    ids = [BOS]
    logprob = 0.0
    memory = model.encode(src[None], (src != PAD)[None])
    for t in range(limit + 1):
        logits = model.decode(torch.tensor([ids]), memory, (src != PAD)[None])[0, -1]
        logp = logits.log_softmax(-1)
        logp[[PAD, BOS]] = -torch.inf
        token = EOS if t == limit else int(logp.argmax())
        logprob += float(logp[token])
        ids.append(token)
        if token == EOS:
            break
    return Hypothesis(ids[1:-1], logprob, logprob / length_penalty(len(ids) - 1, 0.6))


def _same(a: list[list[Hypothesis]], b: list[list[Hypothesis]], tol: float = 1e-4) -> None:
    assert [[h.tokens for h in hyps] for hyps in a] == [[h.tokens for h in hyps] for hyps in b]
    for hyps_a, hyps_b in zip(a, b, strict=True):
        for ha, hb in zip(hyps_a, hyps_b, strict=True):
            assert ha.logprob == pytest.approx(hb.logprob, abs=tol)
            assert ha.score == pytest.approx(hb.score, abs=tol)


@pytest.mark.slow
def test_the_model_learned_to_reverse(trained, sources):
    src, mask = sources
    out = generate(trained, src, mask, GenerationOptions(beam=1))
    correct = 0
    for row, hyps in zip(src.tolist(), out, strict=True):
        words = row[: row.index(EOS)]
        correct += hyps[0].tokens == words[::-1]
    assert correct >= len(out) // 2


def test_greedy_matches_a_reference_loop(model, sources):
    src, mask = sources
    out = generate(model, src, mask, GenerationOptions(beam=1, max_length=12))
    for row, hyps in zip(src, out, strict=True):
        _same([hyps], [[_reference_greedy(model, row, 12)]])


@pytest.mark.parametrize("beam", [1, 4])
def test_cached_decoding_equals_full_recomputation(model, sources, beam):
    src, mask = sources
    options = GenerationOptions(beam=beam, n_best=beam)
    _same(
        generate(model, src, mask, options, use_cache=True),
        generate(model, src, mask, options, use_cache=False),
    )


def test_beam_one_is_greedy(model, sources):
    src, mask = sources
    from attn.model.decoding.search import beam_search, greedy_search, max_lengths

    options = GenerationOptions(beam=1, length_penalty=0.0)
    limits = max_lengths(mask, options, model.config.max_length)
    with torch.inference_mode():
        _same(
            beam_search(model, src, mask, limits, options),
            greedy_search(model, src, mask, limits, options),
        )


@pytest.mark.slow
@pytest.mark.parametrize("alpha", [0.0, 0.6])
def test_beam_never_scores_below_greedy(trained, sources, alpha):
    src, mask = sources
    greedy = generate(trained, src, mask, GenerationOptions(beam=1, length_penalty=alpha))
    options = GenerationOptions(beam=4, length_penalty=alpha, exhaustive=True)
    beam = generate(trained, src, mask, options)
    for g, b in zip(greedy, beam, strict=True):
        assert b[0].score >= g[0].score - 1e-5


@pytest.mark.slow
def test_early_stopping_decodes_fewer_rows_and_only_forgoes_late_hypotheses(
    trained, sources, monkeypatch
):
    """The default rule stops when the finished hypotheses beat the best live beam ending at
    the next step; the exhaustive one searches on to the length limit. Up to the early stop
    both take the same steps, so the exhaustive n-best never scores lower."""
    src, mask = sources
    rows = []
    step = DecoderState.step

    def counting(self, tokens, t):
        rows[-1] += tokens.size(0)
        return step(self, tokens, t)

    monkeypatch.setattr(DecoderState, "step", counting)
    results = {}
    for exhaustive in (False, True):
        rows.append(0)
        options = GenerationOptions(beam=4, n_best=2, length_penalty=0.6, exhaustive=exhaustive)
        results[exhaustive] = generate(trained, src, mask, options)
    early_rows, exhaustive_rows = rows
    assert early_rows < exhaustive_rows, rows
    same = 0
    for early, full in zip(results[False], results[True], strict=True):
        for he, hf in zip(early, full, strict=True):
            assert hf.score >= he.score - 1e-5
        same += [h.tokens for h in early] == [h.tokens for h in full]
    assert same >= 0.9 * len(results[False])  # the late finds are rare


def test_n_best_lists_are_sorted_and_distinct(model, sources):
    src, mask = sources
    out = generate(model, src, mask, GenerationOptions(beam=5, n_best=3))
    for hyps in out:
        assert len(hyps) == 3
        scores = [h.score for h in hyps]
        assert scores == sorted(scores, reverse=True)
        assert len({tuple(h.tokens) for h in hyps}) == 3


@pytest.mark.parametrize("beam", [1, 4])
def test_batching_does_not_change_outputs(model, sources, beam):
    """Each sentence decodes alone, without padding, as it does in the padded batch."""
    src, mask = sources
    options = GenerationOptions(beam=beam, n_best=beam)
    batch = generate(model, src, mask, options)
    for i, hyps in enumerate(batch):
        n = int(mask[i].sum())
        _same([hyps], generate(model, src[i : i + 1, :n], mask[i : i + 1, :n], options))


@pytest.mark.parametrize("beam", [1, 3])
def test_no_repeat_ngram_blocks_repeats(beam):
    # An untrained model loves repeating itself; blocking must forbid any repeated bigram.
    torch.manual_seed(3)
    config = ModelConfig(
        task="summarize",
        vocab_size=VOCAB,
        d_model=32,
        n_heads=2,
        n_encoder_layers=1,
        n_decoder_layers=1,
        d_ff=64,
        dropout=0.0,
        max_length=30,
    )
    model = Transformer(config).eval()
    src = torch.tensor([[5, 6, 7, 8, EOS]])
    mask = src != PAD
    free = generate(model, src, mask, GenerationOptions(beam=beam, max_length=25))
    blocked = generate(
        model, src, mask, GenerationOptions(beam=beam, max_length=25, no_repeat_ngram=2)
    )

    def bigrams(tokens: list[int]) -> list[tuple[int, int]]:
        return list(itertools.pairwise(tokens))

    assert len(set(bigrams(free[0][0].tokens))) < len(bigrams(free[0][0].tokens))
    tokens = blocked[0][0].tokens
    assert len(set(bigrams(tokens))) == len(bigrams(tokens))


def test_blocking_also_stops_a_piece_three_times_in_a_row():
    from attn.model.decoding.search import _block_repeats

    generated = torch.tensor([[7, 9, 9], [7, 9, 8], [9, 9, 4]])
    logp = torch.zeros(3, 12)
    _block_repeats(logp, generated, 6)  # no 6-gram yet: only the run rule applies
    banned = (logp == -torch.inf).nonzero().tolist()
    assert banned == [[0, 9]]  # row 0 ends "9 9"; row 2's "9 9" is not at the end


def test_max_length_is_relative_to_the_source_and_capped():
    from attn.model.decoding.search import max_lengths

    mask = torch.tensor([[True] * 2 + [False] * 8, [True] * 10])
    options = GenerationOptions(max_length_a=1.5, max_length_b=3)
    assert max_lengths(mask, options, 100).tolist() == [6, 18]
    assert max_lengths(mask, options, 10).tolist() == [6, 10]
    assert max_lengths(mask, GenerationOptions(max_length=4), 100).tolist() == [4, 4]
    src = torch.tensor([[5, 6, EOS]])
    out = generate(_random_model(), src, src != PAD, GenerationOptions(beam=2, max_length=1))
    assert len(out[0][0].tokens) <= 1


@pytest.mark.parametrize("shortlist", [False, True])
def test_int8_beam_one_is_greedy(sources, shortlist):
    """With int8 weights too (a loaded model's `--int8`: steps and output projection), over
    the whole vocabulary and over per-sentence subsets. Only this invariant is asked of int8:
    its dynamic quantization scales each product's input by the largest value of the whole
    batch, so a sentence alone and in a batch may differ, and the full-prefix reference
    runs other (unfused) int8 products."""
    from attn.model.decoding.incremental import StepWeights
    from attn.model.decoding.quantize import quantize_int8
    from attn.model.decoding.search import _Output, beam_search, greedy_search, max_lengths

    src, mask = sources
    model = _random_model()
    weights = StepWeights(model, "int8")  # from the float weights, as `Translator.load` does
    quantize_int8(model)
    allowed = None
    if shortlist:
        allowed = torch.rand(src.size(0), VOCAB, generator=torch.Generator().manual_seed(7)) < 0.6
    options = GenerationOptions(beam=1, length_penalty=0.0)
    limits = max_lengths(mask, options, model.config.max_length)
    output = _Output(model, allowed)
    with torch.inference_mode():
        greedy = greedy_search(model, src, mask, limits, options, weights=weights, output=output)
        beam = beam_search(model, src, mask, limits, options, weights=weights, output=output)
    _same(beam, greedy)
    if shortlist:
        for row, hyps in zip(allowed, greedy, strict=True):
            assert row[hyps[0].tokens].all()


def test_invalid_options_are_refused():
    with pytest.raises(ValueError, match="n_best"):
        GenerationOptions(beam=2, n_best=3)
    with pytest.raises(ValueError, match="beam"):
        GenerationOptions(beam=0)


@pytest.mark.parametrize("vocab", [8000, 8003, 1000, 300, 40])
@pytest.mark.parametrize("k", [1, 2, 8])
def test_top_columns_equals_topk(vocab, k):
    """The grouped search finds what topk finds, also in rows that are mostly -inf."""
    g = torch.Generator().manual_seed(vocab + k)
    scores = torch.randn(37, vocab, generator=g) * 4
    scores[:5, 3:] = -torch.inf  # rows at their length limit: a few finite scores
    scores[5:9, :-2] = -torch.inf  # ... and the finite ones in the columns past the groups
    values, columns = top_columns(scores, k)
    expected_values, expected_columns = scores.topk(k, dim=1)
    assert torch.equal(values, expected_values)
    finite = expected_values > -torch.inf  # among -inf scores any column will do
    assert torch.equal(columns[finite], expected_columns[finite])
    assert torch.equal(scores.gather(1, columns), values)


# --- decoding over per-sentence subsets of the vocabulary (a lexical shortlist) -------------


def test_greedy_over_a_subset_holding_its_pieces_picks_the_same_pieces(model, sources):
    src, mask = sources
    full = generate(model, src, mask, GenerationOptions(beam=1))
    g = torch.Generator().manual_seed(5)
    allowed = torch.rand(src.size(0), VOCAB, generator=g) < 0.3  # (B, V) random extras
    for row, hyps in zip(allowed, full, strict=True):
        row[hyps[0].tokens] = True
    sub = generate(model, src, mask, GenerationOptions(beam=1), allowed=allowed)
    for a, b in zip(full, sub, strict=True):
        assert a[0].tokens == b[0].tokens
        # Normalized over fewer pieces: each step's log-probability can only rise.
        assert b[0].logprob >= a[0].logprob - 1e-5


def test_beam_over_subsets_uses_only_them_and_ignores_the_batch(model, sources):
    src, mask = sources
    g = torch.Generator().manual_seed(6)
    allowed = torch.rand(src.size(0), VOCAB, generator=g) < 0.6  # (B, V)
    options = GenerationOptions(beam=3, n_best=2)
    batch = generate(model, src, mask, options, allowed=allowed)
    for i, hyps in enumerate(batch):
        for h in hyps:
            assert allowed[i, h.tokens].all()
        n = int(mask[i].sum())
        alone = generate(
            model, src[i : i + 1, :n], mask[i : i + 1, :n], options, allowed=allowed[i : i + 1]
        )
        _same([hyps], alone)


@pytest.mark.slow
def test_beam_over_the_whole_vocabulary_as_a_subset_finds_the_plain_search(trained, sources):
    """Everything allowed: the same search, but normalized without PAD and BOS (never
    generated), so the same outputs only where a model gives those two pieces no weight: a
    trained one, not random weights."""
    src, mask = sources
    options = GenerationOptions(beam=3, n_best=2)
    everything = torch.ones(src.size(0), VOCAB, dtype=torch.bool)
    wide = generate(trained, src, mask, options, allowed=everything)
    full = generate(trained, src, mask, options)
    assert [[h.tokens for h in x] for x in wide] == [[h.tokens for h in x] for x in full]


def test_scores_over_a_subset_are_log_probabilities_over_its_pieces():
    from attn.model.decoding.search import _next_scores, _Output

    torch.manual_seed(0)
    config = ModelConfig(
        task="translate",
        vocab_size=VOCAB,
        d_model=16,
        n_heads=2,
        n_encoder_layers=1,
        n_decoder_layers=1,
        d_ff=32,
        max_length=24,
    )
    model = Transformer(config).eval()
    allowed = torch.rand(3, VOCAB, generator=torch.Generator().manual_seed(1)) < 0.5
    output = _Output(model, allowed)
    states = torch.randn(3, 16)
    seqs = torch.full((3, 1), BOS)
    limits = torch.full((3,), 10)
    scores, lse = _next_scores(model, states, seqs, 0, limits, 10, 0, output, output.block)
    assert lse is None
    logits = model.project(states)  # (3, V)
    for row in range(3):
        pieces = allowed[row].clone()
        pieces[EOS], pieces[[PAD, BOS]] = True, False
        expected = logits[row, pieces].log_softmax(-1)
        own = output.columns(pieces.nonzero().squeeze(1))
        torch.testing.assert_close(scores[row, own], expected, atol=1e-5, rtol=1e-5)
        others = torch.ones(scores.size(1), dtype=torch.bool)
        others[own] = False
        assert (scores[row, others] == -torch.inf).all()


@pytest.mark.parametrize("beam", [1, 4])
@pytest.mark.parametrize("exhaustive", [False, True])
def test_looking_for_finished_rows_every_few_steps_changes_nothing(
    model, sources, beam, exhaustive, monkeypatch
):
    """On a GPU a search reads which rows have finished only every few steps (no host wait per
    step); the rows and sentences done in between must end as if they had left at once."""
    import attn.model.decoding.search as search

    src, mask = sources
    options = GenerationOptions(beam=beam, n_best=min(beam, 2), exhaustive=exhaustive)
    every_step = generate(model, src, mask, options)
    monkeypatch.setattr(search, "check_every", lambda device: 5)
    _same(generate(model, src, mask, options), every_step)
