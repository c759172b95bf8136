"""The lexical shortlist: what it learns from pairs, which pieces a batch gets, its file, and
decoding with it (only shortlisted pieces, the same output where the best pieces are in)."""

from __future__ import annotations

import subprocess

import pytest
import sacrebleu
import torch
from helpers import ATTN

import attn.model.decoding.shortlist as shortlist_module
from attn.data import demo_dir
from attn.model.decoding.search import GenerationOptions, generate
from attn.model.decoding.shortlist import Shortlist
from attn.model.inference.pipeline import Translator
from attn.model.storage.checkpoint import ModelError
from attn.model.storage.layout import SHORTLIST

PAD, BOS, EOS = 0, 2, 3
V = 20

# Source piece 4 always comes with target 10 and 11, piece 5 with target 12; target 9 is in
# every translation (the frequent piece); 13 comes with piece 4 once.
PAIRS = [
    ([4, 6, EOS], [9, 10, 11, EOS]),
    ([4, 7, EOS], [9, 10, 11, 13, EOS]),
    ([5, 6, EOS], [9, 12, EOS]),
    ([5, 8, EOS], [9, 12, 12, EOS]),
    ([4, 5, EOS], [9, 10, 11, 12, EOS]),
]


def _padded(pairs) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch of (source, target) id lists, padded with PAD."""
    width_s, width_t = max(len(s) for s, _ in pairs), max(len(t) for _, t in pairs)
    src = torch.tensor([s + [PAD] * (width_s - len(s)) for s, _ in pairs])
    tgt = torch.tensor([t + [PAD] * (width_t - len(t)) for _, t in pairs])
    return src, tgt


def _build(pairs=PAIRS, frequent=1, per_source=3, batch=None) -> Shortlist:
    batch = batch or len(pairs)
    batches = [_padded(pairs[i : i + batch]) for i in range(0, len(pairs), batch)]
    return Shortlist.build(
        batches, V, eos_id=EOS, skip=(PAD, BOS), frequent=frequent, per_source=per_source
    )


def test_build_keeps_frequent_pieces_and_the_best_pieces_of_each_source_piece():
    s = _build()
    assert s.frequent.tolist() == [EOS, 9]  # EOS always, then the most frequent piece
    assert s.by_source.shape == (V, 3)
    # 10 and 11 come with piece 4 three times, 13 and 12 once each; 13 is the rarer piece,
    # so the more telling one (count x log(16 target pieces / count of the piece)).
    assert s.by_source[4].tolist() == [10, 11, 13]
    assert s.by_source[5].tolist() == [12, 10, 11]
    assert s.by_source[8].tolist() == [12, EOS, EOS]  # padded with EOS
    # EOS, padding and unseen pieces allow nothing beyond the frequent ones.
    assert s.by_source[EOS].tolist() == s.by_source[15].tolist() == [EOS, EOS, EOS]


def test_specific_pieces_rank_above_common_ones():
    # Piece 4 appears with 9 (in every translation) as often as with 10 (only with piece 4):
    # with no frequent list, 10 ranks first, since 9 says nothing about piece 4.
    s = _build(frequent=0, per_source=2)
    assert s.frequent.tolist() == [EOS]
    assert s.by_source[4].tolist() == [10, 11]


def test_merging_counts_in_steps_gives_the_same_shortlist(monkeypatch):
    g = torch.Generator().manual_seed(0)
    pairs = [
        (
            [*torch.randint(4, V, (int(n),), generator=g).tolist(), EOS],
            [*torch.randint(4, V, (int(m),), generator=g).tolist(), EOS],
        )
        for n, m in torch.randint(1, 9, (200, 2), generator=g)
    ]
    whole = _build(pairs, frequent=3, per_source=4)
    monkeypatch.setattr(shortlist_module, "_MERGE_KEYS", 50)
    steps = _build(pairs, frequent=3, per_source=4, batch=7)  # 29 batches, merged often
    assert torch.equal(whole.frequent, steps.frequent)
    assert torch.equal(whole.by_source, steps.by_source)


def test_candidates_of_a_batch():
    s = _build()
    src = torch.tensor([[4, 17, EOS], [6, EOS, PAD]])
    allowed = s.candidates(src, src != PAD)
    assert allowed.shape == (2, V) and allowed.dtype == torch.bool
    # Frequent (EOS, 9), the lists of the source pieces, the source pieces themselves
    # (copies); padding adds nothing.
    assert allowed[0].nonzero().squeeze(1).tolist() == sorted({EOS, 9, 10, 11, 13, 4, 17})
    assert allowed[1].nonzero().squeeze(1).tolist() == sorted({EOS, 9, 10, 11, 12, 6})


def test_file_round_trip_and_bad_files(tmp_path):
    s = _build()
    path = tmp_path / SHORTLIST
    s.save(path)
    loaded = Shortlist.load(path, V)
    assert torch.equal(loaded.frequent, s.frequent)
    assert torch.equal(loaded.by_source, s.by_source)
    with pytest.raises(ModelError, match="does not fit a 30-piece model"):
        Shortlist.load(path, 30)
    path.write_bytes(b"not safetensors")
    with pytest.raises(ModelError, match="unreadable shortlist"):
        Shortlist.load(path, V)


# --- with a model trained on the demo corpus ----------------------------------------------


def test_training_writes_a_shortlist_that_decoding_uses(translate_model):
    translator = Translator.load(translate_model, threads=1)
    assert translator.shortlist is not None
    assert translator.shortlist.by_source.size(0) == translator.config.vocab_size
    data = demo_dir("translate")
    sources = (data / "val.en").read_text(encoding="utf-8").splitlines()[:60]
    refs = (data / "val.de").read_text(encoding="utf-8").splitlines()[:60]
    short = list(translator.translate(sources, beam=4, workers=1))
    full = list(translator.translate(sources, beam=4, workers=1, shortlist=False))
    # Outputs use only the pieces the shortlist allows for their source.
    batch = translator.tokenizer.encode_batch(sources[:8])
    allowed = translator.shortlist.candidates(batch.ids, batch.mask)  # (8, V)
    assert (allowed.sum(1) < translator.config.vocab_size / 2).all()
    hyps = generate(translator.model, batch.ids, batch.mask, GenerationOptions(), allowed=allowed)
    for row, h in zip(allowed, hyps, strict=True):
        assert row[h[0].tokens].all()
    # The pipeline does just that, in batches of its own: the output of a sentence does not
    # depend on the other sentences of its batch.
    texts = translator.tokenizer.decode([h[0].tokens for h in hyps])
    assert texts == [r.text for r in short[:8]]
    # ... and translate as well as the whole vocabulary does.
    bleu_short = sacrebleu.corpus_bleu([r.text for r in short], [refs]).score
    bleu_full = sacrebleu.corpus_bleu([r.text for r in full], [refs]).score
    assert bleu_short >= bleu_full - 2, (bleu_short, bleu_full)
    assert bleu_short > 80


def test_other_tasks_have_no_shortlist(summarize_model, sentiment_model):
    assert not (summarize_model / SHORTLIST).exists()
    assert not (sentiment_model / SHORTLIST).exists()


def test_a_broken_shortlist_is_a_one_line_error(translate_model, tmp_path):
    import shutil

    model = shutil.copytree(translate_model, tmp_path / "model")
    (model / SHORTLIST).write_bytes(b"\x00" * 16)
    with pytest.raises(ModelError, match="unreadable shortlist"):
        Translator.load(model)
    result = subprocess.run(
        [ATTN, "translate", "-m", str(model)],
        input="A dog runs.\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("Error: ") and "unreadable shortlist" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    # Without the file the model decodes over the whole vocabulary.
    (model / SHORTLIST).unlink()
    result = subprocess.run(
        [ATTN, "translate", "-m", str(model), "--beam", "1"],
        input="A dog runs.\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and result.stdout.strip(), result.stderr


def test_int8_projection_onto_a_subset_equals_those_columns_of_the_whole_one():
    from attn.model.decoding.quantize import quantize_int8, select_rows
    from attn.model.nn.config import ModelConfig
    from attn.model.nn.transformer import Transformer

    torch.manual_seed(0)
    config = ModelConfig(
        task="translate", vocab_size=64, d_model=32, n_heads=2, n_encoder_layers=1,
        n_decoder_layers=1, d_ff=64, dropout=0.0,
    )  # fmt: skip
    model = quantize_int8(Transformer(config))
    states = torch.randn(5, 32)
    index = torch.tensor([3, 7, 8, 40, 63])
    whole = model.project(states)  # (5, 64), the int8 output projection
    for _ in range(2):  # the second call reuses the unpacked weight
        part = select_rows(model.output_proj, index)(states)
        assert torch.allclose(part, whole[:, index], atol=1e-5)


def test_evaluate_says_whether_it_used_the_shortlist(translate_model, tmp_path):
    import json
    import shutil

    model = shutil.copytree(translate_model, tmp_path / "model")
    reports = {}
    for flag in ("--shortlist", "--no-shortlist"):
        result = subprocess.run(
            [ATTN, "evaluate", "translate", "-m", str(model), "--data", str(demo_dir("translate")),
             "--beam", "1", "--threads", "1", "--format", "json", flag],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        reports[flag] = json.loads(result.stdout)
    assert reports["--shortlist"]["shortlist"] is True
    assert reports["--no-shortlist"]["shortlist"] is False
    assert reports["--shortlist"]["scores"]["bleu"] > 80
    assert reports["--no-shortlist"]["scores"]["bleu"] > 80


def test_the_shortlist_of_prepared_pairs_takes_its_sizes(tmp_path):
    import numpy as np

    from attn.model.nn.config import ModelConfig
    from attn.model.training.corpus import Sequences, Split
    from attn.model.training.prepare import build_shortlist

    src = Sequences.from_lists(iter([[s for s, _ in PAIRS]]))
    tgt = Sequences.from_lists(iter([[t for _, t in PAIRS]]))
    train = Split(src, np.maximum(src.lengths, tgt.lengths), tgt=tgt)
    config = ModelConfig(vocab_size=V, pad_id=PAD, bos_id=BOS, eos_id=EOS)
    path = tmp_path / SHORTLIST
    build_shortlist(path, train, config, lambda _: None, frequent=1, per_source=2)
    built = Shortlist.load(path, V)
    expected = _build(frequent=1, per_source=2)
    assert torch.equal(built.frequent, expected.frequent)
    assert torch.equal(built.by_source, expected.by_source)
    build_shortlist(path, train, config, lambda _: None)  # the shortlist's own sizes
    assert Shortlist.load(path, V).by_source.shape == (V, shortlist_module.PER_SOURCE)
