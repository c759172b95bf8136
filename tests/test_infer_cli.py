"""attn translate / summarize / sentiment end to end, on models trained on the demo corpora.

Pipes, broken pipes and exit codes go through the installed `attn` script in a subprocess;
the rest uses Typer's CliRunner in-process (no interpreter start-up per test).
"""

from __future__ import annotations

import json
import subprocess

import pytest
from helpers import ATTN
from typer.testing import CliRunner

from attn.cli.main import app

runner = CliRunner()

# Demo validation sentences (never trained on) with their reference outputs.
TRANSLATIONS = {
    "His teacher laughs in this park.": "Sein Lehrer lacht in diesem Park.",
    "A fast cow is beautiful.": "Eine schnelle Kuh ist schön.",
    "A young bird likes the letter.": "Ein junger Vogel mag den Brief.",
}
SUMMARIES = {
    "Sofia bought a new laptop. It was Monday. It happened in the garage. Lukas was not "
    "there.": "Sofia bought a new laptop in the garage on Monday.",
    "Tom baked a birthday cake. It was Wednesday. He did it at the office. Maria was not "
    "there.": "Tom baked a birthday cake at the office on Wednesday.",
}
REVIEWS = {  # the second is from the demo validation set, the first is new
    "The soup was wonderful. I would recommend this restaurant.": "positive",
    "The camera was terrible. I would not recommend this phone.": "negative",
}


def attn(*args: str, stdin: str = "", timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [ATTN, *args], input=stdin, capture_output=True, text=True, timeout=timeout
    )


def invoke(*args: str, stdin: str = ""):
    return runner.invoke(app, list(args), input=stdin)


