"""`attn translate`: translate lines of text with a trained model."""

from __future__ import annotations

import typer

from attn.cli.seq2seq import EXTRAS, Seq2SeqCommand
from attn.cli.seq2seq import register as register_seq2seq

TRANSLATE = Seq2SeqCommand(
    task="translate",
    help="""Translate text: one line out per line in, in order (an empty line stays empty).

    Reads FILES or stdin. A line may hold a paragraph: it is split into sentences,
    translated and joined back on one line (--split none: the line as one input).
    Beam search by default; an output has at most
    1.5 x source pieces + 10 pieces unless --max-length says otherwise.

    Example: echo "A man rides a bike." | attn translate -m models/en-de
    """,
    # Every one but --max-input (a sentence too long is split at sentences, --split).
    extras=tuple(name for name in EXTRAS if name != "max_input"),
)


def register(app: typer.Typer) -> None:
    register_seq2seq(app, TRANSLATE)
