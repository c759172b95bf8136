"""Markdown: the text of paragraphs, headings, list items, block quotes and table cells
translated; everything else kept byte for byte.

markdown-it-py (CommonMark, with tables and strikethrough) finds the blocks and their
inline tokens, with the source lines of each; each inline token's children are then found
in the source in order, so that their raw text, not a re-rendering, is what the output
keeps: heading and list markers, emphasis delimiters, a link's `[` and `](target "title")`
around its translated text, inline code, images, autolinks and inline HTML whole. Code
blocks, HTML blocks, reference definitions and a front matter block (`---` or `+++` at the
top) hold no inline tokens, so they stay as they are. Footnote markers (`[^1]`, and
`[^1]:` before a footnote's text), which CommonMark reads as text, are kept whole too. An
inline token whose source cannot be matched (a construct this reader does not know) is
kept untranslated, never dropped.
"""

from __future__ import annotations

import re

from markdown_it import MarkdownIt
from markdown_it.token import Token

from attn.data.documents.inline import InlineBuilder

_FRONT_MATTER = re.compile(r"\A(---|\+\+\+)[ \t]*\r?\n.*?^\1[ \t]*(?:\r?\n|\Z)", re.S | re.M)
_SOFTBREAK = re.compile(r"[ \t]*\r?\n")
_HARDBREAK = re.compile(r"(?:[ \t]{2,}|\\)\r?\n")
_CONTINUATION = re.compile(r"[ \t>]*")
_AUTOLINK = re.compile(r"<[^<>\s]*>")
_SPECIAL = re.compile(r"[\\`*_\[\]<>]")
# A footnote reference or definition marker (GitHub's extension; CommonMark reads text).
_FOOTNOTE = re.compile(r"\[\^[^\]\s]+\]:?")


class _NoMatch(Exception):
    """An inline token's source was not where it should be."""


def parse_markdown(text: str, name: str) -> list:
    """The parts of a Markdown file (any text is valid Markdown)."""
    front = _FRONT_MATTER.match(text)
    skip = front.end() if front else 0
    md = MarkdownIt("commonmark").enable(["table", "strikethrough"])
    reader = _Reader(text, skip)
    for token in md.parse(text[skip:]):
        if token.type == "inline" and token.children and token.map:
            reader.inline(token)
    reader.parts.append(text[reader.cursor :])
    return [p for p in reader.parts if p != ""]


class _Reader:
    """Walks the source with a cursor: the text before each inline token's source is literal."""

    def __init__(self, text: str, skip: int) -> None:
        self.src = text
        self.cursor = 0
        self.skip = skip
        self.line_starts = [skip] + [skip + m.end() for m in re.finditer(r"\n", text[skip:])]
        self.parts: list = []

    def inline(self, token: Token) -> None:
        assert token.map is not None and token.children is not None
        start = max(self.cursor, self.line_starts[min(token.map[0], len(self.line_starts) - 1)])
        try:
            events, first, end = _events(self.src, start, token.children)
        except _NoMatch:
            return  # left in the literal text around it
        builder = InlineBuilder(_escape)
        handles: list[int] = []
        for kind, raw, plain in events:
            if kind == "text":
                builder.text(plain, raw)
            elif kind == "break":
                builder.line_break(raw)
            elif kind == "open":
                handles.append(builder.open(raw))
            elif kind == "close":
                builder.close(handles.pop(), raw) if handles else builder.point(raw)
            elif kind == "tag":
                builder.tag(raw)
            else:
                builder.point(raw)
        self.parts.append(self.src[self.cursor : first])
        self.parts += builder.build()
        self.cursor = end


