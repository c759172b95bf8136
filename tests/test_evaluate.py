"""attn evaluate: scores checked against sacrebleu and rouge-score called directly, hand-made
classification cases, the errors, and model runs on the demo validation splits.

Scoring files runs in-process (CliRunner); model runs go through the installed script on a
copy of the session's demo models, so the metrics.jsonl line lands in a directory of the test.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import sacrebleu
from helpers import ATTN
from rouge_score import rouge_scorer
from typer.testing import CliRunner

from attn.cli.main import app
from attn.data import DataError, demo_dir
from attn.model.evaluation.evaluate import evaluate_model, load_test_set, score

runner = CliRunner()

HYPS = ["The cat sat on the mat.", "A dog runs in the park.", "Two men play chess outside."]
REFS = ["The cat sat on a mat.", "The dog runs through the park.", "Two men are playing chess."]
REFS2 = ["A cat is sitting on the mat.", "A dog runs in a park.", "Two men play chess outdoors."]


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_bleu_and_chrf_of_identical_text_are_100():
    evaluation = score("translate", REFS, [REFS])
    assert evaluation.scores["bleu"] == pytest.approx(100.0)
    assert evaluation.scores["chrf"] == pytest.approx(100.0)


def test_translation_scores_and_signatures_are_sacrebleus():
    evaluation = score("translate", HYPS, [REFS])
    assert evaluation.scores["bleu"] == pytest.approx(sacrebleu.corpus_bleu(HYPS, [REFS]).score)
    assert evaluation.scores["chrf"] == pytest.approx(sacrebleu.corpus_chrf(HYPS, [REFS]).score)
    assert 0 < evaluation.scores["bleu"] < 100
    version = sacrebleu.__version__
    assert evaluation.signatures == {
        "bleu": f"nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:{version}",
        "chrf": f"nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:{version}",
    }


def test_several_translation_references():
    evaluation = score("translate", HYPS, [REFS, REFS2])
    expected = sacrebleu.corpus_bleu(HYPS, [REFS, REFS2]).score
    assert evaluation.scores["bleu"] == pytest.approx(expected)
    assert evaluation.scores["bleu"] > score("translate", HYPS, [REFS]).scores["bleu"]
    assert evaluation.signatures["bleu"].startswith("nrefs:2|")


def test_rouge_takes_the_best_reference_of_each_example():
    hyps = ["the cat sat on the mat", "a dog barks at night"]
    first = ["the cat sat on the mat", "nothing in common here"]
    second = ["words that do not match", "a dog barks at night"]
    both = score("summarize", hyps, [first, second]).scores
    assert both == pytest.approx({"rouge1": 100.0, "rouge2": 100.0, "rougeL": 100.0})
    # Per example the best of the references, per metric, then the mean over examples.
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    hyps, first, second = HYPS, REFS, REFS2
    expected = {
        name: 100
        * sum(
            max(scorer.score(r1, h)[name].fmeasure, scorer.score(r2, h)[name].fmeasure)
            for h, r1, r2 in zip(hyps, first, second, strict=True)
        )
        / len(hyps)
        for name in ("rouge1", "rouge2", "rougeL")
    }
    assert score("summarize", hyps, [first, second]).scores == pytest.approx(expected)


def test_rouge_with_one_reference_uses_stemming():
    scores = score("summarize", ["the dogs were running"], [["the dog was running"]]).scores
    # "dogs"/"dog" and "running"/"running" match once stemmed; "were"/"was" do not.
    assert scores["rouge1"] == pytest.approx(75.0)


def test_accuracy_macro_f1_and_confusion_matrix():
    gold = ["pos", "pos", "pos", "neg", "neg", "neu"]
    pred = ["pos", "pos", "neg", "neg", "pos", "neu"]
    evaluation = score("sentiment", pred, [gold])
    # F1: pos 2*2/(2*2+1+1) = 2/3, neg 2*1/(2*1+1+1) = 1/2, neu 1.
    assert evaluation.scores == pytest.approx(
        {"accuracy": 100 * 4 / 6, "macro_f1": 100 * (2 / 3 + 1 / 2 + 1) / 3}
    )
    assert evaluation.labels == ["neg", "neu", "pos"]
    assert evaluation.confusion == [[1, 0, 1], [0, 1, 0], [1, 0, 2]]
    # A model's labels come first, in its order; labels it does not know follow.
    evaluation = score("sentiment", pred, [gold], labels=["pos", "neg"])
    assert evaluation.labels == ["pos", "neg", "neu"]
    assert evaluation.confusion == [[2, 1, 0], [1, 1, 0], [0, 0, 1]]


def test_scoring_files_prints_a_table(tmp_path):
    hyp, ref = write(tmp_path / "hyp.de", HYPS), write(tmp_path / "ref.de", REFS)
    result = runner.invoke(app, ["evaluate", "translate", "--hyp", str(hyp), "--ref", str(ref)])
    assert result.exit_code == 0, result.output
    bleu = sacrebleu.corpus_bleu(HYPS, [REFS]).score
    assert "translate: 3 sentences (hyp.de, ref.de)" in result.output
    assert f"{bleu:.2f}" in result.output
    assert "BLEU signature: nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:" in result.output


def test_json_format_with_several_references(tmp_path):
    hyp = write(tmp_path / "hyp.txt", HYPS)
    refs = [write(tmp_path / "r1.txt", REFS), write(tmp_path / "r2.txt", REFS2)]
    args = ["evaluate", "summarize", "--hyp", str(hyp), "--format", "json"]
    result = runner.invoke(app, [*args, "--ref", str(refs[0]), "--ref", str(refs[1])])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["task"] == "summarize"
    assert report["n"] == 3
    assert report["refs"] == [str(r) for r in refs]
    assert report["scores"] == pytest.approx(score("summarize", HYPS, [REFS, REFS2]).scores)


def test_sentiment_output_scored_against_a_tsv(tmp_path):
    # `attn sentiment` text output (label<TAB>probability) against a labelled table.
    hyp = write(tmp_path / "pred.txt", ["good\t0.91", "bad\t0.62", "bad\t0.55"])
    gold = write(tmp_path / "dev.tsv", ["text\tlabel", "fine\tgood", "awful\tbad", "ok\tgood"])
    args = ["evaluate", "sentiment", "--hyp", str(hyp), "--ref", str(gold), "-f", "json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["scores"]["accuracy"] == pytest.approx(100 * 2 / 3)
    assert report["confusion"] == {"labels": ["bad", "good"], "matrix": [[1, 0], [1, 1]]}


def test_line_counts_that_differ_are_one_line_error(tmp_path):
    hyp, ref = write(tmp_path / "hyp.txt", HYPS[:2]), write(tmp_path / "ref.txt", REFS)
    result = runner.invoke(app, ["evaluate", "translate", "--hyp", str(hyp), "--ref", str(ref)])
    assert result.exit_code == 1
    assert result.output == (
        f"Error: line counts differ: {hyp} 2 lines, {ref} 3 lines; "
        "the files must pair line by line\n"
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data", "SRC"], "give the references of"),
        (["--data", "SRC", "--ref", "REF", "--split", "test"], "--split names a split"),
        (["--data", "DIR", "--ref", "REF"], "holds its own references"),
    ],
)
def test_test_data_given_the_wrong_way(tmp_path, args, message):
    paths = {
        "SRC": str(write(tmp_path / "test.en", REFS)),
        "REF": str(write(tmp_path / "test.de", REFS)),
        "DIR": str(demo_dir("translate")),
    }
    args = [paths.get(a, a) for a in args]
    result = runner.invoke(app, ["evaluate", "translate", "-m", str(tmp_path), *args])
    assert result.exit_code == 1
    assert message in result.output
    assert result.output.startswith("Error: ")
    assert result.output.count("\n") == 1


def test_a_split_that_is_not_there():
    message = "no test2016 split for translate (splits here: train, val)"
    with pytest.raises(DataError, match=re.escape(message)):
        load_test_set("translate", demo_dir("translate"), split="test2016")


def test_explicit_files_and_several_references(tmp_path):
    src = write(tmp_path / "test.en", ["one", "two", "three"])
    refs = [write(tmp_path / "a.de", REFS), write(tmp_path / "b.de", REFS2)]
    test = load_test_set("translate", src, references=refs)
    assert test.sources == ["one", "two", "three"]
    assert test.references == [REFS, REFS2]
    assert test.files == [src, *refs]
    short = write(tmp_path / "short.de", REFS[:1])
    counts = f"{src} 3 lines, {refs[0]} 3 lines, {short} 1 line;"
    with pytest.raises(ValueError, match=re.escape(counts)):
        load_test_set("translate", src, references=[refs[0], short])


def test_evaluate_model_refuses_test_data_before_loading_a_model(tmp_path):
    src = write(tmp_path / "test.en", REFS)
    with pytest.raises(ValueError, match="give the references of"):
        evaluate_model("translate", tmp_path / "no-model", src)


def test_usage_errors(tmp_path):
    hyp = str(write(tmp_path / "hyp.txt", HYPS))
    for args in (
        ["--hyp", hyp],  # no reference
        ["--hyp", hyp, "--ref", hyp, "-m", str(tmp_path)],  # a model and outputs
        [],  # nothing to evaluate
    ):
        result = runner.invoke(app, ["evaluate", "translate", *args])
        assert result.exit_code == 2, args


def attn(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([ATTN, *args], capture_output=True, text=True, timeout=300)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_translation_model_on_the_demo_val_split(translate_model, tmp_path):
    model = shutil.copytree(translate_model, tmp_path / "model")
    before = (model / "metrics.jsonl").read_text(encoding="utf-8")
    out = tmp_path / "out.de"
    data = demo_dir("translate")
    result = attn(
        "evaluate", "translate", "-m", str(model), "--data", str(data),
        "--beam", "1", "--format", "json", "-o", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    outputs = out.read_text(encoding="utf-8").splitlines()
    refs = (data / "val.de").read_text(encoding="utf-8").splitlines()
    assert report["n"] == len(outputs) == len(refs) == 300
    # The demo model has learned the task, and the score is sacrebleu's on the outputs.
    assert report["scores"]["bleu"] == pytest.approx(sacrebleu.corpus_bleu(outputs, [refs]).score)
    assert report["scores"]["bleu"] > 50
    assert report["split"] == "val"
    assert report["beam"] == 1

    lines = (model / "metrics.jsonl").read_text(encoding="utf-8")
    assert lines.startswith(before)
    record = json.loads(lines[len(before) :])  # exactly one new line
    files = [data / "val.en", data / "val.de"]
    assert record["evaluate"] is True
    assert record["data"] == [str(f) for f in files]
    assert record["sha256"] == [sha256(f) for f in files]
    assert record["bleu"] == pytest.approx(report["scores"]["bleu"], abs=1e-4)
    assert record["n"] == 300
    assert record["time"] > 0


@pytest.mark.parametrize(("args", "blocking"), [((), 6), (("--no-repeat-ngram", "0"), 0)])
def test_a_summarization_model_with_ngram_blocking(summarize_model, tmp_path, args, blocking):
    from rouge_score import rouge_scorer

    model = shutil.copytree(summarize_model, tmp_path / "model")
    out = tmp_path / "out.txt"
    data = demo_dir("summarize")
    result = attn(
        "evaluate", "summarize", "-m", str(model), "--data", str(data), "--beam", "2",
        "--format", "json", "-o", str(out), *args,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["no_repeat_ngram"] == blocking
    outputs = out.read_text(encoding="utf-8").splitlines()
    refs = (data / "val.tgt").read_text(encoding="utf-8").splitlines()
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    assert len(outputs) == len(refs) == report["n"]
    f1 = [scorer.score(r, o)["rougeL"].fmeasure for o, r in zip(outputs, refs, strict=True)]
    assert report["scores"]["rougeL"] == pytest.approx(100 * sum(f1) / len(f1))
    assert report["scores"]["rougeL"] > 80


def test_a_sentiment_model_on_a_demo_table(sentiment_model, tmp_path):
    model = shutil.copytree(sentiment_model, tmp_path / "model")
    table = demo_dir("sentiment") / "val.tsv"
    result = attn("evaluate", "sentiment", "-m", str(model), "--data", str(table))
    assert result.returncode == 0, result.stderr
    assert "accuracy" in result.stdout
    assert "Confusion matrix (rows: gold label, columns: predicted):" in result.stdout
    record = json.loads((model / "metrics.jsonl").read_text(encoding="utf-8").splitlines()[-1])
    assert record["evaluate"] is True
    assert record["sha256"] == [sha256(table)]
    assert record["accuracy"] > 90
    assert record["confusion"]["labels"] == ["negative", "positive"]
    assert sum(map(sum, record["confusion"]["matrix"])) == 300
    assert "split" not in record  # a file, not a directory's split


def test_evaluate_model_from_python(translate_model, tmp_path):
    model = shutil.copytree(translate_model, tmp_path / "model")
    data = demo_dir("translate")
    src = write(tmp_path / "test.en", (data / "val.en").read_text("utf-8").splitlines()[:20])
    ref = write(tmp_path / "test.de", (data / "val.de").read_text("utf-8").splitlines()[:20])
    out = tmp_path / "out.de"
    done = []
    result = evaluate_model(
        "translate", model, src, [ref], beam=1, output=out, device="cpu",
        progress=lambda sentences, pieces: done.append(sentences),
    )  # fmt: skip
    outputs = out.read_text(encoding="utf-8").splitlines()
    assert result.evaluation == score(
        "translate", outputs, [ref.read_text(encoding="utf-8").splitlines()]
    )
    assert result.evaluation.n == sum(done) == 20
    assert result.facts == {
        "model": str(model),
        "data": [str(src), str(ref)],
        "beam": 1,
        "length_penalty": 1.0,  # translate's default (attn.model.decoding.defaults)
        "no_repeat_ngram": 0,
        "shortlist": True,
        "truncated": 0,
    }
    assert result.max_length > 0
    record = json.loads((model / "metrics.jsonl").read_text(encoding="utf-8").splitlines()[-1])
    assert record["evaluate"] is True
    assert record["bleu"] == pytest.approx(result.evaluation.scores["bleu"], abs=1e-4)
    assert "split" not in record
