"""Atomic file writes: a killed process never leaves a half-written file in place.

Neutral ground below every package: the tokenizer, the data preparation and the model
directory all write through here, and it imports nothing of attn (nor torch).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp)` on a temp file beside `path`, fsync it, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def remove_stale_temp_files(directory: Path) -> list[Path]:
    """Delete the temp files that writes killed mid-way left in `directory` and below.

    Only names `atomic_write` creates (`.NAME.XXXXXXXX.tmp`) are touched. Call it only while
    no other process writes there (a training run that resumes owns its model directory).
    """
    removed = []
    for tmp in Path(directory).rglob(".*.tmp"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def fsync_dir(directory: Path) -> None:
    """Make a rename or removal in `directory` durable (where the system allows it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