# Over 80 lines: one branch per kind of inline token.
def _events(src: str, pos: int, children: list[Token]) -> tuple[list[list], int, int]:
    """The children as (kind, raw, plain) events: text, open, close, tag (inline HTML) or
    point; and where their source starts and ends.

    Raises:
        _NoMatch: a child's source is not found where it should be.
    """
    events: list[list] = []
    first = None
    i = 0
    while i < len(children):
        child = children[i]
        kind, raw, plain = "point", "", ""
        if child.type == "text" and not child.content:
            # Left by emphasis delimiters (`> **x**`): no source of its own.
            i += 1
            continue
        if first is None and child.type != "text":
            # Markup first: its source starts at the first place its opening string is.
            found = src.find(_opening(child), pos)
            pos = found if found >= 0 else pos
        elif child.type != "text" and events and events[-1][0] == "break":
            # A continuation line's `> ` or indentation before markup: part of the break.
            gap = _match(_CONTINUATION, src, pos)
            events[-1][1] += gap
            pos += len(gap)
        if child.type == "text":
            m = _text_pattern(child.content).search(src, pos)
            if m is None:
                raise _NoMatch
            gap = src[pos : m.start()]
            if gap and first is not None:
                _absorb(events, gap)
            pos = m.start()
            if first is None:
                first = pos
            pieces = _footnotes(m.group(), child.content)
            events += pieces[:-1]
            pos += sum(len(e[1]) for e in pieces[:-1])
            kind, raw, plain = pieces[-1]
        elif child.type == "softbreak":
            kind, raw = "break", _match(_SOFTBREAK, src, pos)
        elif child.type == "hardbreak":
            kind, raw = "break", _match(_HARDBREAK, src, pos)
        elif child.type.split("_")[0] in ("em", "strong", "s"):
            kind, raw = child.type.rsplit("_", 1)[1], _literal(src, pos, child.markup)
        elif child.type == "link_open" and child.markup == "autolink":
            raw = _match(_AUTOLINK, src, pos)
            while children[i].type != "link_close":
                i += 1
        elif child.type == "link_open":
            kind, raw = "open", _literal(src, pos, "[")
        elif child.type == "link_close":
            kind, raw = "close", src[pos : _link_end(src, pos)]
        elif child.type == "image":
            _literal(src, pos, "![")
            raw = src[pos : _link_end(src, _bracket_end(src, pos + 1))]
        elif child.type == "code_inline":
            ticks = _literal(src, pos, child.markup)
            close = re.compile(rf"(?<!`){ticks}(?!`)").search(src, pos + len(ticks))
            if close is None:
                raise _NoMatch
            raw = src[pos : close.end()]
        elif child.type == "html_inline":
            kind, raw = "tag", _literal(src, pos, child.content)
        else:
            raise _NoMatch
        if first is None:
            first = pos
        events.append([kind, raw, plain])
        pos += len(raw)
        i += 1
    if first is None:
        raise _NoMatch
    return events, first, pos


def _escape(word: str) -> str:
    """A translated word as Markdown text: characters that would start markup escaped."""
    return _SPECIAL.sub(r"\\\g<0>", word)


def _footnotes(raw: str, plain: str) -> list[list]:
    """A text child's events: its text, and footnote markers (`[^1]`, `[^note]:`, which
    CommonMark reads as text) as points, kept whole. Ends with a text event."""
    events: list[list] = []
    at = 0
    for m in _FOOTNOTE.finditer(plain):
        head = _text_pattern(plain[at : m.start()]).match(raw)
        if head is None or not raw.startswith(m.group(), head.end()):
            break  # written with escapes or entities: plain text
        events += [["text", head.group(), plain[at : m.start()]], ["point", m.group(), ""]]
        raw, at = raw[head.end() + len(m.group()) :], m.end()
    events.append(["text", raw, plain[at:]])
    return [e for e in events[:-1] if e[1]] + events[-1:]


def _opening(child: Token) -> str:
    """How the source of a non-text child starts."""
    if child.type == "image":
        return "!["
    if child.type == "link_open":
        return "<" if child.markup == "autolink" else "["
    if child.type == "html_inline":
        return child.content
    return child.markup or "\n"


def _absorb(events: list[list], gap: str) -> None:
    """Source between two children (a continuation line's `> ` or indentation): part of
    the line break or markup before it, or a point of its own after text."""
    if events[-1][0] == "text":
        events.append(["point", gap, ""])
    else:
        events[-1][1] += gap


def _text_pattern(content: str) -> re.Pattern[str]:
    """A text child's source: each character as it is, backslash-escaped, or an entity."""
    parts = []
    for ch in content:
        if ch.isalnum() or ch.isspace():
            parts.append(f"(?:{re.escape(ch)}|&#?\\w+;)")
        else:
            parts.append(f"(?:\\\\?{re.escape(ch)}|&#?\\w+;)")
    return re.compile("".join(parts))


def _match(pattern: re.Pattern[str], src: str, pos: int) -> str:
    m = pattern.match(src, pos)
    if m is None:
        raise _NoMatch
    return m.group()


def _literal(src: str, pos: int, expected: str) -> str:
    if not src.startswith(expected, pos):
        raise _NoMatch
    return expected


def _bracket_end(src: str, pos: int) -> int:
    """The position of the `]` that closes the `[` at `pos`."""
    depth = 0
    for j in range(pos, len(src)):
        if src[j] == "\\":
            continue
        if src[j] == "[" and (j == 0 or src[j - 1] != "\\"):
            depth += 1
        elif src[j] == "]" and src[j - 1] != "\\":
            depth -= 1
            if depth == 0:
                return j
    raise _NoMatch


def _link_end(src: str, pos: int) -> int:
    """The end of a link's tail at `pos`: `]` and its `(destination "title")`, `[label]`,
    or nothing more."""
    _literal(src, pos, "]")
    pos += 1
    if src.startswith("(", pos):
        depth, quote, j = 0, "", pos
        while j < len(src):
            ch = src[j]
            if ch == "\\":
                j += 2
                continue
            if quote:
                quote = "" if ch == quote else quote
            elif ch in "\"'" and src[j - 1].isspace():
                quote = ch
            elif ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
                if depth == 0:
                    return j + 1
            j += 1
        raise _NoMatch
    if src.startswith("[", pos):
        return _bracket_end(src, pos) + 1
    return pos
