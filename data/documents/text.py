"""Plain text: each non-empty line is a unit; line breaks and blank lines are kept."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from attn.data.documents.inline import InlineBuilder


@dataclass
class Line:
    """A line of text, translated as it is."""

    text: str

    def render(self, translation: str, alignment: Sequence[tuple[int, int]] | None) -> str:
        return " ".join(translation.split())


def parse_text(text: str, name: str) -> list:
    from attn.data.documents import lines_with_ends

    parts: list = []
    for line in lines_with_ends(text):
        body = line.rstrip("\r\n")
        if body.strip():
            builder = InlineBuilder()
            builder.text(body)
            parts += [p if isinstance(p, str) else Line(p.text) for p in builder.build()]
        else:
            parts.append(body)
        parts.append(line[len(body) :])
    return [p for p in parts if p != ""]
