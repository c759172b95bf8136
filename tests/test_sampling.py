"""Sampling: the filters on hand-made logits, the draw, and the search on random weights
(greedy when it must be, reproducible by seed whatever the batching, varied across seeds,
within a shortlist's subsets, with int8)."""

from __future__ import annotations

import math

import pytest
import torch
from test_generate import PAD, VOCAB, _random_model, _reverse_batch, _same

from attn.model.decoding.sampling import draw, filter_logits, row_seed, sample
from attn.model.decoding.sampling_options import SamplingOptions
from attn.model.decoding.search import GenerationOptions, generate

GREEDY = GenerationOptions(beam=1)


def _logits(*probs: float) -> torch.Tensor:
    return torch.tensor([[math.log(p) if p else -math.inf for p in probs]])


def _kept(scores: torch.Tensor) -> list[int]:
    return (scores[0] > -torch.inf).nonzero().squeeze(1).tolist()


def test_top_p_keeps_the_fewest_best_pieces_that_reach_p():
    logits = _logits(0.15, 0.5, 0.05, 0.3)
    assert _kept(filter_logits(logits, 1.0, 0, 0.7)) == [1, 3]  # 0.5 + 0.3 >= 0.7
    assert _kept(filter_logits(logits, 1.0, 0, 0.8)) == [1, 3]  # exactly reached
    assert _kept(filter_logits(logits, 1.0, 0, 0.81)) == [0, 1, 3]
    assert _kept(filter_logits(logits, 1.0, 0, 0.5)) == [1]
    assert _kept(filter_logits(logits, 1.0, 0, 0.01)) == [1]  # the best piece always stays
    assert _kept(filter_logits(logits, 1.0, 0, 1.0)) == [0, 1, 2, 3]


def test_top_k_keeps_the_k_best_and_temperature_divides():
    logits = _logits(0.15, 0.5, 0.05, 0.3, 0.0)  # the last piece is forbidden (-inf)
    assert _kept(filter_logits(logits, 1.0, 2, 1.0)) == [1, 3]
    assert _kept(filter_logits(logits, 1.0, 1, 1.0)) == [1]
    assert _kept(filter_logits(logits, 1.0, 0, 1.0)) == [0, 1, 2, 3]
    assert _kept(filter_logits(logits, 1.0, 9, 1.0)) == [0, 1, 2, 3]
    both = filter_logits(logits, 1.0, 3, 0.7)  # top-k first, then the nucleus of what is left
    assert _kept(both) == [1, 3]
    hot = filter_logits(logits, 2.0, 0, 1.0)
    assert torch.allclose(hot[:, :4], logits[:, :4] / 2)
    assert hot[0, 4] == -torch.inf
    # The nucleus is taken after the temperature: flatter, it holds more pieces.
    assert _kept(filter_logits(logits, 4.0, 0, 0.7)) == [0, 1, 3]
    assert torch.equal(filter_logits(logits, 1.0, 0, 1.0), logits)  # nothing changed


def test_draw_follows_the_probabilities_and_never_draws_a_forbidden_piece():
    probs = [0.1, 0.0, 0.6, 0.3, 0.0]
    n = 10_000
    scores = _logits(*probs).expand(n, -1)
    uniform = (torch.arange(n) + 0.5) / n  # evenly spread: counts are the probabilities
    counts = torch.bincount(draw(scores, uniform), minlength=5).tolist()
    assert counts[1] == counts[4] == 0
    for count, p in zip(counts, probs, strict=True):
        assert abs(count / n - p) < 1e-3
    edges = draw(_logits(*probs).expand(2, -1), torch.tensor([0.0, 1.0 - 1e-7]))
    assert edges.tolist() == [0, 3]


def test_row_seeds_differ_by_index_and_sample_and_are_stable():
    seeds = {row_seed(s, i, j) for s in (0, 1) for i in range(20) for j in range(3)}
    assert len(seeds) == 120
    assert row_seed(5, 7, 1) == row_seed(5, 7, 1)
    assert all(0 <= s < 2**63 for s in seeds)


@pytest.mark.parametrize("bad", ["temperature", "top_k", "top_p", "top_p_zero", "n"])
def test_invalid_sampling_options_are_refused(bad):
    kwargs = {
        "temperature": {"temperature": -0.5},
        "top_k": {"top_k": -1},
        "top_p": {"top_p": 1.5},
        "top_p_zero": {"top_p": 0.0},
        "n": {"n": 0},
    }[bad]
    with pytest.raises(ValueError, match=bad.removesuffix("_zero")):
        SamplingOptions(**kwargs)


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    src, _, _ = _reverse_batch(torch.Generator().manual_seed(3), 8, max_len=10)
    return src, src != PAD


