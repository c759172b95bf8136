"""SHA-256 of files: what `attn data fetch` checks a download against, and what a model
records of the data it was trained or evaluated on."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

_BLOCK = 1 << 20


def sha256_file(path: str | Path, *, gunzip: bool = False) -> str:
    """The hex SHA-256 of a file, read in blocks (memory stays bounded on any size).

    Args:
        gunzip: hash the file's gunzipped content instead of its bytes.

    Raises:
        OSError: the file cannot be read; with `gunzip`, also `gzip.BadGzipFile`,
            `EOFError` or `zlib.error` for damaged content.
    """
    digest = hashlib.sha256()
    with gzip.open(path, "rb") if gunzip else open(path, "rb") as f:
        while block := f.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()
