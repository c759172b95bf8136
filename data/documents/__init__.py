"""Documents: files whose structure is kept while their text is translated.

A document is parsed into literal parts, kept byte for byte (subtitle timings, Markdown
code blocks and link targets, HTML tags), and units: the texts to translate, in order.
`Document.render` puts translations in place of the units and returns the file's text:

    doc = parse(text, "srt", name="talk.srt")
    results = translator.translate(doc.units, align=True)
    output = doc.render(list(results))

A translation is a string, or a result with `.text` and `.alignment` ((source word, output
word) pairs, as `Translator.translate(..., align=True)` gives): the alignment places inline
markup (HTML tags, Markdown emphasis and links, subtitle formatting tags) around the output
words that translate the words it surrounded. Nothing here imports torch.

Formats: text (one unit per line), srt, vtt, markdown, html; `detect_format` chooses one
from a file's extension. Errors are `attn.data.DataError`s ("FILE:LINE: what is wrong").
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from attn.data.readers import DataError, open_binary

FORMATS = ("text", "srt", "vtt", "markdown", "html")

# File extensions (lower case) of each format but text, the default.
EXTENSIONS = {
    ".srt": "srt",
    ".vtt": "vtt",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
}

# A NUL byte among the first bytes: a binary file, as `attn.data.read_lines` decides.
_BINARY_SNIFF = 8192


class Aligned(Protocol):
    """A translation with its word alignment (a `Generation` is one)."""

    text: str
    alignment: list[tuple[int, int]] | None


Translation = str | Aligned


class Unit(Protocol):
    """A text to translate and how its translation goes back into the document."""

    text: str

    def render(self, translation: str, alignment: Sequence[tuple[int, int]] | None) -> str:
        """The document's text for this unit, given its translation."""
        ...


class Document:
    """A parsed file: literal strings, kept as they are, and units, translated.

    Attributes:
        format: one of `FORMATS`.
        parts: the file in order: strings (literal) and `Unit`s.
    """

    def __init__(self, fmt: str, parts: Sequence[str | Unit]) -> None:
        self.format = fmt
        self.parts = list(parts)
        self._units = [p for p in self.parts if not isinstance(p, str)]

    @property
    def units(self) -> list[str]:
        """The texts to translate, in document order."""
        return [u.text for u in self._units]

    def render(self, translations: Sequence[Translation]) -> str:
        """The document with each unit replaced by its translation.

        Args:
            translations: one per unit, in the order of `units`: a string, or a result
                with `.text` and `.alignment` (None: markup placed by relative position).

        Raises:
            ValueError: not one translation per unit.
        """
        if len(translations) != len(self._units):
            raise ValueError(
                f"expected {len(self._units)} translations (one per unit), got {len(translations)}"
            )
        it = iter(translations)
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            t = next(it)
            if isinstance(t, str):
                out.append(part.render(t, None))
            else:
                out.append(part.render(t.text, t.alignment))
        return "".join(out)


def detect_format(path: str | Path | None, explicit: str | None = None) -> str:
    """The format of a file: `explicit` when given, else its extension's, else text.

    Raises:
        ValueError: `explicit` is not one of `FORMATS`.
    """
    if explicit is not None:
        if explicit not in FORMATS:
            raise ValueError(f"unknown format {explicit!r}; choose one of {', '.join(FORMATS)}")
        return explicit
    if path is None or str(path) == "-":
        return "text"
    return EXTENSIONS.get(Path(path).suffix.lower(), "text")


def parse(text: str, fmt: str, name: str = "<input>") -> Document:
    """Parse a document's text.

    Args:
        text: the whole file, line breaks as they are (\\n or \\r\\n).
        fmt: one of `FORMATS`.
        name: the file name errors give.

    Raises:
        DataError: the text is not a valid file of `fmt` ("NAME:LINE: what is wrong").
        ValueError: an unknown format.
    """
    if fmt == "text":
        from attn.data.documents.text import parse_text as parser
    elif fmt == "srt":
        from attn.data.documents.subrip import parse_srt as parser
    elif fmt == "vtt":
        from attn.data.documents.vtt import parse_vtt as parser
    elif fmt == "markdown":
        from attn.data.documents.markdown import parse_markdown as parser
    elif fmt == "html":
        from attn.data.documents.htmldoc import parse_html as parser
    else:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return Document(fmt, parser(text, name))


def read_document_text(path: str | Path) -> str:
    """A document file's text (`-`: stdin), line breaks kept, a UTF-8 BOM dropped.

    Raises:
        DataError: no such file, unreadable, a binary file (a NUL byte in the first 8 KB),
            UTF-16, or invalid UTF-8 (with the line).
    """
    name = "<stdin>" if str(path) == "-" else str(path)
    stream = open_binary(path)
    try:
        raw = stream.read()
    except OSError as e:
        raise DataError(name, f"cannot read ({e.strerror})") from e
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError(name, "looks like UTF-16 text; convert it to UTF-8")
    if b"\0" in raw[:_BINARY_SNIFF]:
        raise DataError(name, "looks like a binary file, not UTF-8 text")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(
            name, f"invalid UTF-8 (byte 0x{raw[e.start]:02x}); convert the file to UTF-8", line
        ) from e
    if "\0" in text:
        raise DataError(
            name, "a NUL byte, which text never contains", text[: text.index("\0")].count("\n") + 1
        )
    return text.removeprefix("\ufeff")


def load(path: str | Path, fmt: str | None = None) -> Document:
    """Read and parse a document file; `fmt` None: chosen by `detect_format`.

    Raises:
        DataError: unreadable, binary or not valid for its format.
    """
    fmt = detect_format(path, fmt)
    name = "<stdin>" if str(path) == "-" else str(path)
    return parse(read_document_text(path), fmt, name)


def lines_with_ends(text: str) -> list[str]:
    """`text` cut after each \\n (only \\n ends a line), line breaks kept."""
    lines = text.split("\n")
    out = [line + "\n" for line in lines[:-1]]
    if lines[-1]:
        out.append(lines[-1])
    return out


__all__ = [
    "EXTENSIONS",
    "FORMATS",
    "Document",
    "Unit",
    "detect_format",
    "lines_with_ends",
    "load",
    "parse",
    "read_document_text",
]