def test_translate_a_demo_sentence_through_a_pipe(translate_model):
    source = "His teacher laughs in this park."
    result = attn("translate", "-m", str(translate_model), stdin=source + "\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == TRANSLATIONS[source] + "\n"
    assert result.stderr == ""


@pytest.mark.parametrize("options", [["--beam", "1"], ["--beam", "4"], ["--batch-tokens", "16"]])
def test_translations_of_unseen_demo_sentences(translate_model, options):
    stdin = "\n".join(TRANSLATIONS)
    result = invoke("translate", "-m", str(translate_model), *options, stdin=stdin)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == list(TRANSLATIONS.values())


def test_n_lines_in_n_lines_out_with_empty_lines_kept(translate_model, tmp_path):
    lines = ["", *TRANSLATIONS, "", "", "A fast cow is beautiful.", "   ", ""]
    source = tmp_path / "in.txt"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    # Small batches and chunks of several sizes: order must survive sorting by length.
    result = invoke("translate", "-m", str(translate_model), str(source), "--batch-size", "2")
    assert result.exit_code == 0, result.output
    out = result.stdout.split("\n")
    assert out[-1] == "" and len(out) - 1 == len(lines)
    for line, translation in zip(lines, out, strict=False):
        assert (translation == "") == (line.strip() == "")
        if line in TRANSLATIONS:
            assert translation == TRANSLATIONS[line]


def test_jsonl_output_has_source_output_scores_and_n_best(translate_model):
    result = invoke(
        "translate", "-m", str(translate_model), "--format", "jsonl", "--n-best", "3",
        stdin="A fast cow is beautiful.\n\n",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    first, empty = (json.loads(line) for line in result.stdout.splitlines())
    assert first["source"] == "A fast cow is beautiful."
    assert first["output"] == "Eine schnelle Kuh ist schön."
    assert first["logprob"] <= 0 and first["score"] <= 0
    assert first["n_best"][0]["output"] == first["output"]
    assert len(first["n_best"]) == 3
    scores = [h["score"] for h in first["n_best"]]
    assert scores == sorted(scores, reverse=True)
    assert empty == {"source": "", "output": "", "score": None, "logprob": None, "n_best": []}


def test_tsv_output(translate_model):
    result = invoke(
        "translate", "-m", str(translate_model), "-f", "tsv", stdin="A fast cow is beautiful.\n"
    )
    source, output, score = result.stdout.rstrip("\n").split("\t")
    assert (source, output) == ("A fast cow is beautiful.", "Eine schnelle Kuh ist schön.")
    assert float(score) <= 0


def test_jsonl_input_with_a_field(translate_model, tmp_path):
    records = tmp_path / "in.jsonl"
    records.write_text(
        json.dumps({"id": 1, "en": "A fast cow is beautiful."}) + "\n\n", encoding="utf-8"
    )
    result = invoke("translate", "-m", str(translate_model), str(records), "--field", "en")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Eine schnelle Kuh ist schön.\n\n"
    result = invoke("translate", "-m", str(translate_model), str(records), "--field", "de")
    assert result.exit_code == 1
    assert f'{records}:1: field "de" is missing' in result.stderr


def test_several_files_into_an_output_dir(translate_model, tmp_path):
    inputs = []
    for i, sentence in enumerate(TRANSLATIONS):
        path = tmp_path / f"part{i}.en"
        path.write_text(f"{sentence}\n\n", encoding="utf-8")
        inputs.append(str(path))
    out_dir = tmp_path / "out"
    result = invoke("translate", "-m", str(translate_model), *inputs, "--output-dir", str(out_dir))
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    for i, translation in enumerate(TRANSLATIONS.values()):
        assert (out_dir / f"part{i}.en").read_text(encoding="utf-8") == f"{translation}\n\n"
    # Without --output-dir, the outputs follow each other on stdout; -o writes a file.
    out_file = tmp_path / "all.de"
    result = invoke("translate", "-m", str(translate_model), *inputs, "-o", str(out_file))
    assert out_file.read_text(encoding="utf-8").split("\n\n")[:3] == list(TRANSLATIONS.values())


def test_output_option_conflicts_are_usage_errors(translate_model, tmp_path):
    source = tmp_path / "a.txt"
    source.write_text("x\n", encoding="utf-8")
    model = str(translate_model)
    assert invoke("translate", "-m", model, str(source), "-o", str(source)).exit_code == 2
    assert invoke("translate", "-m", model, "--output-dir", str(tmp_path)).exit_code == 2
    assert invoke("translate", "-m", model, "--beam", "2", "--n-best", "3").exit_code == 2


def test_sentiment_labels_and_probabilities(sentiment_model):
    stdin = "\n".join([*REVIEWS, ""]) + "\n"
    result = invoke("sentiment", "-m", str(sentiment_model), stdin=stdin)
    assert result.exit_code == 0, result.output
    lines = result.stdout.split("\n")
    assert lines[2:] == ["", ""]
    for line, expected in zip(lines, REVIEWS.values(), strict=False):
        label, prob = line.split("\t")
        assert label == expected
        assert 0.5 < float(prob) <= 1.0

    result = invoke("sentiment", "-m", str(sentiment_model), "-f", "jsonl", "--probs", stdin=stdin)
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["label"] for r in records] == [*REVIEWS.values(), None]
    assert set(records[0]["probs"]) == {"negative", "positive"}
    assert sum(records[0]["probs"].values()) == pytest.approx(1.0)
    assert records[0]["prob"] == max(records[0]["probs"].values())

    result = invoke("sentiment", "-m", str(sentiment_model), "-f", "tsv", "--probs", stdin=stdin)
    source, label, prob, *probs = result.stdout.splitlines()[0].split("\t")
    assert (source, label, len(probs)) == (next(iter(REVIEWS)), "positive", 2)


def test_summarize(summarize_model):
    result = invoke("summarize", "-m", str(summarize_model), stdin="\n".join(SUMMARIES) + "\n")
    assert result.exit_code == 0, result.output
    summaries = result.stdout.splitlines()
    assert len(summaries) == len(SUMMARIES)
    # A tiny model may miss a word; most of the reference must be there.
    for summary, reference in zip(summaries, SUMMARIES.values(), strict=True):
        words = set(reference.rstrip(".").split())
        assert len(words & set(summary.rstrip(".").split())) >= 0.6 * len(words), summary


def test_a_closed_pipe_ends_quietly(translate_model, tmp_path):
    big = tmp_path / "big.txt"
    # Two chunks of input: by the second, `head` has surely gone. Short outputs keep it quick.
    big.write_text("A fast cow is beautiful.\n" * 1500, encoding="utf-8")
    command = f'"{ATTN}" translate -m "{translate_model}" --beam 1 --max-length 3 "{big}"'
    script = f"{command} | head -1; exit ${{PIPESTATUS[0]}}"
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=300)
    assert result.stdout.count("\n") == 1
    assert result.returncode in (0, 141)
    assert "Traceback" not in result.stderr and "Error" not in result.stderr


