"""`attn summarize`: summarize documents, one per line, with a trained model."""

from __future__ import annotations

import typer

from attn.cli.seq2seq import Seq2SeqCommand
from attn.cli.seq2seq import register as register_seq2seq

SUMMARIZE = Seq2SeqCommand(
    task="summarize",
    help="""Summarize documents: one summary per input line, in order (an empty line stays empty).

    Reads FILES or stdin; JSON Lines files take the text from --field (guessed: dialogue,
    document, text, ...). Beam search, no repeated 6-piece n-grams by default; a summary has at
    most source pieces + 10 pieces unless --max-length says otherwise. A document longer than
    the model's max_length is summarized in parts, then the parts' summaries (--max-input cut:
    cut instead).

    Example: attn summarize dialogues.jsonl --format jsonl
    """,
    extras=("max_input",),
)


def register(app: typer.Typer) -> None:
    register_seq2seq(app, SUMMARIZE)
