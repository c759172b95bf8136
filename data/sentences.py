"""Sentence splitting: a line of text cut into sentences, and a sentence too long for a model
cut further, with nothing of the text lost.

    >>> text = "Dr. Smith came at 3.5 p.m. today.  He left."
    >>> [text[s:e] for s, e in split_sentences(text, "en")]
    ['Dr. Smith came at 3.5 p.m. today.', 'He left.']

A split is a list of spans `(start, end)` into the text, in order, that do not overlap. A
span begins and ends with a non-space character; what lies between two spans (the separator)
is whitespace, or nothing. So the text is rebuilt exactly from its spans and separators, and
a translation is joined back with the separators of its source.

Languages that pysbd knows (`sbd_languages()`: English, German, French and 20 more; rules for
abbreviations, initials, numbers, quotes) are split by it; any other language, or none, by
`rule_spans`: a sentence ends at . ! ? or … followed by a space and no lower-case letter,
unless the word before is a single letter or a common abbreviation; 。！？ end one anywhere.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

Span = tuple[int, int]

# Abbreviations the rule-based split never ends a sentence after (lower case, no dot).
_ABBREVIATION_WORDS = (
    "dr mr mrs ms prof sr jr st mt no nr vs etc approx ca cf eg ie al fig vol ch pp dept "
    "inc ltd co corp jan feb mar apr jun jul aug sep sept oct nov dec bzw usw ggf vgl evtl "
    "inkl hr fr mme mlle mm sig av ed eds"
)
_ABBREVIATIONS = frozenset(_ABBREVIATION_WORDS.split())
# A sentence's end: . ! ? … and closing quotes or brackets before a space and no lower-case
# letter; or 。！？ anywhere.
_RULE_END = re.compile(r"""[.!?…]+["'”’»)\]]*(?=\s+[^\sa-zà-öø-ÿ])|[。！？]+["'”’」』)）]*""")
# Where a sentence too long for the model may be cut, best first: after clause punctuation,
# then at any space.
_CLAUSE_END = re.compile(r"[,;:—–]+(?=\s)|[，、；：]+")
_SPACE = re.compile(r"\s+")


def language_code(lang: str | None) -> str | None:
    """The base language of a code: "en_US", "EN", "de-DE" -> "en", "en", "de"."""
    if not lang:
        return None
    return re.split(r"[-_]", lang.strip().lower(), maxsplit=1)[0] or None


def split_sentences(text: str, lang: str | None = None) -> list[Span]:
    """The sentences of `text` as spans (see the module's docstring); [] for a blank text.

    Args:
        text: a line, a paragraph, or any text (line breaks count as spaces).
        lang: the language's code ("en", "de", "fr", "de-DE", ...); None or one pysbd does
            not know: the rule-based split.
    """
    if not text.strip():
        return []
    code = language_code(lang)
    if code in sbd_languages():
        spans = _locate(text, _segmenter(code).segment(text))
        if spans is not None:
            return spans
    return rule_spans(text)


def rule_spans(text: str) -> list[Span]:
    """The rule-based split of `text` (the fallback for unknown languages)."""
    cuts = []
    for match in _RULE_END.finditer(text):
        start = match.start()
        window = text[max(0, start - 40) : start]
        before = window.split()[-1] if window.strip() and not window[-1].isspace() else ""
        if match.group()[0] == "." and _abbreviation(before):
            continue
        cuts.append(match.end())
    return _trimmed(text, [0, *cuts, len(text)])


def separators(text: str, spans: list[Span]) -> list[str]:
    """What lies between consecutive spans (len(spans) - 1 strings)."""
    return [text[a[1] : b[0]] for a, b in itertools.pairwise(spans)]


def split_to_fit(text: str, span: Span, fits: Callable[[str], bool]) -> list[Span]:
    """`span` of `text` cut into parts that each `fits`: at clause punctuation (, ; : — and
    their CJK forms), else at spaces, else (a very long word, or a text without spaces)
    at the longest prefix that fits. Neighbouring pieces are packed together while they fit,
    so the parts are as few as the cuts allow. Nothing is dropped: the parts and the text
    between them are the span.

    Args:
        fits: whether a part is short enough (for a model: its pieces fit max_length).
    """
    start, end = span
    if fits(text[start:end]):
        return [span]
    parts: list[Span] = []
    for unit in _pack(text, span, _CLAUSE_END, fits):
        if fits(text[unit[0] : unit[1]]):
            parts.append(unit)
            continue
        for word_unit in _pack(text, unit, _SPACE, fits):
            if fits(text[word_unit[0] : word_unit[1]]):
                parts.append(word_unit)
            else:
                parts.extend(_prefix_cuts(text, word_unit, fits))
    return parts


def _pack(
    text: str, span: Span, cut_at: re.Pattern[str], fits: Callable[[str], bool]
) -> list[Span]:
    """The units of `span` between the cuts of `cut_at`, neighbours merged while they fit."""
    start, end = span
    bounds = [start, *(m.end() for m in cut_at.finditer(text, start, end)), end]
    units = [u for u in _trimmed(text, bounds) if u[0] < u[1]]
    packed: list[Span] = []
    for unit in units:
        if packed and fits(text[packed[-1][0] : unit[1]]):
            packed[-1] = (packed[-1][0], unit[1])
        else:
            packed.append(unit)
    return packed


def _prefix_cuts(text: str, span: Span, fits: Callable[[str], bool]) -> list[Span]:
    """`span` cut into the longest prefixes that fit (at least one character each)."""
    parts = []
    start, end = span
    while start < end:
        low, high = start + 1, end  # the longest fitting end is in [low, high]
        while low < high:
            middle = (low + high + 1) // 2
            if fits(text[start:middle]):
                low = middle
            else:
                high = middle - 1
        parts.append((start, low))
        start = low
        while start < end and text[start].isspace():
            start += 1
    return parts


def _trimmed(text: str, bounds: list[int]) -> list[Span]:
    """The spans between consecutive bounds, whitespace trimmed, blank ones left out."""
    spans = []
    for a, b in itertools.pairwise(bounds):
        piece = text[a:b]
        stripped = piece.strip()
        if stripped:
            left = a + len(piece) - len(piece.lstrip())
            spans.append((left, left + len(stripped)))
    return spans


def _locate(text: str, sentences: list[str]) -> list[Span] | None:
    """The spans of the sentences a splitter returned, found in order in `text`; None if
    they do not rebuild it (a splitter that changed the text: the caller uses the rules)."""
    spans: list[Span] = []
    at = 0
    for sentence in sentences:
        body = sentence.strip()
        if not body:
            continue
        found = text.find(body, at)
        if found < 0 or text[at:found].strip():
            return None
        spans.append((found, found + len(body)))
        at = found + len(body)
    if text[at:].strip() or not spans:
        return None
    return spans


def _abbreviation(word: str) -> bool:
    """Whether a word before a dot is an initial, an abbreviation or a number."""
    word = word.rstrip(".").lstrip("\"'“‘«([")
    last = word.rsplit(".", 1)[-1]
    return (
        len(last) <= 1
        or last.lower() in _ABBREVIATIONS
        or "." in word  # e.g, i.e, z.B
        or last.isdigit()
    )


@lru_cache(maxsize=1)
def sbd_languages() -> frozenset[str]:
    """The languages pysbd has rules for (23 in pysbd 0.3: en, de, fr, es, it, nl, ru, zh,
    ja, ar, hi, ...)."""
    from pysbd.languages import LANGUAGE_CODES

    return frozenset(LANGUAGE_CODES)


@lru_cache(maxsize=32)
def _segmenter(code: str) -> Any:
    import pysbd

    return pysbd.Segmenter(language=code, clean=False)
