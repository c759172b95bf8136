"""HTML: text nodes translated, a paragraph's inline tags kept around the words they held.

The standard library's `html.parser` reads the file: it is a tokenizer built to take what
browsers take (unclosed tags, stray end tags, bare `&` and `<`) without an error, and it
says where each token starts, so every tag, attribute, comment and declaration is written
back from the source byte for byte. Text between block-level tags is one unit; the inline
tags inside it (`<a>`, `<b>`, `<em>`, `<span>`, `<br>`, ...) go back around the translated
words by the word alignment. `<script>`, `<style>`, `<pre>`, `<code>`, `<textarea>`,
`<template>`, `<svg>`, `<math>` and any element with `translate="no"` or class
`notranslate` are kept as they are.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

from attn.data.documents.inline import InlineBuilder

INLINE = frozenset(
    [
        "a",
        "abbr",
        "b",
        "bdi",
        "bdo",
        "br",
        "cite",
        "data",
        "del",
        "dfn",
        "em",
        "font",
        "i",
        "img",
        "ins",
        "kbd",
        "label",
        "mark",
        "q",
        "s",
        "samp",
        "small",
        "span",
        "strong",
        "sub",
        "sup",
        "time",
        "u",
        "var",
        "wbr",
    ]
)
KEEP = frozenset(["script", "style", "pre", "code", "textarea", "template", "svg", "math"])


class _Tokens(HTMLParser):
    """The file as (kind, tag name, attributes, start offset, text) tokens."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.line_starts = [0] + [m.end() for m in re.finditer(r"\n", text)]
        self.tokens: list[tuple[str, str, dict, int, str]] = []

    def _add(self, kind: str, tag: str = "", attrs: list | None = None, data: str = "") -> None:
        line, col = self.getpos()
        self.tokens.append((kind, tag, dict(attrs or ()), self.line_starts[line - 1] + col, data))

    def handle_starttag(self, tag, attrs):
        self._add("start", tag, attrs)

    def handle_startendtag(self, tag, attrs):
        self._add("startend", tag, attrs)

    def handle_endtag(self, tag):
        self._add("end", tag)

    def handle_data(self, data):
        self._add("data", data=data)

    def handle_comment(self, data):
        self._add("comment")

    def handle_decl(self, decl):
        self._add("other")

    def handle_pi(self, data):
        self._add("other")

    def unknown_decl(self, data):
        self._add("other")


def _escape(word: str) -> str:
    return html.escape(word, quote=False)


def _kept(tag: str, attrs: dict) -> bool:
    return (
        tag in KEEP
        or (attrs.get("translate") or "").lower() == "no"
        or "notranslate" in (attrs.get("class") or "").split()
    )


def parse_html(text: str, name: str) -> list:
    """The parts of an HTML file (any text is read as browsers would: no error)."""
    reader = _Tokens(text)
    reader.feed(text)
    reader.close()
    tokens = reader.tokens
    # Each token's source runs to the next token's start.
    ends = [t[3] for t in tokens[1:]] + [len(text)]
    parts: list = [text[: tokens[0][3]]] if tokens else [text]
    builder = InlineBuilder(_escape, breaks_in_text=True)
    kept: list = []  # while inside a kept element: [tag, depth, raw so far]
    for (kind, tag, attrs, start, data), end in zip(tokens, ends, strict=True):
        raw = text[start:end]
        if kept:
            kept[2] += raw
            if tag == kept[0] and kind in ("start", "end"):
                kept[1] += 1 if kind == "start" else -1
            if kept[1] == 0:
                builder.point(kept[2])
                kept = []
        elif kind == "start" and _kept(tag, attrs):
            kept = [tag, 1, raw]
        elif kind == "data":
            builder.text(data, raw)
        elif kind == "comment":
            builder.point(raw)
        elif kind in ("start", "startend", "end") and tag in INLINE:
            builder.tag(raw)
        else:
            parts += builder.build()
            parts.append(raw)
    if kept:
        builder.point(kept[2])
    parts += builder.build()
    return [p for p in parts if p != ""]
