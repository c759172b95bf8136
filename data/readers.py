"""Readers for the input formats: plain lines, parallel files, TSV/CSV tables, JSONL.

All readers stream (memory stays bounded on a file of any size) and report bad input with
``DataError``, whose message names the file and, where one applies, the line.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import closing
from itertools import zip_longest
from pathlib import Path
from typing import IO

STDIN = "-"

_CHUNK = 1 << 16
_BINARY_SNIFF = 8192
_BOM = b"\xef\xbb\xbf"

TEXT_FIELDS = ("sentence", "text", "review", "document")
LABEL_FIELDS = ("label", "sentiment", "class")


class DataError(ValueError):
    """Bad input data. The message is ``"{file}:{line}: what is wrong"``, or
    ``"{file}: what is wrong"`` when no single line is at fault.

    Attributes:
        file: the file as the user named it (``<stdin>`` for ``-``).
        line: 1-based line number, or None.
        what: the problem, without the location.
    """

    def __init__(self, file: str | Path, what: str, line: int | None = None) -> None:
        self.file = str(file)
        self.line = line
        self.what = what
        where = self.file if line is None else f"{self.file}:{line}"
        super().__init__(f"{where}: {what}")


def _display_name(path: str | Path) -> str:
    return "<stdin>" if str(path) == STDIN else str(path)


def open_binary(path: str | Path) -> IO[bytes]:
    """Open ``path`` (or stdin for ``-``) for binary reading, translating OS errors."""
    if str(path) == STDIN:
        return sys.stdin.buffer
    try:
        return open(path, "rb")
    except FileNotFoundError as e:
        raise DataError(path, "no such file") from e
    except IsADirectoryError as e:
        raise DataError(path, "is a directory") from e
    except PermissionError as e:
        raise DataError(path, "permission denied") from e
    except OSError as e:
        raise DataError(path, f"cannot open ({e.strerror})") from e


def _raw_blocks(stream: IO[bytes], name: str) -> Iterator[bytes]:
    """Split a byte stream at ``\n`` (with a ``\r`` just before it, ``\r\n``): the complete
    lines of each read as one block, its lines joined by ``\n`` (a read that completes no
    line gives none)."""
    buf = b""
    first = True
    while True:
        # read1 returns what is available, so a line typed into a terminal or a pipe is
        # yielded at once instead of after 64 KB.
        chunk = stream.read1(_CHUNK)
        if first:
            first = False
            if chunk.startswith((b"\xff\xfe", b"\xfe\xff")):
                raise DataError(name, "looks like UTF-16 text; convert it to UTF-8")
            if b"\0" in chunk[:_BINARY_SNIFF]:
                raise DataError(name, "looks like a binary file, not UTF-8 text")
            chunk = chunk.removeprefix(_BOM)
        if not chunk:
            break
        buf += chunk
        end = buf.rfind(b"\n")
        if end >= 0:
            # Only \n ends a line, so a CRLF split across two reads needs no care.
            block = buf[: end + 1]
            yield (block.replace(b"\r\n", b"\n") if b"\r" in block else block)[:-1]
            buf = buf[end + 1 :]
    if buf:
        yield buf.removesuffix(b"\r")


# What a strict read suggests for invalid UTF-8 or a NUL byte. Commands that offer
# `--errors replace` pass their own hint.
REENCODE_HINT = "convert the file to UTF-8 (for example with iconv)"


def _decode(raw: bytes, name: str, lineno: int, errors: str, hint: str) -> str:
    if errors == "replace":
        return raw.decode("utf-8", errors="replace").replace("\0", "\ufffd")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        column = len(raw[: e.start].decode("utf-8")) + 1
        raise DataError(
            name,
            f"invalid UTF-8 (byte 0x{raw[e.start]:02x} at column {column}); {hint}",
            lineno,
        ) from e
    nul = text.find("\0")
    if nul >= 0:
        raise DataError(
            name,
            f"NUL byte at column {nul + 1}, which text never contains; {hint}",
            lineno,
        )
    return text


def _decode_block(block: bytes, errors: str) -> list[str] | None:
    """The lines of `block` (joined by newlines) decoded, or None when a strict decode finds
    a bad one."""
    if errors == "replace":
        return block.decode("utf-8", errors="replace").replace("\0", "\ufffd").split("\n")
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if "\0" in text else text.split("\n")


def read_lines(
    path: str | Path, *, errors: str = "strict", hint: str = REENCODE_HINT
) -> Iterator[str]:
    """Yield the lines of a UTF-8 text file, streaming.

    Each line of the input gives exactly one string (an empty line gives ``""``), without
    its line break: ``\\n``, or ``\\r\\n``, ends a line, and nothing else does. A lone
    ``\\r``, U+0085, U+2028, U+2029, a form feed and the like are text, as they are to
    ``wc -l``, ``paste`` and git (a ``\\r`` left at the end of the file goes, as the
    first half of a line break cut short). A UTF-8 BOM at the start is dropped. ``path``
    ``-`` reads stdin.

    Args:
        path: the file, or ``-`` for stdin.
        errors: ``"strict"`` raises on invalid UTF-8 and NUL bytes; ``"replace"``
            substitutes U+FFFD for each.
        hint: what the strict error tells the user to do.

    Raises:
        DataError: missing file, directory, permission denied, a binary file (NUL byte in
            the first 8 KB) or UTF-16, or (strict) invalid UTF-8 / NUL on some line.
        ValueError: ``errors`` is not ``"strict"`` or ``"replace"``.
    """
    if errors not in ("strict", "replace"):
        raise ValueError(f"errors must be 'strict' or 'replace', got {errors!r}")
    name = _display_name(path)
    stream = open_binary(path)
    lineno = 0
    try:
        for block in _raw_blocks(stream, name):
            # The whole block in one decode; line by line only to name a bad line. (No
            # decoder takes the joining newline into an invalid sequence.)
            text = _decode_block(block, errors)
            if text is not None:
                yield from text
                lineno += len(text)
                continue
            for raw in block.split(b"\n"):
                lineno += 1
                yield _decode(raw, name, lineno, errors, hint)
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def read_parallel(
    src_path: str | Path, tgt_path: str | Path, *, empty: str = "error"
) -> Iterator[tuple[str, str]]:
    """Yield ``(source, target)`` pairs from two line-aligned files.

    Args:
        empty: ``"error"`` raises on an empty (or whitespace-only) line; ``"keep"`` yields
            the pair as it is, for a caller that drops and counts such pairs.

    Raises:
        DataError: either file fails to read (see :func:`read_lines`), a line on either
            side is empty (or only whitespace) and ``empty`` is ``"error"``, or the files
            have different line counts.
    """
    src_lines = read_lines(src_path)
    tgt_lines = read_lines(tgt_path)
    check = empty == "error"
    # Not zip(): it would swallow a line of the longer file and miscount it.
    for n, (src, tgt) in enumerate(zip_longest(src_lines, tgt_lines)):
        if src is None or tgt is None:
            n_src = n + (src is not None) + sum(1 for _ in src_lines)
            n_tgt = n + (tgt is not None) + sum(1 for _ in tgt_lines)
            raise DataError(
                _display_name(src_path),
                f"has {n_src} lines but {_display_name(tgt_path)} has {n_tgt}; "
                "line N of one file must pair with line N of the other",
            )
        if check:
            for text, path in ((src, src_path), (tgt, tgt_path)):
                if not text.strip():
                    raise DataError(_display_name(path), "empty line", n + 1)
        yield src, tgt


def _pick_column(
    name: str, header: list[str], wanted: str | None, guesses: Sequence[str], kind: str
) -> int:
    """Index of the column named ``wanted``, else of the first guess present in ``header``."""
    lowered = [h.strip().lower() for h in header]
    columns = ", ".join(h.strip() for h in header)
    if wanted is not None:
        if wanted.lower() not in lowered:
            raise DataError(name, f'no column "{wanted}" in the header (columns: {columns})', 1)
        return lowered.index(wanted.lower())
    for guess in guesses:
        if guess in lowered:
            return lowered.index(guess)
    raise DataError(
        name,
        f"cannot tell which column holds the {kind} (columns: {columns}); "
        f"name it with --{kind}-field",
        1,
    )


def _table_records(path: str | Path) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line number, fields)`` for each row of a TSV or CSV file, header first."""
    name = _display_name(path)
    lines = read_lines(path)
    if Path(str(path)).suffix.lower() == ".csv":
        # The terminator lets a quoted field that spans lines keep its line break.
        reader = csv.reader((line + "\n" for line in lines), strict=True)
        while True:
            start = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                raise DataError(name, f"invalid CSV ({_csv_problem(e)})", start) from e
            yield start, row
    else:
        for lineno, line in enumerate(lines, start=1):
            yield lineno, line.split("\t")


