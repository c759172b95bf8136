"""Translate a document (`attn.data.documents`): all its units in one `translate` call,
with word alignments, so that inline markup goes back around the words it held."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from attn.data.documents import Document
    from attn.model.inference.pipeline import Translator


def translate_document(translator: Translator, document: Document, **options: Any) -> str:
    """The document's text with every unit translated.

    Args:
        translator: a loaded `Translator`.
        document: a parsed document.
        options: `Translator.translate`'s options (beam, batch_size, progress, ...); `align`
            is always on, and n-best is not offered (one output per unit).

    Raises:
        ValueError: an option out of range.
    """
    options = {k: v for k, v in options.items() if k not in ("align", "n_best")}
    results = list(translator.translate(document.units, align=True, **options))
    return document.render(results)
