"""Convert each catalog dataset's raw layout (its `Dataset.layout`) into the files that
`attn train --data` reads.

`CONVERTERS[layout](downloads, out)` reads the downloaded files (name -> path) and writes
the converted files into `out`, returning their names. A download that cannot be read as
what its layout says raises `DamagedFile` naming it; `attn.data.fetch` sets it apart.
"""

from __future__ import annotations

import ast
import gzip
import io
import json
import math
import random
import re
import shutil
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from attn.data import jsonlines

CHUNK = 1 << 16

# IMDB: the dev split is whole movies of the official train split, picked by this seeded
# shuffle (the seed of shared/data's copy) until it holds this fraction of the reviews.
IMDB_SEED = 20110619
IMDB_DEV_FRACTION = 0.1


class DamagedFile(Exception):
    """A download that cannot be read as what it should be.

    Attributes:
        path: the download.
        error: what reading it raised.
    """

    def __init__(self, path: Path, error: BaseException) -> None:
        super().__init__(f"{path.name}: {error}")
        self.path, self.error = path, error


class _BadContent(ValueError):
    """A download that opened fine but does not hold what the converter expects."""


@contextmanager
def reading(path: Path) -> Iterator[None]:
    """Raise `DamagedFile` for `path` when reading it inside the block fails on its content
    (a truncated or corrupt archive, invalid UTF-8, records not of the expected layout)."""
    try:
        yield
    except (
        EOFError,
        zlib.error,
        gzip.BadGzipFile,
        tarfile.TarError,
        zipfile.BadZipFile,
        UnicodeDecodeError,
        _BadContent,
    ) as e:
        raise DamagedFile(path, e) from None


def _text_writer(path: Path) -> io.TextIOWrapper:
    return open(path, "w", encoding="utf-8", newline="\n")


def _convert_multi30k(paths: Mapping[str, Path], out: Path) -> list[str]:
    """`train.en.gz`, `test_2016_flickr.de.gz`, ... -> `train.en`, `test2016.de`, ..."""
    files = []
    for name, path in paths.items():
        split, lang = name.removesuffix(".gz").rsplit(".", 1)
        target = f"{'test2016' if split == 'test_2016_flickr' else split}.{lang}"
        with reading(path), gzip.open(path, "rb") as src, open(out / target, "wb") as dst:
            shutil.copyfileobj(src, dst, CHUNK)
        files.append(target)
    return files


def _convert_sst2(paths: Mapping[str, Path], out: Path) -> list[str]:
    """GLUE `SST-2.zip` -> `train.tsv`, `dev.tsv` with a `text<TAB>label` header."""
    (path,) = paths.values()
    with reading(path), zipfile.ZipFile(path) as archive:
        for split in ("train", "dev"):
            member = f"SST-2/{split}.tsv"
            try:
                raw = archive.open(member)
            except KeyError:
                raise _BadContent(f"{member} is missing") from None
            with (
                # newline="\n": only \n ends a line, as for every reader of attn.
                io.TextIOWrapper(raw, encoding="utf-8", newline="\n") as src,
                _text_writer(out / f"{split}.tsv") as dst,
            ):
                dst.write("text\tlabel\n")
                for number, line in enumerate(src, 1):
                    text, tab, label = line.rstrip("\r\n").rpartition("\t")
                    if number == 1:
                        if (text, label) != ("sentence", "label"):
                            raise _BadContent(f"{member}:1: expected the header sentence<TAB>label")
                        continue
                    if not tab or label not in ("0", "1"):
                        raise _BadContent(f"{member}:{number}: expected sentence<TAB>0 or 1")
                    # GLUE ends each sentence with a space before the TAB.
                    text = _TSV_BREAKS.sub(" ", text).strip()
                    if text:
                        dst.write(f"{text}\t{label}\n")
    return ["train.tsv", "dev.tsv"]


_IMDB_REVIEW = re.compile(r"(?:\./)?aclImdb/(train|test)/(pos|neg)/(\d+)_\d+\.txt")
_IMDB_URLS = re.compile(r"(?:\./)?aclImdb/train/urls_(pos|neg)\.txt")
_TSV_BREAKS = re.compile(r"[\t\r\n]")
_ReviewKey = tuple[str, int]  # (polarity, number in aclImdb's file names)


