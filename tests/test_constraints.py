"""Terminology: glossaries, lexically constrained beam search and forced prefixes."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from attn.cli.main import app
from attn.data import DataError
from attn.data.glossary import Glossary, GuidedText, guided, words

SENTENCES = [
    "His small bird paints her fast boat.",
    "Birds are beautiful.",
    "",
    "His hungry mouse is red.",
]
# Target words of the demo corpus that the plain translations above do not hold.
CONSTRAINTS = [["Maus"], ["Boot", "rot"], [], ["Vogel"]]


def test_glossary_matches_source_terms_on_words(tmp_path):
    path = tmp_path / "terms.tsv"
    path.write_text("bird\tVogel\nfast boat\tSchnellboot\n\nRed\tRot\n", encoding="utf-8")
    glossary = Glossary.read(path)
    assert glossary.targets("A bird's fast boat.") == ["Vogel", "Schnellboot"]
    assert glossary.targets("birds, a fast  boats and red") == []
    assert Glossary.read(path, ignore_case=True).targets("RED bird") == ["Vogel", "Rot"]


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("bird\tVogel\nboat\t\n", "2: the target term is empty"),
        ("bird\tVogel\n\tBoot\n", "2: the source term is empty"),
        ("bird Vogel\n", "1: expected source term<TAB>target term, found 1 fields"),
        ("bird\tVogel\nbird\tHuhn\n", '2: "bird" is already in the glossary (line 1)'),
    ],
)
def test_bad_glossaries_name_file_and_line(tmp_path, text, what):
    path = tmp_path / "terms.tsv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError) as e:
        Glossary.read(path)
    assert str(e.value).startswith(f"{path}:{what}")


def test_word_ends_are_word_starts_punctuation_and_eos():
    from attn.model.decoding.constraints import word_ends

    pieces = ["<pad>", "</s>", "\u2581K\u00fcche", "n", ".", "\u2581", "2"]
    assert word_ends(pieces, 1).tolist() == [True, True, True, False, True, True, False]


def test_guided_texts_keep_their_directions_through_pickling():
    import pickle

    texts = list(guided(["a", GuidedText("b", ["x"], "P")], [["y"], ["z"]], "Q"))
    assert texts == ["a", "b"]
    assert (texts[0].constraints, texts[0].prefix) == (("y",), "Q")
    back = pickle.loads(pickle.dumps(texts[1]))
    assert (back, back.constraints, back.prefix) == ("b", ("x", "z"), "P")


@pytest.fixture(scope="module")
def translator(translate_model):
    from attn import Translator

    return Translator.load(translate_model, device="cpu")


def _outputs(results):
    return [(r.text, r.score) for r in results]


@pytest.mark.parametrize("shortlist", [True, False])
def test_constraints_appear_and_unconstrained_lines_are_unchanged(translator, shortlist):
    plain = list(translator.translate(SENTENCES, shortlist=shortlist))
    for text, cons in zip(plain, CONSTRAINTS, strict=True):
        assert not any(c in text.text for c in cons)  # (the test means something)
    got = list(translator.translate(SENTENCES, constraints=CONSTRAINTS, shortlist=shortlist))
    for result, cons in zip(got, CONSTRAINTS, strict=True):
        assert result.constraints_met
        assert all(c in words(result.text) for c in cons), (result.text, cons)  # whole words
    assert got[2].text == ""
    # No constraint in a text or in the whole input: the plain search's output.
    assert got[1].text != plain[1].text
    none = list(translator.translate(SENTENCES, constraints=[[]] * 4, shortlist=shortlist))
    assert _outputs(none) == _outputs(plain)
    mixed = [c if i == 0 else [] for i, c in enumerate(CONSTRAINTS)]
    partly = list(translator.translate(SENTENCES, constraints=mixed, shortlist=shortlist))
    for a, b in zip(partly[1:], plain[1:], strict=True):
        assert a.text == b.text and a.score == pytest.approx(b.score, abs=1e-5)


def test_constraints_with_n_best_int8_align_and_any_batching(translator, translate_model):
    from attn import Translator

    one = list(translator.translate(SENTENCES, constraints=CONSTRAINTS, batch_size=1))
    many = list(translator.translate(SENTENCES, constraints=CONSTRAINTS, batch_size=4, workers=2))
    assert [r.text for r in one] == [r.text for r in many]
    best = list(translator.translate(SENTENCES, constraints=CONSTRAINTS, n_best=3, align=True))
    for result, cons in zip(best, CONSTRAINTS, strict=True):
        assert all(c in h.text for h in result.n_best for c in cons)
        assert result.alignment is not None
    int8 = Translator.load(translate_model, device="cpu", int8=True)
    for result, cons in zip(
        int8.translate(SENTENCES, constraints=CONSTRAINTS), CONSTRAINTS, strict=True
    ):
        assert all(c in result.text for c in cons)


def test_prefix_starts_the_output_and_the_model_continues(translator):
    got = list(translator.translate(SENTENCES, prefix=["Ihr", "Die", None, ""]))
    plain = list(translator.translate(SENTENCES))
    assert got[0].text.startswith("Ihr ") and got[1].text.startswith("Die ")
    assert len(got[0].text) > len("Ihr ") and got[3].text == plain[3].text
    both = list(translator.translate(SENTENCES[:2], prefix="Ihr", constraints=[["Maus"], []]))
    assert both[0].text.startswith("Ihr") and "Maus" in both[0].text


def test_unmet_and_too_long_constraints(translator):
    plain = list(translator.translate(SENTENCES, max_length=2))
    long = ["Maus Boot Vogel rot schön"]
    got = list(translator.translate(SENTENCES, constraints=[long, [], [], []], max_length=2))
    assert not got[0].constraints_met and got[0].text == plain[0].text
    assert all(r.constraints_met for r in got[1:])
    huge = " ".join(["Maus"] * 300)
    with pytest.raises(ValueError, match="more than the model's max_length"):
        list(translator.translate(SENTENCES, constraints=[[huge], [], [], []]))
    with pytest.raises(ValueError, match="need beam search"):
        list(translator.translate(SENTENCES, prefix="Die", sample=True))


def test_cli_glossary_jsonl_and_prefix(translate_model, tmp_path):
    runner = CliRunner()
    base = ["translate", "-m", str(translate_model)]
    terms = tmp_path / "terms.tsv"
    terms.write_text("bird\tMaus\nbeautiful\trot\n", encoding="utf-8")
    stdin = "\n".join(SENTENCES) + "\n"
    result = runner.invoke(app, [*base, "--glossary", str(terms)], input=stdin)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 4 and "Maus" in lines[0] and "rot" in lines[1] and lines[2] == ""
    records = [
        {"text": SENTENCES[0], "constraints": ["Boot", "Maus"]},
        {"text": SENTENCES[1], "prefix": "Die"},
        {"text": ""},
        {"text": SENTENCES[3]},
    ]
    jsonl = "".join(json.dumps(r) + "\n" for r in records)
    result = runner.invoke(app, [*base, "--field", "text"], input=jsonl)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "Boot" in lines[0] and "Maus" in lines[0] and lines[1].startswith("Die ")
    result = runner.invoke(app, [*base, "--prefix", "Ihr"], input=SENTENCES[0] + "\n")
    assert result.exit_code == 0 and result.stdout.startswith("Ihr ")
    warned = runner.invoke(
        app,
        [*base, "--field", "text", "--max-length", "2"],
        input=json.dumps({"text": SENTENCES[0], "constraints": ["Maus Boot Vogel rot"]}) + "\n",
    )
    assert warned.exit_code == 0 and "Warning: <stdin>:1: a constraint" in warned.stderr


def test_cli_glossary_errors(translate_model, tmp_path):
    runner = CliRunner()
    base = ["translate", "-m", str(translate_model)]
    terms = tmp_path / "terms.tsv"
    terms.write_text("bird\tVogel\nboat\t\n", encoding="utf-8")
    result = runner.invoke(app, [*base, "--glossary", str(terms)], input="x\n")
    assert result.exit_code == 1
    assert result.stderr.strip() == f"Error: {terms}:2: the target term is empty"
    terms.write_text("bird\tVogel\n", encoding="utf-8")
    for extra in (["--beam", "1"], ["--sample"]):
        result = runner.invoke(app, [*base, "--glossary", str(terms), *extra], input="x\n")
        assert result.exit_code == 2, extra
    assert runner.invoke(app, [*base, "--prefix", "Die", "--sample"], input="x\n").exit_code == 2
    bad = runner.invoke(
        app, [*base, "--field", "text"], input='{"text": "a", "constraints": "b"}\n'
    )
    assert bad.exit_code == 1 and "<stdin>:1:" in bad.stderr