def _subsets(n: int) -> torch.Tensor:
    return torch.rand(n, VOCAB, generator=torch.Generator().manual_seed(7)) < 0.6


@pytest.mark.parametrize("shortlist", [False, True])
@pytest.mark.parametrize("greedy", [{"temperature": 0.0}, {"top_k": 1, "temperature": 3.0}])
def test_temperature_zero_or_top_k_one_is_greedy_search(batch, shortlist, greedy):
    src, mask = batch
    model = _random_model()
    allowed = _subsets(src.size(0)) if shortlist else None
    expected = generate(model, src, mask, GREEDY, allowed=allowed)
    got = sample(model, src, mask, GREEDY, SamplingOptions(**greedy), range(8), allowed=allowed)
    _same(got, expected)


def _tokens(hyps) -> list[list[list[int]]]:
    return [[h.tokens for h in group] for group in hyps]


def test_the_same_seed_gives_the_same_samples_and_other_seeds_others(batch):
    src, mask = batch
    model = _random_model()
    hot = SamplingOptions(temperature=2.0, seed=11)
    first = sample(model, src, mask, GREEDY, hot, range(8))
    assert _tokens(sample(model, src, mask, GREEDY, hot, range(8))) == _tokens(first)
    other = sample(model, src, mask, GREEDY, SamplingOptions(temperature=2.0, seed=12), range(8))
    differ = sum(a != b for a, b in zip(_tokens(first), _tokens(other), strict=True))
    assert differ >= 6  # flat distributions: nearly every sentence changes
    greedy = generate(model, src, mask, GREEDY)
    assert _tokens(first) != _tokens(greedy)


def test_samples_do_not_depend_on_the_batch(batch):
    """A sentence's samples come from its index in the input, not its place in a batch."""
    src, mask = batch
    model = _random_model()
    options = SamplingOptions(temperature=1.5, top_p=0.9, seed=3, n=2)
    together = sample(model, src, mask, GREEDY, options, range(8))
    alone = []
    for i in range(8):
        width = int(mask[i].sum())
        alone += sample(
            model, src[i : i + 1, :width], mask[i : i + 1, :width], GREEDY, options, [i]
        )
    _same(together, alone)
    reordered = sample(model, src.flip(0), mask.flip(0), GREEDY, options, range(7, -1, -1))
    _same(together, reordered[::-1])


def test_n_samples_per_sentence_best_first_within_its_subset(batch):
    src, mask = batch
    model = _random_model()
    allowed = _subsets(src.size(0))
    out = sample(
        model, src, mask, GREEDY, SamplingOptions(temperature=2.0, n=4), range(8), allowed=allowed
    )
    assert [len(group) for group in out] == [4] * 8
    for row, group in zip(allowed, out, strict=True):
        scores = [h.score for h in group]
        assert scores == sorted(scores, reverse=True)
        assert len({tuple(h.tokens) for h in group}) > 1 or all(not h.tokens for h in group)
        for h in group:
            assert row[h.tokens].all()
            assert all(t not in (0, 2) for t in h.tokens)  # never PAD or BOS
    with pytest.raises(ValueError, match="indices"):
        sample(model, src, mask, GREEDY, SamplingOptions(), range(3))


def test_int8_samples_are_greedy_at_top_k_one_and_reproducible(batch):
    from attn.model.decoding.incremental import StepWeights
    from attn.model.decoding.quantize import quantize_int8

    src, mask = batch
    model = _random_model()
    weights = StepWeights(model, "int8")
    quantize_int8(model)
    allowed = _subsets(src.size(0))
    expected = generate(model, src, mask, GREEDY, allowed=allowed, weights=weights)
    one = SamplingOptions(top_k=1)
    _same(
        sample(model, src, mask, GREEDY, one, range(8), allowed=allowed, weights=weights), expected
    )
    hot = SamplingOptions(temperature=2.0, seed=1)
    a = sample(model, src, mask, GREEDY, hot, range(8), allowed=allowed, weights=weights)
    b = sample(model, src, mask, GREEDY, hot, range(8), allowed=allowed, weights=weights)
    assert _tokens(a) == _tokens(b)


# --- the Python API, the CLI and the server, on the demo translation model (slow) ---------

SENTENCES = [
    "His teacher laughs in this park.",
    "A fast cow is beautiful.",
    "",
    "A young bird likes the letter.",
    "The red car is in the garden.",
    "My white horse sits next to the street.",
    "A woman reads a book.",
    "The children play in the park.",
    "A small dog runs to the old man.",
]


@pytest.fixture(scope="module")
def translator(translate_model):
    from attn import Translator

    return Translator.load(translate_model, device="cpu")


def _texts(results) -> list[list[str]]:
    return [[c.text for c in r.n_best] for r in results]