def _convert_imdb(paths: Mapping[str, Path], out: Path) -> list[str]:
    """`aclImdb_v1.tar.gz` -> `train.tsv`, `dev.tsv` (movie-disjoint slice of the official
    train split) and `test.tsv` (the official test split), label 0 = negative, 1 = positive.

    Reviews are kept verbatim except that TAB/CR/LF become spaces and ends are trimmed.
    """
    (path,) = paths.values()
    reviews: dict[str, dict[_ReviewKey, str]] = {"train": {}, "test": {}}
    urls: dict[str, list[str]] = {}
    with reading(path):
        # Stream mode: one pass, no seeking, nothing written to disk. tarfile's own gzip
        # reader ends quietly on a truncated file; GzipFile raises EOFError instead.
        with gzip.open(path, "rb") as raw, tarfile.open(fileobj=raw, mode="r|") as archive:
            for member in archive:
                review = _IMDB_REVIEW.fullmatch(member.name)
                url_list = _IMDB_URLS.fullmatch(member.name)
                if not member.isfile() or not (review or url_list):
                    continue
                # A stray byte in one of 50,000 reviews should not sink the whole fetch.
                data = archive.extractfile(member).read().decode("utf-8", errors="replace")
                if review:
                    split, polarity, number = review.groups()
                    text = _TSV_BREAKS.sub(" ", data).strip()
                    reviews[split][(polarity, int(number))] = text
                else:
                    urls[url_list.group(1)] = data.split()
        train, dev = _movie_disjoint_split(reviews["train"], urls)
    rows = {"train": train, "dev": dev, "test": sorted(reviews["test"].items())}
    for split, items in rows.items():
        random.Random(IMDB_SEED).shuffle(items)
        with _text_writer(out / f"{split}.tsv") as dst:
            dst.write("text\tlabel\n")
            for (polarity, _), text in items:
                if text:
                    dst.write(f"{text}\t{1 if polarity == 'pos' else 0}\n")
    return ["train.tsv", "dev.tsv", "test.tsv"]


def _movie_disjoint_split(
    reviews: dict[_ReviewKey, str], urls: dict[str, list[str]]
) -> tuple[list[tuple[_ReviewKey, str]], list[tuple[_ReviewKey, str]]]:
    """Split train reviews into (train, dev) so that no movie is in both.

    `urls[polarity][i]` is the movie of review `i` of that polarity (aclImdb's urls_*.txt).
    """
    by_movie: dict[str, list[_ReviewKey]] = {}
    for polarity, number in sorted(reviews):
        try:
            movie = urls[polarity][number]
        except (KeyError, IndexError):
            raise _BadContent(f"no movie URL for train/{polarity} review {number}") from None
        by_movie.setdefault(movie, []).append((polarity, number))
    movies = sorted(by_movie)
    random.Random(IMDB_SEED).shuffle(movies)
    wanted = math.ceil(IMDB_DEV_FRACTION * len(reviews))
    dev: set[_ReviewKey] = set()
    for movie in movies:
        if len(dev) >= wanted:
            break
        dev.update(by_movie[movie])
    items = sorted(reviews.items())
    return [i for i in items if i[0] not in dev], [i for i in items if i[0] in dev]


_DIALOGSUM_SPLITS = {
    "dialogsum.train.jsonl": "train",
    "dialogsum.dev.jsonl": "val",
    "dialogsum.test.jsonl": "test",
}


def _dialogsum_record(line: str, where: str) -> dict[str, str]:
    try:
        record = json.loads(line)
    except ValueError:
        # Early DialogSum releases wrote Python dict literals instead of JSON.
        try:
            record = ast.literal_eval(line)
        except (ValueError, SyntaxError):
            raise _BadContent(f"{where}: not a JSON object") from None
    if not isinstance(record, dict):
        raise _BadContent(f"{where}: not a JSON object")
    # Train records have one summary and topic; dev and test have three: use the first.
    fields = {
        "id": record.get("fname"),
        "dialogue": record.get("dialogue"),
        "summary": record.get("summary", record.get("summary1")),
        "topic": record.get("topic", record.get("topic1")),
    }
    missing = [k for k in ("dialogue", "summary") if not isinstance(fields[k], str)]
    if missing:
        raise _BadContent(f"{where}: no {' or '.join(missing)}")
    return fields


def _convert_dialogsum(paths: Mapping[str, Path], out: Path) -> list[str]:
    """`dialogsum.{train,dev,test}.jsonl` -> `{train,val,test}.{src,tgt,jsonl}`.

    `.src`/`.tgt`: one example per line, whitespace collapsed (turns joined by a space);
    `.jsonl`: `{"id", "dialogue", "summary", "topic"}` with the original turn breaks.
    """
    files = []
    for name, path in paths.items():
        split = _DIALOGSUM_SPLITS[name]
        with (
            reading(path),
            open(path, encoding="utf-8", newline="\n") as src_file,
            _text_writer(out / f"{split}.src") as src,
            _text_writer(out / f"{split}.tgt") as tgt,
            _text_writer(out / f"{split}.jsonl") as jsonl,
        ):
            for number, line in enumerate(src_file, 1):
                if not line.strip():
                    continue
                record = _dialogsum_record(line, f"{name}:{number}")
                dialogue = " ".join(record["dialogue"].split())
                summary = " ".join(record["summary"].split())
                if not (dialogue and summary):
                    continue
                src.write(dialogue + "\n")
                tgt.write(summary + "\n")
                record["dialogue"] = record["dialogue"].strip()
                jsonl.write(jsonlines.dumps(record) + "\n")
        files += [f"{split}.src", f"{split}.tgt", f"{split}.jsonl"]
    return files


CONVERTERS: dict[str, Callable[[Mapping[str, Path], Path], list[str]]] = {
    "multi30k": _convert_multi30k,
    "glue-sst2": _convert_sst2,
    "aclimdb": _convert_imdb,
    "dialogsum": _convert_dialogsum,
}
