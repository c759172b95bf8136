"""Prepared corpora on disk: token ids in flat binary arrays that later runs memory-map.

A prepared directory (a model directory's `prepared/`) holds raw little-endian arrays, one
file each (`NAME.bin`, like fairseq's binarized data: no header, the dtype and length are in
the manifest), and `manifest.json`: what the data was prepared from (`key`), what it holds
(counts, labels) and every array's dtype, length and size in bytes.

The manifest is the commit point. A preparation first removes the old manifest, then writes
each array under a temporary name, fsyncs and renames it, and writes the manifest last
(atomically): a process killed at any moment leaves either a complete, listed set of arrays or
no manifest, and `open_prepared` trusts nothing that the manifest does not list with its
exact size. Every process (each torchrun rank) maps the same files, so the operating system's
page cache holds one copy of the corpus however many processes train on it.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from attn.model.storage.atomic import atomic_write_bytes, fsync_dir

MANIFEST = "manifest.json"
# The layout's version: a manifest of another version is prepared again, never misread.
FORMAT = 1


class ArrayWriter:
    """Appends numpy chunks to `NAME.bin` under a temporary name; `close` publishes it.

    Memory: one chunk at a time, whatever the final size.
    """

    def __init__(self, directory: Path, name: str, dtype: np.dtype | str) -> None:
        self.path = Path(directory) / f"{name}.bin"
        self.tmp = self.path.with_name(f".{self.path.name}.tmp")
        self.name, self.dtype, self.count = name, np.dtype(dtype), 0
        self.file = open(self.tmp, "wb")  # noqa: SIM115 (closed in close())

    def append(self, values: np.ndarray) -> None:
        """Write `values` (cast to the array's dtype) after what was written so far."""
        self.file.write(np.ascontiguousarray(values, dtype=self.dtype.newbyteorder("<")).data)
        self.count += len(values)

    def close(self) -> dict[str, Any]:
        """fsync, rename to `NAME.bin`, and return the array's manifest entry."""
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.tmp, self.path)
        return {"file": self.path.name, "dtype": self.dtype.str.lstrip("<>|="), "count": self.count}


def write_manifest(directory: Path, manifest: dict[str, Any], extra: tuple[str, ...] = ()) -> None:
    """Publish a prepared directory: the manifest, written last, lists the size of every
    array and of the `extra` files (written before, by the caller)."""
    directory = Path(directory)
    names = [entry["file"] for entry in manifest["arrays"].values()] + list(extra)
    files = {name: (directory / name).stat().st_size for name in names}
    text = json.dumps({"format": FORMAT, **manifest, "files": files}, indent=1, sort_keys=True)
    atomic_write_bytes(directory / MANIFEST, (text + "\n").encode("utf-8"))


def start_preparation(directory: Path) -> None:
    """Empty `directory` for a new preparation, the manifest first: from then on nothing in
    it counts as prepared data until `write_manifest`."""
    directory = Path(directory)
    if (directory / MANIFEST).exists():
        (directory / MANIFEST).unlink()
        fsync_dir(directory)
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)


@dataclass(frozen=True)
class PreparedData:
    """A published prepared directory: its manifest and its arrays, memory-mapped."""

    directory: Path
    manifest: dict[str, Any]

    def array(self, name: str) -> np.ndarray:
        """Array `name`, memory-mapped read-only (an empty array when it holds nothing)."""
        entry = self.manifest["arrays"][name]
        dtype = np.dtype(entry["dtype"]).newbyteorder("<")
        if entry["count"] == 0:
            return np.zeros(0, dtype=dtype)
        return np.memmap(self.directory / entry["file"], dtype=dtype, mode="r")

    def size_on_disk(self) -> int:
        """Bytes of the files the manifest lists."""
        return sum(self.manifest["files"].values())


def open_prepared(directory: Path) -> PreparedData | None:
    """The prepared data in `directory`, or None when there is none that is complete: no
    manifest, another format, or an array missing or of another size than listed."""
    directory = Path(directory)
    try:
        manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return None
    try:
        files = manifest["files"]
        for entry in manifest["arrays"].values():
            if files[entry["file"]] != entry["count"] * np.dtype(entry["dtype"]).itemsize:
                return None
        for name, size in files.items():
            if (directory / name).stat().st_size != size:
                return None
    except (OSError, KeyError, TypeError, AttributeError, ValueError):
        return None
    return PreparedData(directory, manifest)
