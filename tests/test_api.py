"""The Python API from the top-level package: `from attn import Translator, ...`."""

from __future__ import annotations

from pathlib import Path


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

    classifier = SentimentClassifier.load(sentiment_model, device="cpu", threads=1)
    results = list(classifier.classify(line for line in ["The soup was cold.", ""]))
    assert results[0].label in ("negative", "positive")
    assert set(results[0].probs) == {"negative", "positive"}
    assert results[1].label is None
