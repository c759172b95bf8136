"""The Python API from the top-level package: `from attn import Translator, ...`."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_translator_from_the_top_level_takes_a_list_and_an_iterator(
    translate_model: Path,
) -> None:
    from attn import Generation, Translator

    translator = Translator.load(translate_model, device="cpu", threads=1)
    texts = ["A dog runs.", "", "A fast cow is beautiful."]
    from_list = list(translator.translate(texts, beam=2))
    from_iterator = list(translator.translate(iter(texts), beam=2))
    assert all(isinstance(r, Generation) for r in from_list)
    assert [r.source for r in from_list] == texts
    assert [r.text for r in from_iterator] == [r.text for r in from_list]
    assert from_list[1].text == "" and from_list[1].score is None
    assert from_list[2].text == "Eine schnelle Kuh ist schön."


def test_sentiment_classifier_from_the_top_level(sentiment_model: Path) -> None:
    from attn import SentimentClassifier
    from attn.data import demo_dir

    # Two reviews of the demo validation split (never trained on) whose label is plain.
    reviews = {
        "The camera was quite lovely. I would recommend this phone.": "positive",
        "The service was really awful. I would not recommend this restaurant.": "negative",
    }
    val = (demo_dir("sentiment") / "val.tsv").read_text(encoding="utf-8").splitlines()
    assert {f"{text}\t{label}" for text, label in reviews.items()} <= set(val)
    classifier = SentimentClassifier.load(sentiment_model, device="cpu", threads=1)
    results = list(classifier.classify(line for line in [*reviews, ""]))
    assert [r.label for r in results] == [*reviews.values(), None]
    for result in results[:2]:
        assert set(result.probs) == {"negative", "positive"}
        assert result.prob == result.probs[result.label] > 0.5
        assert sum(result.probs.values()) == pytest.approx(1.0, abs=1e-5)
    assert results[2].probs == {}


def test_loading_refuses_a_missing_model_another_task_and_bad_options(
    translate_model: Path, sentiment_model: Path, tmp_path: Path
) -> None:
    from attn import SentimentClassifier, Summarizer, Translator
    from attn.model.storage.checkpoint import ModelError

    with pytest.raises(ModelError, match="not an attn model directory"):
        Translator.load(tmp_path, device="cpu")
    with pytest.raises(ModelError, match="holds a translate model, not a summarize model"):
        Summarizer.load(translate_model, device="cpu")
    with pytest.raises(ModelError, match="sentiment"):
        Translator.load(sentiment_model, device="cpu")
    with pytest.raises(ModelError, match="translate"):
        SentimentClassifier.load(translate_model, device="cpu")
    with pytest.raises(ValueError, match="threads"):
        Translator.load(translate_model, device="cpu", threads=0)
    with pytest.raises(ValueError):
        Translator.load(translate_model, device="no-such-device")


def test_translate_options_n_best_and_their_errors(translate_model: Path) -> None:
    from attn import Candidate, Translator

    translator = Translator.load(translate_model, device="cpu", threads=1)
    texts = ["A dog runs.", "The red car is in the garden."]
    results = list(translator.translate(texts, beam=3, n_best=3))
    for result in results:
        assert len(result.n_best) == 3 and all(isinstance(c, Candidate) for c in result.n_best)
        assert result.n_best[0].text == result.text and result.n_best[0].score == result.score
        scores = [c.score for c in result.n_best]
        assert scores == sorted(scores, reverse=True)
        assert len({c.text for c in result.n_best}) == 3
        record = result.record(n_best=3)
        assert record["output"] == result.text
        assert [h["output"] for h in record["n_best"]] == [c.text for c in result.n_best]
        assert "n_best" not in result.record()
    # Greedy and beam, with and without the shortlist, batch by batch or all at once: the
    # same outputs for each text, whatever the batch it is in.
    for beam in (1, 4):
        together = [r.text for r in translator.translate(texts, beam=beam, batch_size=2)]
        alone = [r.text for r in translator.translate(texts, beam=beam, batch_size=1)]
        assert together == alone
        whole = [r.text for r in translator.translate(texts, beam=beam, shortlist=False)]
        assert all(whole)
    # Pieces generated per batch reach the progress callback.
    seen: list[tuple[int, int]] = []
    list(translator.translate([*texts, ""], beam=1, progress=lambda n, p: seen.append((n, p))))
    assert sum(n for n, _ in seen) == 2 and all(p > 0 for _, p in seen)
    # A capped output length.
    capped = next(iter(translator.translate(texts[1:], beam=1, max_length=2)))
    assert len(translator.tokenizer.encode([capped.text])[0][0]) <= 3  # pieces + EOS
    # Options out of range fail at the call, before any result.
    for bad in ({"beam": 0}, {"beam": 2, "n_best": 3}, {"batch_size": 0}, {"chunk_size": 0},
                {"workers": 0}, {"length_penalty": -1.0}):  # fmt: skip
        with pytest.raises(ValueError):
            translator.translate(texts, **bad)


def test_int8_translator_quantizes_and_translates(translate_model: Path) -> None:
    from attn import Translator

    translator = Translator.load(translate_model, device="cpu", threads=1, int8=True)
    kinds = {type(m).__module__ for m in translator.model.modules()}
    assert any("quantized" in kind for kind in kinds)
    results = list(translator.translate(["A dog runs.", ""], beam=2))
    assert results[0].text and results[0].score is not None
    assert results[1].text == ""
    with pytest.raises(ValueError, match="cpu"):
        Translator.load(translate_model, device="meta", int8=True)


def test_summarizer_from_the_top_level(summarize_model: Path) -> None:
    from attn import Generation, Summarizer
    from attn.data import demo_dir

    source = (demo_dir("summarize") / "val.src").read_text(encoding="utf-8").splitlines()[0]
    summarizer = Summarizer.load(summarize_model, device="cpu", threads=1)
    results = list(summarizer.summarize([source, "   "], beam=2))
    assert isinstance(results[0], Generation)
    assert results[0].text and len(results[0].text) < len(source)
    assert results[1].text == "" and results[1].n_best == []


def test_classification_records_and_unknown_tasks(sentiment_model: Path) -> None:
    from attn import Classification, SentimentClassifier
    from attn.model.inference.pipeline import load_pipeline

    classifier = load_pipeline("sentiment", sentiment_model, device="cpu", threads=1)
    assert isinstance(classifier, SentimentClassifier)
    (result,) = classifier.classify(["A lovely phone."], batch_size=1)
    assert isinstance(result, Classification)
    assert result.record() == {"source": "A lovely phone.", "label": result.label,
                               "prob": result.prob}  # fmt: skip
    assert result.record(probs=True)["probs"] == result.probs
    with pytest.raises(ValueError, match="batch_size"):
        classifier.classify(["x"], batch_size=0)
    with pytest.raises(ValueError, match="no-such-task"):
        load_pipeline("no-such-task", sentiment_model)
