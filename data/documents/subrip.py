"""SubRip (.srt) subtitles: cue numbers and timings kept, each cue's text translated.

The file is read line by line, so that everything but the cues' text is written back byte
for byte and an error names its line; the `srt` library's timestamp grammar decides what a
valid timestamp is (its `parse` and `compose` would renumber cues, rewrite timestamps and
drop a cue's position settings).
"""

from __future__ import annotations

import re

import srt

from attn.data.documents.cues import blocks, cue_block
from attn.data.readers import DataError

_TIMING = re.compile(
    rf"^\s*({srt.RGX_TIMESTAMP})\s*-->\s*({srt.RGX_TIMESTAMP})(?:[ \t]+[^\r\n]*)?\s*$"
)
_INDEX = re.compile(r"^\s*\d+\s*$")


def parse_srt(text: str, name: str) -> list:
    """The parts of an SRT file.

    Raises:
        DataError: not SRT (no cue number first), a bad cue number or timing line, a timing
            that ends before it starts, or a cue without text.
    """
    parts: list = []
    seen_cue = False
    for lineno, block in blocks(text):
        if not block[0].strip():
            parts.append("".join(block))
            continue
        if not _INDEX.match(block[0]):
            what = "a cue number" if seen_cue else "a cue number: this is not an SRT file"
            raise DataError(name, f"expected {what}, found {_quote(block[0])}", lineno)
        seen_cue = True
        if len(block) < 2:
            raise DataError(name, "a cue number without a timing line", lineno)
        _check_timing(block[1], name, lineno + 1)
        if len(block) < 3:
            raise DataError(name, f"cue {block[0].strip()} has no text", lineno)
        parts += cue_block(block, 2, escaped=False)
    return [p for p in parts if p != ""]


def _check_timing(line: str, name: str, lineno: int) -> None:
    m = _TIMING.match(line)
    if m is None:
        raise DataError(
            name,
            f"expected a timing line like 00:00:01,000 --> 00:00:02,500, found {_quote(line)}",
            lineno,
        )
    try:
        start, end = (srt.srt_timestamp_to_timedelta(m.group(i)) for i in (1, 2))
    except srt.TimestampParseError as e:
        raise DataError(name, f"bad timestamp ({e})", lineno) from None
    if end < start:
        raise DataError(name, "the cue ends before it starts", lineno)


def _quote(line: str) -> str:
    line = line.rstrip("\r\n")
    return repr(line if len(line) <= 60 else line[:57] + "...")