def _csv_problem(error: csv.Error) -> str:
    # The csv module ends a record at a \r (only \n ends a line for attn): outside quotes a
    # lone \r is an error, and its own message asks for universal newlines.
    if "new-line character" in str(error):
        return "a carriage return (\\r) inside an unquoted field; quote the field"
    return str(error)


def read_table_numbered(
    path: str | Path,
    *,
    text_field: str | None = None,
    label_field: str | None = None,
    empty: str = "error",
) -> Iterator[tuple[int, str, str]]:
    """Like :func:`read_table`, with the line number where each row starts; ``empty="keep"``
    yields an empty line, text or label as empty strings instead of raising."""
    name = _display_name(path)
    records = _table_records(path)
    first = next(records, None)
    if first is None:
        raise DataError(name, "empty file; expected a header line such as text<TAB>label")
    _, header = first
    text_col = _pick_column(name, header, text_field, TEXT_FIELDS, "text")
    label_col = _pick_column(name, header, label_field, LABEL_FIELDS, "label")
    for lineno, row in records:
        if row in ([], [""]):
            if empty == "keep":
                yield lineno, "", ""
                continue
            raise DataError(name, "empty line", lineno)
        if len(row) != len(header):
            raise DataError(name, f"expected {len(header)} fields, found {len(row)}", lineno)
        text = row[text_col].strip()
        label = row[label_col].strip()
        if empty == "keep":
            yield lineno, text, label
            continue
        if not text:
            raise DataError(name, "empty text", lineno)
        if not label:
            raise DataError(name, "missing label", lineno)
        yield lineno, text, label