def test_empty_stdin_gives_no_output(translate_model):
    result = attn("translate", "-m", str(translate_model), stdin="")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_missing_model_is_a_one_line_error(tmp_path):
    result = attn("translate", "-m", str(tmp_path / "nope"), stdin="hello\n")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


def test_no_default_model_says_to_train_one(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTN_HOME", str(tmp_path))
    result = invoke("summarize", stdin="hello\n")
    assert result.exit_code == 1
    assert "attn train summarize" in result.stderr


def test_invalid_utf8_names_file_and_line_unless_replaced(translate_model, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"A fast cow is beautiful.\nbad \xff byte\n")
    result = invoke("translate", "-m", str(translate_model), str(bad))
    assert result.exit_code == 1
    assert f"Error: {bad}:2: invalid UTF-8" in result.stderr
    result = invoke("translate", "-m", str(translate_model), str(bad), "--errors", "replace")
    assert result.exit_code == 0
    assert len(result.stdout.splitlines()) == 2


def test_long_inputs_get_one_warning_whole_or_cut(sentiment_model):
    long_review = " ".join(["The soup was wonderful."] * 200)
    stdin = f"{long_review}\n" * 3
    result = invoke("sentiment", "-m", str(sentiment_model), stdin=stdin)
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 3
    assert result.stderr.count("\n") == 1 and "1, 2, 3: 3 lines" in result.stderr
    assert "windows" in result.stderr
    result = invoke("sentiment", "-m", str(sentiment_model), "--max-input", "cut", stdin=stdin)
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 3
    assert result.stderr.count("\n") == 1 and "truncated" in result.stderr


def test_wrong_task_model_is_refused(sentiment_model):
    result = invoke("translate", "-m", str(sentiment_model), stdin="hello\n")
    assert result.exit_code == 1
    assert "sentiment model, not a translate model" in result.stderr


def test_python_api_matches_the_cli(translate_model):
    from attn import Translator

    translator = Translator.load(translate_model, device="cpu")
    results = list(translator.translate(iter([*TRANSLATIONS, ""]), beam=2, n_best=2))
    assert [r.text for r in results] == [*TRANSLATIONS.values(), ""]
    assert all(len(r.n_best) == 2 for r in results[:-1])


def test_a_quick_exit_is_allowed_once_every_output_is_written(
    translate_model, tmp_path, monkeypatch
):
    # (attn.cli.common.end_process: the installed script then skips the interpreter's teardown.)
    import attn.cli.common as common

    monkeypatch.setattr(common, "_quick_exit_allowed", False)
    failed = invoke("translate", "-m", str(tmp_path / "missing"), stdin="A dog.\n")
    assert failed.exit_code == 1
    assert common._quick_exit_allowed is False
    out = tmp_path / "out.txt"
    source, expected = next(iter(TRANSLATIONS.items()))
    done = invoke("translate", "-m", str(translate_model), "-o", str(out), stdin=source + "\n")
    assert done.exit_code == 0, done.output
    assert common._quick_exit_allowed is True
    assert out.read_text() == expected + "\n"
