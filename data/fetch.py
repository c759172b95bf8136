"""Download a public dataset and convert it into a directory `attn train --data` reads.

`fetch` downloads each file of a catalog entry (from its canonical URL, a mirror URL or a
mirror directory) into `DIR/.downloads/`, resuming a partial `.part` file with an HTTP
Range request and retrying dropped connections; verifies SHA-256 checksums where the
catalog knows them; converts into a staging directory inside DIR (each dataset's layout
by its converter in `attn.data.layouts`); and only then renames the converted files into
place. A failure at any step leaves no half-converted file in
DIR: a partial download stays as `NAME.part` (the next run resumes it) and a download
that fails its checksum or cannot be read is kept apart as `NAME.corrupt`.

Library code: progress goes to a callback, never to the terminal.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from attn import __version__
from attn.data.catalog import Dataset, RemoteFile
from attn.data.checksum import git_blob_id, sha256_file
from attn.data.layouts import CHUNK, CONVERTERS, DamagedFile, reading

DOWNLOADS = ".downloads"
MARKER = ".attn-fetch.json"
USER_AGENT = f"attn/{__version__} (dataset fetch; Python urllib)"


class FetchError(RuntimeError):
    """A dataset could not be fetched. The message is one line: what failed and what to do."""


class DownloadError(FetchError):
    """A file could not be downloaded (HTTP error, unreachable host, dropped connection)."""


class ChecksumError(FetchError):
    """A download's SHA-256 differs from the one in the catalog."""


@dataclass(frozen=True)
class FetchEvent:
    """One progress report.

    Attributes:
        kind: "start" (a download begins; `done` > 0 when it resumes), "advance" (bytes
            arrived), "finish" (a download is complete), "retry" (a dropped connection is
            retried), "verify" (a checksum was checked or computed), "convert".
        name: the file (or, for "convert", the dataset) the event is about.
        done: bytes downloaded so far.
        total: bytes expected in all, None when the server does not say.
        message: details: the source for "start", the reason for "retry", ...
    """

    kind: str
    name: str
    done: int = 0
    total: int | None = None
    message: str = ""


ProgressCallback = Callable[[FetchEvent], None]


@dataclass(frozen=True)
class FetchResult:
    """What `fetch` left in place.

    Attributes:
        dataset: the catalog entry.
        directory: the converted data directory.
        files: the converted files, in the order they were written.
        sha256: SHA-256 of each download (of the gunzipped content where the catalog's
            checksum is of that), whether or not the catalog knew it.
        already_present: nothing was downloaded: an earlier fetch had completed.
    """

    dataset: Dataset
    directory: Path
    files: tuple[Path, ...]
    sha256: dict[str, str]
    already_present: bool = False


class _Retryable(Exception):
    """A transient download failure: the connection dropped, timed out or got a 5xx."""


def fetch(
    dataset: Dataset,
    directory: Path,
    *,
    mirror: str | None = None,
    progress: ProgressCallback | None = None,
    force: bool = False,
    retries: int = 2,
    retry_wait: float = 1.0,
    timeout: float = 30.0,
) -> FetchResult:
    """Download `dataset` and convert it into `directory`.

    Args:
        dataset: the catalog entry.
        directory: where the converted files go (created if needed).
        mirror: None for the canonical URLs; else an http(s) base URL or a local directory
            (path or file:// URL) that holds the same file names.
        progress: called with a `FetchEvent` as the work proceeds.
        force: fetch again even if an earlier fetch into `directory` completed.
        retries: how many times a dropped connection is resumed automatically.
        retry_wait: seconds before the first retry; doubles each time.
        timeout: socket timeout in seconds.

    Raises:
        FetchError: the directory is not writable, the mirror directory does not exist,
            or a file cannot be downloaded (`DownloadError`), fails its checksum
            (`ChecksumError`) or cannot be read as what it should be.
    """
    report = progress or (lambda event: None)
    directory = Path(directory).expanduser()
    _check_writable(directory)
    if not force and (done := fetched(dataset, directory)) is not None:
        return done
    base = _mirror_base(mirror)

    downloads = directory / DOWNLOADS
    downloads.mkdir(exist_ok=True)
    paths: dict[str, Path] = {}
    sums: dict[str, str] = {}
    for remote in dataset.files:
        path = downloads / remote.name
        source = _source(remote, base)
        # A complete download left by an earlier run that failed later is reused: it is
        # verified again below, and a bad one is set apart there.
        if not path.exists():
            if isinstance(source, Path):
                _copy(source, path, remote.name, report)
            else:
                _download(source, path, remote.name, report, retries, retry_wait, timeout)
        sums[remote.name] = _verify(remote, path, str(source), report)
        paths[remote.name] = path

    report(FetchEvent("convert", dataset.name, message=f"converting into {directory}"))
    files = _convert_and_place(dataset, paths, directory)
    _write_marker(directory, dataset, files, sums)
    shutil.rmtree(downloads, ignore_errors=True)
    return FetchResult(dataset, directory, tuple(directory / f for f in files), sums)


