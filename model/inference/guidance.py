"""What constrained search needs from a pipeline's texts: each text's constraints and
prefix in pieces (`text_guides`), the table of the pieces that end a word
(`word_end_table`), and the shortlist opened to the pieces a guide must write
(`allow_guide_pieces`). `Seq2Seq` (`attn.model.inference.pipeline`) calls them per batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from torch import Tensor

if TYPE_CHECKING:
    from attn.data.glossary import Glossary
    from attn.model.decoding.constraints import Guide
    from attn.tokenizer import Tokenizer


def text_guides(
    tokenizer: Tokenizer,
    max_length: int,
    texts: Sequence[str],
    glossary: Glossary | None,
    sampling: bool,
) -> list[Guide] | None:
    """The constraints and prefix of each text of a batch, in pieces; None if none has any.
    A text's constraints are its own (a `GuidedText`'s) and the target terms of `glossary`
    whose source terms it holds.

    Raises:
        ValueError: a constraint or prefix longer than `max_length` pieces, or directions
            for sampling.
    """
    from attn.model.decoding.constraints import Guide

    wanted = []
    for text in texts:
        cons = list(getattr(text, "constraints", ()))
        if glossary is not None:
            cons += glossary.targets(text)
        wanted.append(
            (list(dict.fromkeys(c for c in cons if c.strip())), getattr(text, "prefix", ""))
        )
    if not any(c or p for c, p in wanted):
        return None
    if sampling:
        raise ValueError("constraints and prefixes need beam search, not sample")
    flat = [c for cons, _ in wanted for c in cons] + [p for _, p in wanted if p]
    ids, _ = tokenizer.target.encode(flat, add_eos=False) if flat else ([], [])
    pieces = dict(zip(flat, ids, strict=True))
    for text, n in pieces.items():
        if len(n) > max_length:
            raise ValueError(
                f'"{text}" is {len(n)} pieces, more than the model\'s max_length {max_length}'
            )
    return [
        Guide(tuple(tuple(pieces[c]) for c in cons if pieces[c]), tuple(pieces[p]) if p else ())
        for cons, p in wanted
    ]


def word_end_table(tokenizer: Tokenizer, vocab_size: int, eos_id: int) -> Tensor:
    """The pieces that end a word (constraints are met as whole words), over the model's
    `vocab_size` (ids past the tokenizer's own vocabulary end none). Shape: (V,) bool."""
    from attn.model.decoding.constraints import word_ends

    size = tokenizer.vocab_size
    pieces = [tokenizer.id_to_piece(i) if i < size else "" for i in range(vocab_size)]
    return word_ends(pieces, eos_id)


def allow_guide_pieces(allowed: Tensor, guides: Sequence[Guide]) -> None:
    """Open each sentence's shortlist (`allowed`, (B, V) bool, changed in place) to the
    pieces of its constraints and prefix, which the search must be able to write."""
    for row, guide in enumerate(guides):
        pieces = [p for c in guide.constraints for p in c] + list(guide.prefix)
        allowed[row, pieces] = True
