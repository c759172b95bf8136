"""What SRT and WebVTT share: a cue's text, translated as one text and wrapped back into
as many lines as it had, its formatting tags (`<i>`, `<b>`, `<font ...>`, `{\\an8}`, WebVTT's
`<v Name>` and `<c.class>`) kept around the words they held."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass

from attn.data.documents.inline import InlineBuilder, InlineText

# A formatting tag: HTML-like (<i>, </i>, <font color="red">, <00:00:01.000>) or an
# ASS override block ({\an8}).
_TAG = re.compile(r"<[^<>\n]*>|\{\\[^{}\n]*\}")
_CLOSE = re.compile(r"</\s*([\w.-]*)")
_OPEN = re.compile(r"<\s*([A-Za-z][\w-]*)")


@dataclass
class Cue:
    """A cue's text: its lines as one unit; `newline` joins the output lines."""

    inline: InlineText
    n_lines: int
    newline: str = "\n"

    @property
    def text(self) -> str:
        return self.inline.text

    def render(self, translation: str, alignment: Sequence[tuple[int, int]] | None) -> str:
        return self.newline.join(wrap(self.inline.tokens(translation, alignment), self.n_lines))


def cue_parts(lines: Sequence[str], newline: str, escaped: bool) -> list:
    """The parts of a cue's text lines (without their line breaks): a `Cue` unit, or the
    lines as a literal when they hold no words (only tags). `escaped`: the text holds
    `&amp;`, `&lt;` and `&gt;` for those characters (WebVTT, not SRT)."""
    builder = InlineBuilder(_escape if escaped else str)
    stack: list[tuple[str, int]] = []
    for n, line in enumerate(lines):
        if n:
            builder.text(" ", newline)
        at = 0
        for m in _TAG.finditer(line):
            _text(builder, line[at : m.start()], escaped)
            _tag(builder, stack, m.group())
            at = m.end()
        _text(builder, line[at:], escaped)
    parts = builder.build()
    return [Cue(p, len(lines), newline) if isinstance(p, InlineText) else p for p in parts]


def _text(builder: InlineBuilder, raw: str, escaped: bool) -> None:
    if raw:
        builder.text(html.unescape(raw) if escaped and "&" in raw else raw, raw)


def _tag(builder: InlineBuilder, stack: list[tuple[str, int]], tag: str) -> None:
    """An opening tag starts a span, its closing tag ends it; anything else is a point."""
    close = _CLOSE.match(tag)
    if close:
        name = close.group(1).split(".")[0].lower()
        for i in range(len(stack) - 1, -1, -1):
            if stack[i][0] == name or not name:
                builder.close(stack.pop(i)[1], tag)
                return
        builder.point(tag)
        return
    opening = _OPEN.match(tag)
    if opening and not tag.endswith("/>"):
        stack.append((opening.group(1).split(".")[0].lower(), builder.open(tag)))
    else:
        builder.point(tag)


def _escape(word: str) -> str:
    return word.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def wrap(tokens: Sequence[str], n_lines: int) -> list[str]:
    """`tokens` in at most `n_lines` lines (never an empty one) of about equal length."""
    n = max(1, min(n_lines, len(tokens)))
    total = sum(len(t) for t in tokens) + len(tokens) - 1
    lines: list[list[str]] = [[]]
    used = 0
    for i, token in enumerate(tokens):
        left = len(tokens) - i  # tokens still to place, this one included
        line_full = lines[-1] and used + len(token) / 2 > total * len(lines) / n
        if len(lines) < n and lines[-1] and (line_full or left == n - len(lines)):
            lines.append([])
        lines[-1].append(token)
        used += len(token) + 1
    return [" ".join(line) for line in lines]


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