# -- where files come from ------------------------------------------------------------


def _check_writable(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as e:
        raise FetchError(f"cannot write to {directory}: {e.strerror or e}") from None


def _mirror_base(mirror: str | None) -> str | Path | None:
    if not mirror:
        return None
    if mirror.startswith(("http://", "https://")):
        return mirror.rstrip("/") + "/"
    if mirror.startswith("file://"):
        path = Path(urllib.request.url2pathname(urllib.parse.urlparse(mirror).path))
    else:
        path = Path(mirror).expanduser()
    if not path.is_dir():
        raise FetchError(f"mirror directory {path} does not exist")
    return path


def _source(remote: RemoteFile, base: str | Path | None) -> str | Path:
    if base is None:
        return remote.url
    if isinstance(base, Path):
        return base / remote.name
    return base + urllib.parse.quote(remote.name)


def _copy(source: Path, target: Path, name: str, report: ProgressCallback) -> None:
    if not source.is_file():
        raise DownloadError(f"{source}: not found in the mirror directory")
    part = _part(target)
    total = source.stat().st_size
    report(FetchEvent("start", name, 0, total, str(source)))
    done = 0
    with open(source, "rb") as src, open(part, "wb") as dst:
        while chunk := src.read(CHUNK):
            dst.write(chunk)
            done += len(chunk)
            report(FetchEvent("advance", name, done, total))
    os.replace(part, target)
    report(FetchEvent("finish", name, done, total))


def _part(target: Path) -> Path:
    return target.with_name(target.name + ".part")


def _download(
    url: str,
    target: Path,
    name: str,
    report: ProgressCallback,
    retries: int,
    retry_wait: float,
    timeout: float,
) -> None:
    """Download `url` to `target` through `target.part`, resuming and retrying."""
    part = _part(target)
    attempt = 0
    while True:
        try:
            done, total = _download_once(url, part, name, report, timeout)
            break
        except _Retryable as e:
            attempt += 1
            if attempt > retries:
                kept = part.stat().st_size if part.exists() else 0
                advice = (
                    f"{kept} bytes are kept in {part}: run the same command again to resume"
                    if kept
                    else "check the network connection, or use a mirror"
                )
                raise DownloadError(f"{url}: {e} (tried {attempt} times); {advice}") from None
            report(FetchEvent("retry", name, message=f"{e}; retry {attempt} of {retries}"))
            time.sleep(retry_wait * 2 ** (attempt - 1))
    os.replace(part, target)
    report(FetchEvent("finish", name, done, total))


def _download_once(
    url: str, part: Path, name: str, report: ProgressCallback, timeout: float
) -> tuple[int, int | None]:
    """One request: append to `part` from where it ends. Returns (bytes, total)."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=timeout
        )
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:
            # Nothing left to send: the part is whole (a run stopped before renaming it),
            # or longer than the file, so it is not this file and starts over.
            if e.headers.get("Content-Range", "") == f"bytes */{offset}":
                return offset, offset
            part.unlink()
            raise _Retryable("the partial download is larger than the file") from None
        if e.code >= 500 or e.code == 429:
            raise _Retryable(f"HTTP {e.code} {e.reason}") from None
        raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise _Retryable(_reason(e)) from None

    with response:
        resumed = offset > 0 and response.status == 206
        done = offset if resumed else 0
        length = response.headers.get("Content-Length")
        total = done + int(length) if length and length.isdigit() else None
        source = f"{url} (resuming at byte {offset})" if resumed else url
        report(FetchEvent("start", name, done, total, source))
        with open(part, "ab" if resumed else "wb") as out:
            while True:
                try:
                    chunk = response.read(CHUNK)
                except (OSError, http.client.HTTPException) as e:
                    raise _Retryable(_reason(e)) from None
                if not chunk:
                    break
                out.write(chunk)
                done += len(chunk)
                report(FetchEvent("advance", name, done, total))
    # urllib returns b"" rather than raising when a server closes the connection early.
    if total is not None and done < total:
        raise _Retryable(f"connection closed after {done} of {total} bytes")
    return done, total


def _reason(error: BaseException) -> str:
    reason = getattr(error, "reason", None) or error
    return str(reason) or type(error).__name__


# -- checksums ------------------------------------------------------------------------


def _verify(remote: RemoteFile, path: Path, source: str, report: ProgressCallback) -> str:
    """SHA-256 of the download (or its gunzipped content); checked where one is known."""
    with _damaged(), reading(path):
        actual = sha256_file(path, gunzip=remote.gunzip)
    what = "gunzipped content" if remote.gunzip else "file"
    if remote.sha256 is None and remote.git_blob is not None:
        with _damaged(), reading(path):
            blob = git_blob_id(path)
        if blob != remote.git_blob:
            bad = _set_apart(path)
            raise ChecksumError(
                f"{source}: Git blob id of the file is {blob}, expected {remote.git_blob}; "
                f"the download was kept as {bad}: check the mirror or run again to download afresh"
            )
        report(FetchEvent("verify", remote.name, message="Git blob id of the file verified"))
    elif remote.sha256 is None:
        report(FetchEvent("verify", remote.name, message=f"no checksum known; SHA-256 {actual}"))
    elif actual != remote.sha256:
        bad = _set_apart(path)
        raise ChecksumError(
            f"{source}: SHA-256 of the {what} is {actual}, expected {remote.sha256}; "
            f"the download was kept as {bad}: check the mirror or run again to download afresh"
        )
    else:
        report(FetchEvent("verify", remote.name, message=f"SHA-256 of the {what} verified"))
    return actual


def _set_apart(path: Path) -> Path:
    bad = path.with_name(path.name + ".corrupt")
    os.replace(path, bad)
    return bad


@contextmanager
def _damaged() -> Iterator[None]:
    """Report a download that cannot be read as what it should be, and set it apart."""
    try:
        yield
    except DamagedFile as e:
        bad = _set_apart(e.path)
        raise FetchError(
            f"{e.path.name} is damaged or not what was expected ({e.error}); it was kept as "
            f"{bad}: run again to download it afresh"
        ) from None


# -- conversion (attn.data.layouts) and placing -----------------------------------------


def _convert_and_place(dataset: Dataset, paths: Mapping[str, Path], directory: Path) -> list[str]:
    """Convert into a staging directory inside `directory`, then rename into place."""
    convert = CONVERTERS[dataset.layout]
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=directory))
    try:
        with _damaged():
            files = convert(paths, staging)
        # The marker says "complete"; drop it first so a crash while placing files
        # makes the next run fetch again instead of trusting a mixed directory.
        (directory / MARKER).unlink(missing_ok=True)
        for name in files:
            os.replace(staging / name, directory / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return files


def _write_marker(
    directory: Path, dataset: Dataset, files: list[str], sums: dict[str, str]
) -> None:
    record = {"dataset": dataset.name, "files": files, "sha256": sums}
    tmp = directory / f"{MARKER}.tmp"
    tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, directory / MARKER)


def fetched(dataset: Dataset, directory: Path) -> FetchResult | None:
    """The result of an earlier complete fetch of `dataset` into `directory`, if there was one."""
    try:
        record = json.loads((directory / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("dataset") != dataset.name:
        return None
    files = tuple(directory / name for name in record.get("files", []))
    if not files or not all(f.is_file() for f in files):
        return None
    return FetchResult(dataset, directory, files, dict(record.get("sha256", {})), True)
