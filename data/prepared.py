"""Prepared corpora on disk: token ids in flat binary arrays that later runs read in place.

A prepared directory (a model directory's `prepared/`) holds raw little-endian arrays, one
file each (`NAME.bin`, like fairseq's binarized data: no header, the dtype and length are in
the manifest), and `manifest.json`: what the data was prepared from (`key`), what it holds
(counts, labels) and every array's dtype, length and size in bytes.

The manifest is the commit point. A preparation first removes the old manifest, then writes
each array under a temporary name, fsyncs and renames it, and writes the manifest last
(atomically): a process killed at any moment leaves either a complete, listed set of arrays or
no manifest, and `open_prepared` trusts nothing that the manifest does not list with its
exact size. Every process (each torchrun rank) reads the same files, so the operating system's
page cache holds one copy of the corpus however many processes train on it. The small per-row
arrays (lengths, labels) are memory-mapped; the token ids and their offsets are read by
position, a batch's rows at a time (`FileArray`), so they never count in a process's memory.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from attn.atomic import atomic_write_bytes, fsync_dir

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


class FileArray:
    """A read-only array in a file, read by position instead of memory-mapped.

    A mapped page counts in the process's resident memory once touched, and the kernel maps
    a touched page's cached neighbours with it (fault-around, 64 KB): batches drawn from all
    over a 500 MB corpus grew a training process by about 100 MB a step that way, up to the
    corpus's size. Reads go through the page cache all the same, so processes reading one
    file (torchrun ranks) still share one copy of it in memory.
    """

    def __init__(self, path: Path, dtype: np.dtype, count: int) -> None:
        self.path, self.dtype, self.count = Path(path), np.dtype(dtype), count
        self.file = open(self.path, "rb", buffering=0)  # noqa: SIM115 (closed with the object)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: np.ndarray) -> np.ndarray:
        """The items at `index` (an array of positions)."""
        index = np.asarray(index, dtype=np.int64)
        return self.runs(index, np.ones_like(index))

    def runs(self, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """`self[s : s + c]` for each start s and count c, concatenated (adjacent runs are
        read in one call)."""
        starts = np.asarray(starts, dtype=np.int64)
        ends = starts + np.asarray(counts, dtype=np.int64)
        if not len(starts):
            return np.zeros(0, dtype=self.dtype)
        new = np.ones(len(starts), dtype=bool)
        new[1:] = starts[1:] != ends[:-1]
        first = np.flatnonzero(new)
        last = np.append(first[1:] - 1, len(starts) - 1)
        item = self.dtype.itemsize
        out = np.empty(int((ends - starts).sum()), dtype=self.dtype)
        view, pos = memoryview(out.view(np.uint8)), 0
        for start, end in zip(starts[first].tolist(), ends[last].tolist(), strict=True):
            size = (end - start) * item
            self.file.seek(start * item)
            if self.file.readinto(view[pos : pos + size]) != size:
                raise OSError(f"{self.path}: shorter than its manifest says")
            pos += size
        return out


@dataclass(frozen=True)
class PreparedData:
    """A published prepared directory: its manifest and its arrays, read in place."""

    directory: Path
    manifest: dict[str, Any]

    def _entry(self, name: str) -> tuple[Path, np.dtype, int]:
        """Array `name`'s file, dtype and length, from the manifest."""
        entry = self.manifest["arrays"][name]
        dtype = np.dtype(entry["dtype"]).newbyteorder("<")
        return self.directory / entry["file"], dtype, entry["count"]

    def array(self, name: str) -> np.ndarray:
        """Array `name`, memory-mapped read-only (an empty array when it holds nothing)."""
        path, dtype, count = self._entry(name)
        return np.memmap(path, dtype=dtype, mode="r") if count else np.zeros(0, dtype=dtype)

    def reader(self, name: str) -> FileArray | np.ndarray:
        """Array `name`, read by position (`FileArray`; an empty array when it holds nothing):
        for the token arrays, which batches read a few rows at a time from anywhere."""
        path, dtype, count = self._entry(name)
        return FileArray(path, dtype, count) if count else np.zeros(0, dtype=dtype)

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
