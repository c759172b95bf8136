"""An OPUS-MT repository's tokenizer files, checked against its model before they are copied.

The repository's `source.spm`, `target.spm`, `vocab.json` and `tokenizer_config.json` become
the attn model directory's (`attn.tokenizer.MarianTokenizer` reads them under those names).
"""

from __future__ import annotations

import json
from pathlib import Path

from attn.model.importers.weights import UnsupportedModelError, read_json_object
from attn.model.nn.config import ModelConfig
from attn.model.storage.layout import SOURCE_SPM, TARGET_SPM, TOKENIZER_CONFIG, VOCAB


def marian_tokenizer_files(directory: Path, config: ModelConfig) -> dict[str, bytes]:
    """The tokenizer files of an OPUS-MT directory by name, checked: both SentencePiece
    models load, the vocabulary has one id per row of the embedding matrix, and its
    `</s>` and `<pad>` are the model's EOS and padding.

    Raises:
        UnsupportedModelError: a file missing or unreadable, separate source and target
            vocabularies, a vocabulary that does not fit the model.
    """
    from attn.tokenizer import MarianTokenizer, TokenizerError

    files: dict[str, bytes] = {}
    for name in (SOURCE_SPM, TARGET_SPM, VOCAB):
        path = directory / name
        if not path.is_file():
            raise UnsupportedModelError(f"{directory}: no {name} (an OPUS-MT model has one)")
        files[name] = path.read_bytes()
    options = _options(directory / TOKENIZER_CONFIG)
    if options.get("separate_vocabs"):
        raise UnsupportedModelError(
            f"{directory / TOKENIZER_CONFIG}: separate_vocabs is true; attn needs one "
            "vocabulary shared by source and target"
        )
    files[TOKENIZER_CONFIG] = json.dumps(options, indent=2, ensure_ascii=False).encode() + b"\n"
    try:
        tokenizer = MarianTokenizer(
            files[SOURCE_SPM],
            files[TARGET_SPM],
            _vocab(files[VOCAB], directory / VOCAB),
            source=str(directory),
        )
    except TokenizerError as e:
        raise UnsupportedModelError(str(e)) from None
    if tokenizer.vocab_size != config.vocab_size:
        raise UnsupportedModelError(
            f"{directory / VOCAB} has {tokenizer.vocab_size} pieces but the embedding "
            f"matrix has {config.vocab_size} rows (config.json vocab_size)"
        )
    found = (tokenizer.eos_id, tokenizer.pad_id)
    if found != (config.eos_id, config.pad_id):
        raise UnsupportedModelError(
            f"{directory / VOCAB}: </s> and <pad> are ids {found}, but config.json's "
            f"eos_token_id and pad_token_id are {(config.eos_id, config.pad_id)}"
        )
    return files


def _options(path: Path) -> dict:
    """The tokenizer_config.json entries attn honours (a repository may have none)."""
    if not path.is_file():
        return {}
    data = read_json_object(path)
    kept = ("source_lang", "target_lang", "separate_vocabs", "clean_up_tokenization_spaces")
    return {key: data[key] for key in kept if key in data}


def _vocab(data: bytes, path: Path) -> dict[str, int]:
    from attn.tokenizer.marian import read_vocab

    return read_vocab(data, str(path))
