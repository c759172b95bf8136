"""Tokenizers: attn's joint SentencePiece vocabulary with fixed special ids, and the source
and target SentencePiece models over one vocabulary of imported OPUS-MT models."""

from attn.tokenizer.marian import MarianTokenizer
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
    "MarianTokenizer",
    "Tokenizer",
    "TokenizerError",
]