@pytest.mark.parametrize("greedy", [{"temperature": 0.0}, {"top_k": 1}])
def test_api_greedy_sampling_equals_greedy_search(translator, translate_model, greedy):
    from attn import Translator

    int8 = Translator.load(translate_model, device="cpu", int8=True)
    for pipeline in (translator, int8):
        for shortlist in (True, False):
            expected = _texts(pipeline.translate(SENTENCES, beam=1, shortlist=shortlist))
            got = pipeline.translate(SENTENCES, sample=True, shortlist=shortlist, **greedy)
            assert _texts(got) == expected


def test_api_samples_follow_the_seed_not_the_batching_or_workers(translator):
    hot = {"sample": True, "temperature": 1.5, "n_best": 3}
    first = _texts(translator.translate(SENTENCES, seed=5, batch_size=8, **hot))
    assert [len(r) for r in first] == [3, 3, 0, 3, 3, 3, 3, 3, 3]
    assert _texts(translator.translate(SENTENCES, seed=5, batch_size=1, **hot)) == first
    assert _texts(translator.translate(SENTENCES, seed=5, workers=2, batch_size=2, **hot)) == first
    other = _texts(translator.translate(SENTENCES, seed=6, **hot))
    assert other != first
    with pytest.raises(ValueError, match="top_p applies only when sampling"):
        list(translator.translate(SENTENCES, top_p=0.9))
    with pytest.raises(ValueError, match="top_p must be in"):
        list(translator.translate(SENTENCES, sample=True, top_p=0.0))


def test_cli_sample_is_reproducible_and_n_best_gives_samples(translate_model):
    from typer.testing import CliRunner

    from attn.cli.main import app

    runner = CliRunner()
    args = ["translate", "-m", str(translate_model), "--sample", "--temperature", "1.5"]
    stdin = "\n".join(SENTENCES) + "\n"
    a = runner.invoke(app, [*args, "--seed", "3", "--n-best", "2"], input=stdin)
    assert a.exit_code == 0, a.output
    lines = a.stdout.splitlines()
    assert len(lines) == len(SENTENCES) and lines[2] == ""
    assert all(line.count("\t") == 3 for i, line in enumerate(lines) if i != 2)
    b = runner.invoke(
        app, [*args, "--seed", "3", "--n-best", "2", "--batch-size", "1"], input=stdin
    )
    # The same samples (scores may differ in the last digit: other batches, other rounding).
    assert [line.split("\t")[::2] for line in b.stdout.splitlines()] == [
        line.split("\t")[::2] for line in lines
    ]
    greedy = runner.invoke(
        app, ["translate", "-m", str(translate_model), "--beam", "1"], input=stdin
    )
    zero = runner.invoke(
        app,
        ["translate", "-m", str(translate_model), "--sample", "--temperature", "0"],
        input=stdin,
    )
    assert zero.exit_code == 0 and zero.stdout == greedy.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sample", "--beam", "4"], "drop --beam 4"),
        (["--top-k", "5"], "applies only with --sample"),
        (["--temperature", "0.5"], "applies only with --sample"),
        (["--sample", "--temperature", "-1"], "temperature"),
        (["--sample", "--top-p", "0"], "top-p"),
        (["--sample", "--top-p", "1.5"], "top-p"),
        (["--sample", "--top-k", "-2"], "top-k"),
    ],
)
def test_cli_conflicting_sampling_options_are_usage_errors(args, message):
    from typer.testing import CliRunner

    from attn.cli.main import app

    for command in ("translate", "summarize"):
        result = CliRunner().invoke(app, [command, *args], input="a\n")
        assert result.exit_code == 2, result.output
        assert message in result.output


def test_serve_samples_as_the_api_does_and_refuses_conflicts(translator):
    from test_serve import SERVE_EXTRA_MISSING, request, running

    assert SERVE_EXTRA_MISSING is None, "CI installs the serve extra"
    from attn.server.app import Limits, create_app

    texts = SENTENCES[:4]
    options = {"sample": True, "temperature": 1.5, "top_p": 0.95, "seed": 4, "n_best": 2}
    want = list(translator.translate(texts, **options))
    limits = Limits(max_texts=8, max_chars=300, max_body_bytes=4096)
    with running(create_app({"translate": translator}, limits=limits, max_wait=0.02)) as base:
        status, body = request(base, "/translate", {"texts": texts, **options})
        assert status == 200
        assert body["results"] == [r.record(2) for r in want]
        for bad, message in [
            ({"sample": True, "beam": 4}, "drop beam 4"),
            ({"top_p": 0.5}, "top_p applies only with sample"),
            ({"sample": True, "top_p": 0}, "top_p"),
            ({"sample": True, "temperature": -1}, "temperature"),
        ]:
            status, body = request(base, "/translate", {"text": "a", **bad})
            assert status == 422 and message in body["error"], body
