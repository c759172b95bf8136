"""JSON Lines as attn writes and reads them: one JSON value per line, and a line is what ends
at ``\\n``.

Every JSON-lines file attn writes goes through :func:`dumps` (the prepared validation set,
`metrics.jsonl`, fetched datasets, the ``--format jsonl`` outputs) and every one it reads
back splits only at ``\\n``, so writer and reader agree by construction whatever the text
holds. :func:`dumps` also escapes the characters other readers take for a line break
(``str.splitlines`` splits at U+0085, U+2028 and U+2029 too; JSON already escapes the
control characters), so a line attn writes is one line for any reader. The user's own
JSONL files are read by `attn.data.readers`, which splits lines the same way.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

# Line breaks to str.splitlines() (and to JavaScript source, for U+2028/U+2029) that JSON
# lets stand unescaped in a string; control characters such as \r and \x1c JSON escapes.
_BREAKS = {0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029"}


class JsonLinesError(ValueError):
    """A line of a JSON Lines file is not JSON. The message is ``"{file}:{line}: ..."``.

    Attributes:
        file: the file; line: its 1-based line number; what: the problem.
    """

    def __init__(self, file: str | Path, line: int, what: str) -> None:
        self.file, self.line, self.what = str(file), line, what
        super().__init__(f"{self.file}:{line}: {what}")


def dumps(value: Any) -> str:
    """`value` as one line of JSON, without the line end: non-ASCII text as it is, except
    U+0085, U+2028 and U+2029, escaped (they can only stand inside a string)."""
    return json.dumps(value, ensure_ascii=False).translate(_BREAKS)


def text(values: Iterable[Any]) -> str:
    """The whole file of `values`: each one :func:`dumps` line ended by ``\\n``."""
    return "".join(dumps(v) + "\n" for v in values)


def append(path: str | Path, value: Any) -> None:
    """Append `value` as one line to `path` (created if missing). One `write` call on a file
    opened for appending, so concurrent writers do not interleave within a line."""
    with open(path, "a", encoding="utf-8", newline="") as f:
        f.write(dumps(value) + "\n")


def split_lines(content: str) -> list[str]:
    """The lines of `content`: split at ``\\n`` only, a last line without one kept."""
    lines = content.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def read(path: str | Path, *, skip_bad: bool = False) -> Iterator[tuple[int, Any]]:
    """Yield ``(line number, value)`` for each line of a JSON Lines file (1-based).

    Args:
        skip_bad: pass over a line that is not JSON (one a killed writer cut short, or a bad
            byte) instead of raising.

    Raises:
        OSError: the file cannot be read.
        JsonLinesError: a line is not JSON (unless `skip_bad`), or not UTF-8.
    """
    with open(path, "rb") as f:
        data = f.read()
    try:
        content = data.decode("utf-8", errors="replace" if skip_bad else "strict")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise JsonLinesError(path, line, "not UTF-8 text") from None
    for number, line in enumerate(split_lines(content), start=1):
        try:
            yield number, json.loads(line)
        except ValueError as e:
            if not skip_bad:
                raise JsonLinesError(path, number, f"not a JSON value ({e})") from None
