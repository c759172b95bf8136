"""Tokenizer: a joint SentencePiece vocabulary with fixed special ids."""

from attn.tokenizer.sentencepiece import (
    BOS_ID,
    EOS_ID,
    MIN_VOCAB_SIZE,
    PAD_ID,
    UNK_ID,
    EncodedBatch,
    Tokenizer,
    TokenizerError,
)

__all__ = [
    "BOS_ID",
    "EOS_ID",
    "MIN_VOCAB_SIZE",
    "PAD_ID",
    "UNK_ID",
    "EncodedBatch",
    "Tokenizer",
    "TokenizerError",
]
