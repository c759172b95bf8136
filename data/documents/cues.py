"""What SRT and WebVTT share: a cue's text, translated as one text and wrapped back into
as many lines as it had, its formatting tags (`<i>`, `<b>`, `<font ...>`, `{\\an8}`, WebVTT's
`<v Name>` and `<c.class>`) kept around the words they held."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

from attn.data.documents.inline import InlineBuilder

# A formatting tag: HTML-like (<i>, </i>, <font color="red">, <00:00:01.000>) or an
# ASS override block ({\an8}).
_TAG = re.compile(r"<[^<>\n]*>|\{\\[^{}\n]*\}")


def cue_parts(lines: Sequence[str], newline: str, escaped: bool) -> list:
    """The parts of a cue's text lines (without their line breaks): a unit wrapped back
    into as many lines, or the lines as a literal when they hold no words (only tags).
    `escaped`: the text holds `&amp;`, `&lt;` and `&gt;` for those characters (WebVTT,
    not SRT)."""
    builder = InlineBuilder(_escape if escaped else str)
    for n, line in enumerate(lines):
        if n:
            builder.line_break(newline)
        at = 0
        for m in _TAG.finditer(line):
            _text(builder, line[at : m.start()], escaped)
            builder.tag(m.group())
            at = m.end()
        _text(builder, line[at:], escaped)
    return builder.build()


def _text(builder: InlineBuilder, raw: str, escaped: bool) -> None:
    if raw:
        builder.text(html.unescape(raw) if escaped and "&" in raw else raw, raw)


def _escape(word: str) -> str:
    return word.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def blocks(text: str) -> list[tuple[int, list[str]]]:
    """The file as blocks of consecutive non-blank lines (line breaks kept), each with its
    first line's number, and the blank lines between them as blocks of their own."""
    from attn.data.documents import lines_with_ends

    out: list[tuple[int, list[str]]] = []
    blank = None
    for n, line in enumerate(lines_with_ends(text), start=1):
        is_blank = not line.strip()
        if blank is not is_blank or not out:
            out.append((n, []))
            blank = is_blank
        out[-1][1].append(line)
    return out


def cue_block(block: Sequence[str], n_head: int, escaped: bool) -> list:
    """The parts of a cue block: its first `n_head` lines (number, timing) literal, then its
    text lines (see `cue_parts`), then the last line break literal."""
    lines = [line.rstrip("\r\n") for line in block[n_head:]]
    last = block[-1]
    newline = "\r\n" if block[0].endswith("\r\n") else "\n"
    return [
        "".join(block[:n_head]),
        *cue_parts(lines, newline, escaped),
        last[len(last.rstrip("\r\n")) :],
    ]
