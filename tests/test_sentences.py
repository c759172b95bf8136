"""Sentence splitting: per language, the fallback rules, the further split of over-long
sentences (no text dropped), the joined results, and translate's --split end to end."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest
from helpers import ATTN

from attn.data.sentences import (
    language_code,
    rule_spans,
    separators,
    split_sentences,
    split_to_fit,
)
from attn.model.inference.results import Candidate, Generation
from attn.model.inference.sentences import SentenceSplitter, _Text, join


def sentences(text: str, lang: str | None) -> list[str]:
    return [text[s:e] for s, e in split_sentences(text, lang)]


def rebuilt(text: str, spans: list[tuple[int, int]]) -> str:
    """The text from its spans and separators (what lies outside them is whitespace)."""
    seps = separators(text, spans)
    return "".join(text[s:e] + (seps[i] if i < len(seps) else "") for i, (s, e) in enumerate(spans))


@pytest.mark.parametrize(
    ("lang", "text", "expected"),
    [
        (
            "en",
            "Dr. Smith paid $4.50 at 3.5 p.m. today. He left!  Did he? Yes.",
            ["Dr. Smith paid $4.50 at 3.5 p.m. today.", "He left!", "Did he?", "Yes."],
        ),
        (
            "de",
            "Das ist z. B. ein Test. Er kam am 3. Mai an. Es kostet 3,5 Mio. Euro. Gut so!",
            [
                "Das ist z. B. ein Test.",
                "Er kam am 3. Mai an.",
                "Es kostet 3,5 Mio. Euro.",
                "Gut so!",
            ],
        ),
        (
            "fr",
            "M. Dupont est arrivé. Il a payé 3,50 €. Très bien !",
            ["M. Dupont est arrivé.", "Il a payé 3,50 €.", "Très bien !"],
        ),
        # A language pysbd does not know: the rules.
        (
            "xx",
            "Dr. Smith came at 3.5 p.m. today. Das ist z. B. gut. Yes!",
            ["Dr. Smith came at 3.5 p.m. today.", "Das ist z. B. gut.", "Yes!"],
        ),
        (None, "我很好。你呢？好的", ["我很好。", "你呢？", "好的"]),
    ],
)
def test_sentences_per_language(lang: str | None, text: str, expected: list[str]) -> None:
    assert sentences(text, lang) == expected
    assert rebuilt(text, split_sentences(text, lang)) == text.strip()


def test_separators_keep_the_source_whitespace() -> None:
    text = "  One here.  Two there.\n\nThree.  "
    spans = split_sentences(text, "en")
    assert [text[s:e] for s, e in spans] == ["One here.", "Two there.", "Three."]
    assert separators(text, spans) == ["  ", "\n\n"]
    assert split_sentences("   ", "en") == []


def test_language_codes_and_fallback() -> None:
    assert [language_code(c) for c in ("en_US", "DE-de", "fr", "", None)] == [
        "en",
        "de",
        "fr",
        None,
        None,
    ]
    text = "It is 5 p.m. now. Mr. Jones is here. Fine."
    assert sentences(text, "en-GB") == sentences(text, "en")
    assert [text[s:e] for s, e in rule_spans(text)] == [
        "It is 5 p.m. now.",
        "Mr. Jones is here.",
        "Fine.",
    ]


def test_split_to_fit_cuts_at_clauses_then_spaces_then_characters() -> None:
    text = "one two three, four five six; seven eight nine ten eleven twelve"
    words = lambda part: len(part.split()) <= 3  # noqa: E731
    parts = [text[s:e] for s, e in split_to_fit(text, (0, len(text)), words)]
    assert parts == ["one two three,", "four five six;", "seven eight nine", "ten eleven twelve"]
    long = "abcdefghij klm"
    chars = [long[s:e] for s, e in split_to_fit(long, (0, len(long)), lambda p: len(p) <= 4)]
    assert chars == ["abcd", "efgh", "ij", "klm"]
    assert "".join(chars) == long.replace(" ", "")


class _Pieces:
    """A tokenizer whose pieces are characters (the fallback's worst case)."""

    def encode(self, texts, *, max_length, keep="head"):
        return [list(t) for t in texts], [len(t) + 1 > max_length for t in texts]


def test_no_text_is_dropped_from_an_over_long_sentence() -> None:
    text = "Seven horses run along a very long road, past the old mill; then they rest by it."
    split = SentenceSplitter(_Pieces(), 12, "head", "en")(text)
    assert split.split_further
    parts = [text[s:e] for s, e in split.spans]
    assert all(len(p) + 1 <= 12 for p in parts)
    # Every character outside the parts is whitespace, and the parts hold all the rest.
    assert "".join(parts).replace(" ", "") == text.replace(" ", "")
    assert rebuilt(text, split.spans) == text


def _result(source: str, hyps: list[tuple[str, float, int]], align: list | None = None):
    n_best = [Candidate(t, lp / ((5 + n) / 6) ** 0.6, lp, n) for t, lp, n in hyps]
    best = n_best[0]
    return Generation(source, best.text, best.score, best.logprob, n_best, alignment=align)


def test_join_keeps_separators_and_sums_scores_and_shifts_alignments() -> None:
    text = "A dog runs.  The cat sleeps."
    spans = split_sentences(text, "en")
    first = _result(
        "A dog runs.", [("Ein Hund rennt.", -1.0, 5), ("Hund rennt.", -2.0, 4)], [(0, 0), (2, 2)]
    )
    second = _result("The cat sleeps.", [("Die Katze schläft.", -0.5, 6)], [(0, 0), (2, 2)])
    joined = join(_Text(text, spans, False), [first, second], 0.6)
    assert joined.text == "Ein Hund rennt.  Die Katze schläft."
    assert [c.text for c in joined.n_best] == [
        "Ein Hund rennt.  Die Katze schläft.",
        "Hund rennt.  Die Katze schläft.",  # the second sentence has one hypothesis
    ]
    assert math.isclose(joined.logprob, -1.5)
    assert math.isclose(joined.score, -1.5 / ((5 + 11) / 6) ** 0.6)
    # The second sentence's words are the line's 3, 4, 5, and the output's 3, 4, 5.
    assert joined.alignment == [(0, 0), (2, 2), (3, 3), (5, 5)]
    assert joined.record()["sentences"][1]["output"] == "Die Katze schläft."


# End to end, with the demo model.

PARAGRAPH = "My white horse sits next to the street. His teacher laughs in this park."
LINES = ["My white horse sits next to the street.", "His teacher laughs in this park."]


def attn(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([ATTN, *args], input=stdin, capture_output=True, text=True, timeout=300)


def test_a_paragraph_line_gives_one_line_of_its_sentences(translate_model: Path) -> None:
    one_by_one = attn("translate", "-m", str(translate_model), stdin="\n".join(LINES) + "\n")
    assert one_by_one.returncode == 0, one_by_one.stderr
    paragraph = attn("translate", "-m", str(translate_model), stdin=f"{PARAGRAPH}\n\n{LINES[1]}\n")
    assert paragraph.returncode == 0, paragraph.stderr
    expected = one_by_one.stdout.splitlines()
    assert paragraph.stdout.splitlines() == [" ".join(expected), "", expected[1]]
    # --split none: the line is one input, as before.
    whole = attn("translate", "-m", str(translate_model), "--split", "none", stdin=PARAGRAPH)
    assert whole.returncode == 0, whole.stderr
    assert len(whole.stdout.splitlines()) == 1


def test_jsonl_nbest_and_align_per_sentence(translate_model: Path) -> None:
    result = attn(
        "translate", "-m", str(translate_model), "--format", "jsonl", "--n-best", "2", "--align",
        stdin=PARAGRAPH + "\n",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert [s["source"] for s in record["sentences"]] == LINES
    assert record["output"] == " ".join(s["output"] for s in record["sentences"])
    assert math.isclose(record["logprob"], sum(s["logprob"] for s in record["sentences"]))
    assert record["n_best"][0]["output"] == record["output"]
    assert len(record["n_best"]) == 2
    # The second sentence's alignment, shifted by the words before it on both sides.
    first, second = record["sentences"]
    s0, t0 = len(LINES[0].split()), len(first["output"].split())
    shifted = sorted([s, t] for s, t in first["alignment"]) + sorted(
        [s + s0, t + t0] for s, t in second["alignment"]
    )
    assert record["alignment"] == sorted(shifted)


def test_api_splits_by_default_and_never_cuts(translate_model: Path) -> None:
    from attn import Translator

    translator = Translator.load(translate_model, device="cpu")
    split, whole = (
        next(translator.translate([PARAGRAPH], split=s, beam=1)) for s in ("sentences", "none")
    )
    assert [s.source for s in split.sentences] == LINES
    assert whole.sentences is None
    with pytest.raises(ValueError, match="split"):
        translator.translate([PARAGRAPH], split="words")
    # A model that takes 8 pieces: the sentences are split further, never cut.
    translator.config = translator.config.replace(max_length=8)
    (result,) = translator.translate([PARAGRAPH], beam=1)
    assert result.split_further and not result.truncated
    sources = [s.source for s in result.sentences]
    assert "".join(sources).replace(" ", "") == PARAGRAPH.replace(" ", "")
    _, cut = translator.tokenizer.encode(sources, max_length=8)
    assert not any(cut)


def test_cli_names_the_lines_split_further(translate_model: Path, tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.mkdir()
    for f in translate_model.iterdir():
        if f.is_file():
            (small / f.name).write_bytes(f.read_bytes())
    config = json.loads((small / "config.json").read_text())
    config["model"]["max_length"] = 8
    (small / "config.json").write_text(json.dumps(config))
    result = attn("translate", "-m", str(small), "--beam", "1", stdin=f"A dog.\n{PARAGRAPH}\n")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2
    assert "<stdin>:2:" in result.stderr and "split further" in result.stderr


def test_server_translate_splits_unless_told_not_to(translate_model: Path) -> None:
    from test_serve import request, running

    from attn import Translator
    from attn.server.app import create_app

    translator = Translator.load(translate_model, device="cpu")
    with running(create_app({"translate": translator})) as base:
        split = request(base, "/translate", {"text": PARAGRAPH, "beam": 1})
        whole = request(base, "/translate", {"text": PARAGRAPH, "beam": 1, "split": "none"})
        bad = request(base, "/translate", {"text": PARAGRAPH, "split": "words"})
    assert split[0] == whole[0] == 200
    assert [s["source"] for s in split[1]["sentences"]] == LINES
    assert "sentences" not in whole[1]
    assert bad[0] == 422
