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
