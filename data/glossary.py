"""Terminology for translation: glossaries (`attn translate --glossary`) and texts that carry
what their translation must hold (JSON Lines `constraints` and `prefix`).

A glossary is a TSV file, one `source term<TAB>target term` pair a line (empty lines
skipped). A source term occurs in a text where its words occur one after the other; words
are runs of letters and digits, and each other non-space character alone, so "e-mail"
matches the words "e", "-", "mail". Matching is case-sensitive unless `ignore_case`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from attn.data.readers import DataError, read_lines

_WORD = re.compile(r"\w+|[^\w\s]")


def words(text: str) -> list[str]:
    """The words a glossary matches on."""
    return _WORD.findall(text)


class GuidedText(str):
    """A text, with the target texts that must appear in its translation (`constraints`)
    and the text its translation starts with (`prefix`, "" for none)."""

    constraints: tuple[str, ...]
    prefix: str

    def __new__(cls, text: str, constraints: Iterable[str] = (), prefix: str | None = None):
        obj = super().__new__(cls, text)
        obj.constraints = tuple(constraints)
        obj.prefix = prefix or ""
        return obj

    def __reduce__(self):  # (to forked workers and back: the text with its directions)
        return (GuidedText, (str(self), self.constraints, self.prefix))


def guided(
    texts: Iterable[str],
    constraints: Iterable[Sequence[str] | None] | None = None,
    prefix: str | Iterable[str | None] | None = None,
) -> Iterator[str]:
    """`texts` with per-text constraints and prefixes attached (lazily), added to those a
    `GuidedText` already has (its own prefix wins). `prefix` may be one string for all texts.

    Raises:
        ValueError: `constraints` or `prefix` is not as long as `texts` (when reached).
    """
    each = None if prefix is None or isinstance(prefix, str) else iter(prefix)
    cons = None if constraints is None else iter(constraints)
    for i, text in enumerate(texts):
        extra: Sequence[str] = (next(cons, None) if cons is not None else None) or ()
        pre = prefix if isinstance(prefix, str) else (next(each, None) if each else None)
        if isinstance(extra, str):
            raise ValueError(f"constraints of text {i} must be a list of strings, not a string")
        own = text if isinstance(text, GuidedText) else None
        yield GuidedText(
            text,
            (*(own.constraints if own else ()), *extra),
            (own.prefix if own and own.prefix else None) or pre,
        )


@dataclass(frozen=True)
class GlossaryEntry:
    source: tuple[str, ...]  # the source term's words
    target: str
    line: int


@dataclass(frozen=True)
class Glossary:
    """Source terms and the target terms their translations must use."""

    entries: tuple[GlossaryEntry, ...]
    ignore_case: bool = False
    path: str = "<glossary>"

    @classmethod
    def read(cls, path: str | Path, *, ignore_case: bool = False) -> Glossary:
        """Read a glossary TSV file.

        Raises:
            DataError: unreadable, not UTF-8, a line without exactly one tab, an empty side,
                or a source term given twice with different targets (FILE:LINE: ...).
        """
        name = str(path)
        entries: list[GlossaryEntry] = []
        seen: dict[tuple[str, ...], GlossaryEntry] = {}
        for lineno, line in enumerate(read_lines(str(path)), start=1):
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) != 2:
                raise DataError(
                    name, f"expected source term<TAB>target term, found {len(parts)} fields", lineno
                )
            source, target = parts[0].strip(), parts[1].strip()
            if not source or not target:
                side = "source" if not source else "target"
                raise DataError(name, f"the {side} term is empty", lineno)
            key = tuple(w.casefold() if ignore_case else w for w in words(source))
            entry = GlossaryEntry(key, target, lineno)
            if key in seen:
                if seen[key].target != target:
                    raise DataError(
                        name,
                        f'"{source}" is already in the glossary (line {seen[key].line}) '
                        f'with the target "{seen[key].target}"',
                        lineno,
                    )
                continue
            seen[key] = entry
            entries.append(entry)
        return cls(tuple(entries), ignore_case, name)

    def __post_init__(self) -> None:
        first: dict[str, list[GlossaryEntry]] = {}
        for entry in self.entries:
            first.setdefault(entry.source[0], []).append(entry)
        object.__setattr__(self, "_by_first", first)

    def targets(self, text: str) -> list[str]:
        """The target terms of the source terms that occur in `text`, in glossary order."""
        found = [w.casefold() if self.ignore_case else w for w in words(text)]
        hits: set[int] = set()
        by_first: dict[str, list[GlossaryEntry]] = self._by_first  # type: ignore[attr-defined]
        for i, word in enumerate(found):
            for entry in by_first.get(word, ()):
                n = len(entry.source)
                if tuple(found[i : i + n]) == entry.source:
                    hits.add(entry.line)
        return list(dict.fromkeys(e.target for e in self.entries if e.line in hits))

    def check_lengths(self, count: Sequence[int], max_length: int) -> None:
        """Refuse target terms longer than the model's `max_length` pieces; `count` holds
        each entry's target pieces, in order.

        Raises:
            DataError: FILE:LINE: the target term is too long.
        """
        for entry, n in zip(self.entries, count, strict=True):
            if n > max_length:
                raise DataError(
                    self.path,
                    f"the target term is {n} pieces, more than the model's max_length {max_length}",
                    entry.line,
                )
