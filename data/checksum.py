"""SHA-256 of files: what `attn data fetch` checks a download against, and what a model
records of the data it was trained or evaluated on; and the Git blob id of a file, which
pins a file of a GitHub repository at a commit where no SHA-256 of it is known."""

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


def git_blob_id(path: str | Path) -> str:
    """The Git blob id of a file: SHA-1 of `blob <size>\\0` and its bytes, as `git hash-object`
    gives it (the id a commit's tree records for the file).

    Raises:
        OSError: the file cannot be read.
    """
    path = Path(path)
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()
