"""Tiny Hugging Face Marian (OPUS-MT) model directories, built with `transformers`.

Each has the layout of a `Helsinki-NLP/opus-mt-*` repository: config.json (and
generation_config.json), model.safetensors or pytorch_model.bin, source.spm and target.spm
(SentencePiece models trained on attn's English-German demo corpus), vocab.json (both models'
pieces, `</s>` = 0, `<unk>` = 1, `<pad>` last) and tokenizer_config.json, written by
`MarianMTModel.save_pretrained` and `MarianTokenizer.save_pretrained` (the .bin variant by
`torch.save`). The weights are random (fixed seed) with a nonzero final_logits_bias, spread so
that outputs depend on the input and end at varied lengths.

Test modules import the fixtures by name: `from marian_fixtures import marian_dir`.
`transformers` is a dev dependency only; attn never needs it at run time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from attn.data import demo_dir

# Language tokens of the multilingual variant (as opus-mt-en-ROMANCE's `>>fra<<`).
LANGUAGE_TOKENS = (">>deu<<", ">>fra<<", ">>spa<<")
SPM_VOCAB = 400
# Sizes as an OPUS-MT model's, scaled down.
TINY = {
    "d_model": 32,
    "encoder_layers": 2,
    "decoder_layers": 2,
    "encoder_attention_heads": 4,
    "decoder_attention_heads": 4,
    "encoder_ffn_dim": 64,
    "decoder_ffn_dim": 64,
}


def demo_sentences(n: int = 100, side: str = "en") -> list[str]:
    """The first n validation sentences of the demo translation corpus."""
    lines = (demo_dir("translate") / f"val.{side}").read_text(encoding="utf-8").splitlines()
    return lines[:n]


def _train_spm(text: Path, prefix: Path) -> Path:
    import sentencepiece as spm

    spm.SentencePieceTrainer.train(
        input=str(text),
        model_prefix=str(prefix),
        vocab_size=SPM_VOCAB,
        hard_vocab_limit=False,
        character_coverage=1.0,
        num_threads=1,
        minloglevel=2,
    )
    return prefix.with_suffix(".model")


def marian_vocab(source: Path, target: Path, extra: tuple[str, ...]) -> dict[str, int]:
    """Marian's joint vocabulary: `</s>`, `<unk>`, then the pieces of both SentencePiece
    models (language tokens first), `<pad>` last, as the Hub's vocab.json files are."""
    import sentencepiece as spm

    pieces = ["</s>", "<unk>", *extra]
    for path in (source, target):
        sp = spm.SentencePieceProcessor(model_file=str(path))
        for i in range(sp.get_piece_size()):
            if not (sp.is_control(i) or sp.is_unknown(i)) and sp.id_to_piece(i) not in pieces:
                pieces.append(sp.id_to_piece(i))
    pieces.append("<pad>")
    return {piece: i for i, piece in enumerate(pieces)}


def marian_config(vocab_size: int, sizes: dict[str, int]) -> Any:
    """A `MarianConfig` as OPUS-MT models have (SiLU, post-norm, scaled embeddings, shared
    vocabulary, `</s>` = 0, `<pad>` last and the decoder's start piece) of these sizes."""
    from transformers import MarianConfig

    pad = vocab_size - 1
    return MarianConfig(
        vocab_size=vocab_size,
        decoder_vocab_size=vocab_size,
        max_position_embeddings=512,
        activation_function="swish",
        scale_embedding=True,
        share_encoder_decoder_embeddings=True,
        pad_token_id=pad,
        eos_token_id=0,
        bos_token_id=0,
        forced_eos_token_id=0,
        decoder_start_token_id=pad,
        dropout=0.1,
        attention_dropout=0.0,
        activation_dropout=0.0,
        # As the Hub's configs (options of BART that MarianMTModel does not read).
        normalize_before=False,
        normalize_embedding=False,
        static_position_embeddings=True,
        add_final_layer_norm=False,
        **sizes,
    )


def build_marian_dir(
    directory: Path, *, multilingual: bool = False, safetensors: bool = True, seed: int = 0
) -> Path:
    """Write a tiny Marian model directory at `directory` (created) and return it."""
    import torch
    from transformers import GenerationConfig, MarianMTModel, MarianTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    work = directory / "spm-work"
    work.mkdir()
    source = _train_spm(demo_dir("translate") / "train.en", work / "source")
    target = _train_spm(demo_dir("translate") / "train.de", work / "target")
    vocab = marian_vocab(source, target, LANGUAGE_TOKENS if multilingual else ())
    vocab_file = work / "vocab.json"
    vocab_file.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    tokenizer = MarianTokenizer(
        str(source), str(target), str(vocab_file), source_lang="en", target_lang="de"
    )
    pad = vocab["<pad>"]
    config = marian_config(len(vocab), TINY)
    torch.manual_seed(seed)
    model = MarianMTModel(config).eval()
    with torch.no_grad():
        # Spread weights (transformers' init, std 0.02, gives almost uniform outputs at this
        # size), the padding piece's embedding zero as in OPUS-MT models, a logits bias, and
        # EOS likely enough that outputs end at varied lengths.
        for name, p in model.named_parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.25 if "shared" in name else 0.3)
        model.model.shared.weight[pad].zero_()
        bias = torch.randn(1, len(vocab)) * 0.5
        bias[0, 0] += 4.0
        model.final_logits_bias.copy_(bias)
    model.generation_config = GenerationConfig(
        bad_words_ids=[[pad]],
        decoder_start_token_id=pad,
        eos_token_id=0,
        forced_eos_token_id=0,
        pad_token_id=pad,
        max_length=512,
        num_beams=4,
    )
    model.save_pretrained(directory)
    if not safetensors:
        # As older Hub repositories hold them (transformers 5 writes safetensors only): the
        # state dict pickled by torch.save, tied matrices under each of their names.
        torch.save(model.state_dict(), directory / "pytorch_model.bin")
        (directory / "model.safetensors").unlink()
    tokenizer.save_pretrained(directory)
    for path in work.iterdir():
        path.unlink()
    work.rmdir()
    return directory


@pytest.fixture(scope="session")
def marian_dir(tmp_path_factory) -> Path:
    """A tiny English-German Marian directory with model.safetensors."""
    return build_marian_dir(tmp_path_factory.mktemp("marian") / "opus-mt-en-de")


@pytest.fixture(scope="session")
def marian_bin_dir(tmp_path_factory) -> Path:
    """The same model (same seed) saved as pytorch_model.bin."""
    root = tmp_path_factory.mktemp("marian-bin") / "opus-mt-en-de"
    return build_marian_dir(root, safetensors=False)


@pytest.fixture(scope="session")
def marian_multilingual_dir(tmp_path_factory) -> Path:
    """A tiny multilingual Marian directory whose vocabulary has `>>deu<<`-style tokens."""
    root = tmp_path_factory.mktemp("marian-multi") / "opus-mt-en-mul"
    return build_marian_dir(root, multilingual=True, seed=1)