def read_table(
    path: str | Path, *, text_field: str | None = None, label_field: str | None = None
) -> Iterator[tuple[str, str]]:
    """Yield ``(text, label)`` rows from a table with a header line.

    ``.csv`` files are read as CSV (quoted fields may span lines); anything else as TSV
    (fields split on TAB, no quoting). Both fields are stripped of surrounding whitespace.

    Args:
        path: the file.
        text_field: header name of the text column; guessed from
            ``sentence``/``text``/``review``/``document`` when None.
        label_field: header name of the label column; guessed from
            ``label``/``sentiment``/``class`` when None.

    Raises:
        DataError: unreadable file, empty file, unknown or unguessable columns, a row with
            the wrong number of fields, an empty text or a missing label.
    """
    for _, text, label in read_table_numbered(path, text_field=text_field, label_field=label_field):
        yield text, label


def _parse_record(name: str, line: str, lineno: int) -> dict:
    if not line.strip():
        raise DataError(name, "empty line", lineno)
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise DataError(name, f"invalid JSON ({e})", lineno) from e
    if not isinstance(record, dict):
        raise DataError(name, f"expected a JSON object, found {type(record).__name__}", lineno)
    return record


def read_jsonl_numbered(
    path: str | Path, fields: Sequence[str], *, empty: str = "error"
) -> Iterator[tuple[int, tuple[str, ...]]]:
    """Like :func:`read_jsonl`, with the line number of each record; ``empty="keep"`` yields
    an empty line or an empty field as empty strings instead of raising."""
    name = _display_name(path)
    for lineno, line in enumerate(read_lines(path), start=1):
        if empty == "keep" and not line.strip():
            yield lineno, ("",) * len(fields)
            continue
        record = _parse_record(name, line, lineno)
        values = []
        for field in fields:
            if field not in record:
                raise DataError(name, f'missing field "{field}"', lineno)
            value = record[field]
            if not isinstance(value, str):
                raise DataError(
                    name,
                    f'field "{field}" must be a string, found {type(value).__name__}',
                    lineno,
                )
            if empty == "error" and not value.strip():
                raise DataError(name, f'empty field "{field}"', lineno)
            values.append(value)
        yield lineno, tuple(values)


def read_jsonl(path: str | Path, fields: Sequence[str]) -> Iterator[tuple[str, ...]]:
    """Yield, for each line of a JSON Lines file, the values of ``fields`` in order.

    Raises:
        DataError: unreadable file, an empty line, invalid JSON, a line that is not an
            object, a missing field, or a field that is not a non-empty string.
    """
    for _, values in read_jsonl_numbered(path, fields):
        yield values


def jsonl_keys(path: str | Path) -> list[str]:
    """The keys of the first record of a JSON Lines file (for guessing field names).

    Raises:
        DataError: the file is unreadable or empty, or its first line is not a JSON object.
    """
    name = _display_name(path)
    with closing(read_lines(path)) as lines:
        for line in lines:
            return list(_parse_record(name, line, 1))
    raise DataError(name, "empty file")
