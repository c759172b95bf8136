"""Translate a document (`attn.data.documents`): all its units in one `translate` call,
with word alignments, so that inline markup goes back around the words it held."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from attn.data.documents import Document
    from attn.model.inference.pipeline import Translator

# Texts read and sorted together when progress is shown: results come a chunk at a time,
# so a smaller chunk than `translate`'s 1000 moves the count every few batches.
PROGRESS_CHUNK = 256


def translate_document(
    translator: Translator,
    document: Document,
    *,
    progress: Callable[[int, int], None] | None = None,
    **options: Any,
) -> str:
    """The document's text with every unit translated.

    Args:
        translator: a loaded `Translator`.
        document: a parsed document.
        progress: called with (units done, units in all): once before the first
            translation and then as units are done.
        options: `Translator.translate`'s options (beam, batch_size, split, ...); `align`
            is always on, and n-best is not offered (one output per unit).

    Raises:
        ValueError: an option out of range.
    """
    options = {k: v for k, v in options.items() if k not in ("align", "n_best")}
    units = document.units
    if progress is None:
        return document.render(list(translator.translate(units, align=True, **options)))
    options.setdefault("chunk_size", PROGRESS_CHUNK)
    progress(0, len(units))
    results = []
    for result in translator.translate(units, align=True, **options):
        results.append(result)
        progress(len(results), len(units))
    return document.render(results)
