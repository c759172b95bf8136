"""Tokenizer: special ids, Unicode round trip, determinism, vocab fallback, truncation."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attn.data import demo_dir
from attn.tokenizer import (
    BOS_ID,
    EOS_ID,
    MIN_VOCAB_SIZE,
    PAD_ID,
    UNK_ID,
    Tokenizer,
    TokenizerError,
)


def _demo_text() -> list[str]:
    d = demo_dir("translate")
    return [
        *(d / "train.en").read_text(encoding="utf-8").splitlines()[:1500],
        *(d / "train.de").read_text(encoding="utf-8").splitlines()[:1500],
    ]


@pytest.fixture(scope="module")
def tok(tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    path = tmp_path_factory.mktemp("tok") / "tokenizer.model"
    return Tokenizer.train(_demo_text(), path, 400)


def test_special_ids(tok: Tokenizer) -> None:
    assert (PAD_ID, UNK_ID, BOS_ID, EOS_ID) == (0, 1, 2, 3)
    assert [tok.id_to_piece(i) for i in range(4)] == ["<pad>", "<unk>", "<s>", "</s>"]
    assert tok.vocab_size == 400
    ids, _ = tok.encode(["Der Hund schläft."], add_bos=True)
    assert ids[0][0] == BOS_ID and ids[0][-1] == EOS_ID
    assert not {PAD_ID, UNK_ID, BOS_ID, EOS_ID} & set(ids[0][1:-1])


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "\t\n  ",
        "The dog sleeps.",
        "  leading and   inner   spaces  ",
        "emoji 😀👍🏽 and flags 🇩🇪",
        "日本語のテキスト、中文",
        "مرحبا بالعالم",
        "e\u0301 combining, a\u0308 too",
        "ﬁ ligature and full-width ＡＢＣ",
        "U+2581 ▁ is a space marker",
        "a\u200bb zero width",
        "\U0001f9ec\U0010fffd",
    ],
)
def test_round_trip_edge_cases(tok: Tokenizer, text: str) -> None:
    ids, _ = tok.encode([text])
    assert UNK_ID not in ids[0]
    assert tok.decode(ids) == [tok.normalize(text)]


def test_normalize_is_nfkc_with_whitespace_collapsed(tok: Tokenizer) -> None:
    assert tok.normalize("  ﬁ  ＡＢＣ ") == "fi ABC"
    assert tok.normalize("e\u0301") == "\u00e9"


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=40))
def test_round_trip_any_unicode(tok: Tokenizer, text: str) -> None:
    ids, _ = tok.encode([text])
    assert UNK_ID not in ids[0]
    assert tok.decode(ids) == [tok.normalize(text)]


def test_decode_drops_pad_bos_and_stops_at_eos(tok: Tokenizer) -> None:
    ids, _ = tok.encode(["Der Hund", "Die Katze"])
    noisy = [[BOS_ID, *ids[0], 77, 78, PAD_ID], [PAD_ID, BOS_ID, *ids[1][:-1], PAD_ID]]
    assert tok.decode(noisy) == ["Der Hund", "Die Katze"]
    with pytest.raises(ValueError, match="token id 400 is outside the vocabulary"):
        tok.decode([[400]])


def test_truncation_keeps_eos_and_sets_flag(tok: Tokenizer) -> None:
    long_text = "Der große Hund sieht eine kleine Katze im Garten."
    full, flags = tok.encode([long_text, "Hund"])
    assert flags == [False, False]
    ids, flags = tok.encode([long_text, "Hund"], max_length=5, add_bos=True)
    assert flags == [True, len(full[1]) + 1 > 5]
    assert ids[0] == [BOS_ID, *full[0][:3], EOS_ID]
    exact, flags = tok.encode([long_text], max_length=len(full[0]))
    assert exact == full[:1] and flags == [False]
    with pytest.raises(ValueError, match="max_length must be at least 3"):
        tok.encode(["x"], max_length=2, add_bos=True)


def test_head_and_tail_truncation_keeps_both_ends(tok: Tokenizer) -> None:
    text = "Der große Hund sieht eine kleine Katze im Garten, und die Katze sieht den Hund."
    (full,), _ = tok.encode([text], add_eos=False)
    assert len(full) > 12
    (ids,), (cut,) = tok.encode([text], max_length=9, keep="head+tail")
    assert cut and len(ids) == 9
    assert ids == [*full[:2], *full[-6:], EOS_ID]  # a quarter of 8 from the start, the rest
    (short,), (cut,) = tok.encode(["Hund"], max_length=9, keep="head+tail")
    assert not cut and short == tok.encode(["Hund"])[0][0]
    batch = tok.encode_batch([text], max_length=9, keep="head+tail")
    assert batch.ids[0].tolist() == ids and batch.truncated == [True]


def test_encode_batch_pads_and_masks(tok: Tokenizer) -> None:
    texts = ["Der Hund schläft.", "", "Heute sieht die alte Frau einen Vogel."]
    ids, _ = tok.encode(texts)
    batch = tok.encode_batch(texts)
    width = max(len(s) for s in ids)
    assert batch.ids.shape == (3, width) and batch.ids.dtype == torch.long
    assert batch.mask.dtype == torch.bool
    for row, seq in enumerate(ids):
        assert batch.ids[row, : len(seq)].tolist() == seq
        assert batch.mask[row].tolist() == [True] * len(seq) + [False] * (width - len(seq))
        assert (batch.ids[row, len(seq) :] == PAD_ID).all()
    assert tok.decode(batch.ids) == [tok.normalize(t) for t in texts]
    assert tok.encode_batch([]).ids.shape == (0, 0)


def test_pieces_are_readable(tok: Tokenizer) -> None:
    pieces = tok.pieces("Der Hund 😀")
    assert "".join(pieces).replace("▁", " ").strip().startswith("Der Hund")
    assert any(p.startswith("<0x") for p in pieces)  # the emoji falls back to bytes


def test_training_is_deterministic(tmp_path: Path) -> None:
    texts = _demo_text()
    Tokenizer.train(texts, tmp_path / "a.model", 350, seed=3, max_sentences=1000)
    Tokenizer.train(iter(texts), tmp_path / "b.model", 350, seed=3, max_sentences=1000)
    assert (tmp_path / "a.model").read_bytes() == (tmp_path / "b.model").read_bytes()
    assert not [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"]


def test_vocab_size_falls_back_with_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    texts = _demo_text()[:300]
    with caplog.at_level(logging.WARNING, logger="attn"):
        tok = Tokenizer.train(texts, tmp_path / "t.model", 8000)
    assert MIN_VOCAB_SIZE <= tok.vocab_size < 8000
    assert Tokenizer.load(tmp_path / "t.model").vocab_size == tok.vocab_size
    assert any(
        r.name.startswith("attn") and f"using {tok.vocab_size}" in r.getMessage()
        for r in caplog.records
    )


def test_too_little_text_and_too_small_vocab(tmp_path: Path) -> None:
    with pytest.raises(TokenizerError, match="not enough training text"):
        Tokenizer.train(["a b c", "d e f"], tmp_path / "t.model", 1000)
    with pytest.raises(ValueError, match=f"vocab_size must be at least {MIN_VOCAB_SIZE}"):
        Tokenizer.train(["a"], tmp_path / "t.model", 100)
    assert not (tmp_path / "t.model").exists()


def test_load_errors(tmp_path: Path, tok: Tokenizer) -> None:
    with pytest.raises(TokenizerError, match=r"missing\.model: no such tokenizer model file"):
        Tokenizer.load(tmp_path / "missing.model")
    (tmp_path / "bad.model").write_bytes(b"not a model at all")
    with pytest.raises(TokenizerError, match=r"bad\.model: not a valid SentencePiece model"):
        Tokenizer.load(tmp_path / "bad.model")
    with pytest.raises(TokenizerError, match="is a directory"):
        Tokenizer.load(tmp_path)
    tok.save(tmp_path / "copy.model")
    assert Tokenizer.load(tmp_path / "copy.model").encode(["Hund"]) == tok.encode(["Hund"])
    assert issubclass(TokenizerError, ValueError)
