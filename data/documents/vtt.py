"""WebVTT (.vtt) subtitles: the header, NOTE, STYLE and REGION blocks, cue identifiers,
timings and cue settings kept byte for byte, each cue's text translated.

An own line-based reader rather than webvtt-py: that library rebuilds the file from its
cue objects, which drops comments and blank-line layout, and reports no line numbers.
"""

from __future__ import annotations

import re

from attn.data.documents.cues import blocks, cue_block
from attn.data.readers import DataError

_TS = r"(?:(\d{2,}):)?([0-5]\d):([0-5]\d)\.(\d{3})"
_TIMING = re.compile(rf"^\s*{_TS}[ \t]+-->[ \t]+{_TS}(?:[ \t]+[^\r\n]*)?\s*$")
_LITERAL_BLOCKS = ("NOTE", "STYLE", "REGION")


def parse_vtt(text: str, name: str) -> list:
    """The parts of a WebVTT file.

    Raises:
        DataError: no WEBVTT line first, a cue without a valid timing line, a timing that
            ends before it starts, or a cue without text.
    """
    all_blocks = blocks(text)
    if not all_blocks or not re.match(r"WEBVTT(?:[ \t]|\r?\n|$)", all_blocks[0][1][0]):
        raise DataError(name, "not a WebVTT file: the first line must be WEBVTT", 1)
    parts: list = ["".join(all_blocks[0][1])]
    for lineno, block in all_blocks[1:]:
        first = block[0].strip()
        if not first or first.split(maxsplit=1)[0] in _LITERAL_BLOCKS:
            parts.append("".join(block))
            continue
        head = 1 if "-->" in block[0] else 2  # an optional cue identifier comes first
        if len(block) < head:
            raise DataError(name, "a cue identifier without a timing line", lineno)
        _check_timing(block[head - 1], name, lineno + head - 1)
        if len(block) == head:
            raise DataError(name, "a cue without text", lineno)
        parts += cue_block(block, head, escaped=True)
    return [p for p in parts if p != ""]


def _check_timing(line: str, name: str, lineno: int) -> None:
    m = _TIMING.match(line)
    if m is None:
        shown = line.rstrip("\r\n")
        raise DataError(
            name,
            f"expected a timing line like 00:01.000 --> 00:02.500, found {shown[:60]!r}",
            lineno,
        )
    g = [int(x or 0) for x in m.groups()]
    start = ((g[0] * 60 + g[1]) * 60 + g[2]) * 1000 + g[3]
    end = ((g[4] * 60 + g[5]) * 60 + g[6]) * 1000 + g[7]
    if end < start:
        raise DataError(name, "the cue ends before it starts", lineno)
