"""An export directory that appears whole or not at all.

Files are written into a temp directory beside the destination, which is renamed into place
once everything is written: an export killed or failing half-way leaves no directory that
looks complete (only a `.NAME.export-*` temp directory, removed on failure where possible).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class ExportError(ValueError):
    """An export cannot be made: bad model, unsupported task, output in the way, missing extra."""


def check_destination(out_dir: Path, model_dir: Path, overwrite: bool) -> None:
    """Refuse an output directory that exists (without `overwrite`) or that holds the model.

    Raises:
        ExportError: naming the directory and the flag that would allow it.
    """
    out, model = out_dir.resolve(), model_dir.resolve()
    if out == model or out in model.parents:
        raise ExportError(f"{out_dir} holds the model being exported; choose another -o/--output")
    if out_dir.exists() or out_dir.is_symlink():
        if not overwrite:
            raise ExportError(f"{out_dir} already exists; pass --overwrite to replace it")
        if not out_dir.is_dir():
            raise ExportError(f"{out_dir} exists and is not a directory; remove it first")


@contextmanager
def staged_directory(out_dir: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temp directory that becomes `out_dir` when the block ends without error.

    With `overwrite`, an existing `out_dir` is replaced (moved aside first, removed once the
    new directory is in place). On any error the temp directory is removed and `out_dir` is
    left as it was.

    Raises:
        OSError: the parent directory cannot be created or written.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.export-", dir=out_dir.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp's directory is private (0700); the export is not
    try:
        yield tmp
        _fsync_tree(tmp)
        if not (overwrite and out_dir.exists()):
            os.replace(tmp, out_dir)
            return
        aside = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
        os.replace(out_dir, aside / out_dir.name)
        try:
            os.replace(tmp, out_dir)
        except BaseException:
            os.replace(aside / out_dir.name, out_dir)  # put the old one back
            aside.rmdir()
            raise
        shutil.rmtree(aside, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _fsync_tree(directory: Path) -> None:
    """Flush the files of `directory` to disk before it is renamed into place."""
    for path in directory.rglob("*"):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
