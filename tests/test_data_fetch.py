"""`attn data fetch` against a local HTTP server on 127.0.0.1 (never the internet).

The server supports Range requests and can be told to drop a connection after N bytes or
to answer 404; the tests build tiny fixture archives in each dataset's upstream layout and
describe them with their own catalog entries, so the real catalog is untouched.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from helpers import ATTN
from typer.testing import CliRunner

from attn.cli.main import app
from attn.data import load_task_data
from attn.data.catalog import DATASETS, Dataset, RemoteFile
from attn.data.fetch import ChecksumError, DownloadError, FetchError, fetch

runner = CliRunner()

# Nothing listens on port 9 (discard) here: a catalog URL that must not be used.
UNREACHABLE = "http://127.0.0.1:9/"

TRAIN_EN = [f"A dog runs number {i} across the green field." for i in range(40)]
TRAIN_DE = [f"Ein Hund rennt Nummer {i} über die grüne Wiese." for i in range(40)]
VAL_EN = ["A cat sleeps.", "Two men talk."]
VAL_DE = ["Eine Katze schläft.", "Zwei Männer reden."]


class Server:
    """A local HTTP server: `files` by name, Range support, injected failures, a request log."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.drops: dict[str, list[int]] = {}  # name -> byte counts to stop after, in turn
        self.requests: list[tuple[str, str | None]] = []  # (name, Range header)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                name = self.path.lstrip("/")
                server.requests.append((name, self.headers.get("Range")))
                if name not in server.files:
                    self.send_error(404, "Not Found")
                    return
                data = server.files[name]
                start = 0
                if match := re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or ""):
                    start = int(match.group(1))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                drops = server.drops.get(name)
                # A dropped connection: the promised length is not delivered.
                self.wfile.write(data[start : start + drops.pop(0)] if drops else data[start:])

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.close()


def _lines(lines: list[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _multi30k(server: Server, *, wrong_sha: str | None = None) -> Dataset:
    """A tiny Multi30k (en/de) served by `server`, with the real catalog's layout."""
    texts = {"train.en": TRAIN_EN, "train.de": TRAIN_DE, "val.en": VAL_EN, "val.de": VAL_DE}
    files = []
    for stem, lines in texts.items():
        server.files[f"{stem}.gz"] = gzip.compress(_lines(lines), mtime=0)
        sha = wrong_sha if wrong_sha and stem == "train.en" else _sha(_lines(lines))
        files.append(RemoteFile(f"{stem}.gz", f"{server.url}{stem}.gz", sha, gunzip=True))
    return dataclasses.replace(DATASETS["multi30k"], files=tuple(files))


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_multi30k_is_downloaded_verified_and_readable(server, tmp_path):
    dataset = _multi30k(server)
    events = []
    result = fetch(dataset, tmp_path / "m30k", progress=events.append)

    out = tmp_path / "m30k"
    assert (out / "train.de").read_bytes() == _lines(TRAIN_DE)
    assert _leftovers(out) == [".attn-fetch.json", "train.de", "train.en", "val.de", "val.en"]
    assert [f.name for f in result.files] == ["train.en", "train.de", "val.en", "val.de"]
    assert result.sha256["val.en.gz"] == _sha(_lines(VAL_EN))
    assert sum(e.kind == "verify" and "verified" in e.message for e in events) == 4
    assert {r[1] for r in server.requests} == {None}

    data = load_task_data("translate", out, src="en", tgt="de")
    assert (data.train[3].src, data.train[3].tgt) == (TRAIN_EN[3], TRAIN_DE[3])
    assert [e.tgt for e in data.val] == VAL_DE
    assert not data.val_from_train
    assert (
        result.dataset.train_command(out) == f"attn train translate --data {out} --src en --tgt de"
    )

    again = fetch(dataset, out)
    assert again.already_present and len(server.requests) == 4


def test_a_dropped_connection_resumes_on_the_next_run(server, tmp_path):
    dataset = _multi30k(server)
    server.drops["train.en.gz"] = [40]
    with pytest.raises(DownloadError, match=r"run the same command again to resume") as err:
        fetch(dataset, tmp_path, retries=0)
    assert "\n" not in str(err.value)
    assert (tmp_path / ".downloads" / "train.en.gz.part").stat().st_size == 40
    assert not (tmp_path / "train.en").exists()

    fetch(dataset, tmp_path, retries=0)
    assert ("train.en.gz", "bytes=40-") in server.requests
    assert (tmp_path / "train.en").read_bytes() == _lines(TRAIN_EN)


def test_a_dropped_connection_is_retried_automatically(server, tmp_path):
    dataset = _multi30k(server)
    server.drops["val.de.gz"] = [10, 25]
    events = []
    fetch(dataset, tmp_path, progress=events.append, retries=2, retry_wait=0)
    ranges = [r for name, r in server.requests if name == "val.de.gz"]
    assert ranges == [None, "bytes=10-", "bytes=35-"]
    assert [e.message for e in events if e.kind == "retry"][-1].endswith("retry 2 of 2")
    assert (tmp_path / "val.de").read_bytes() == _lines(VAL_DE)


def test_checksum_mismatch_keeps_the_file_apart_and_places_nothing(server, tmp_path):
    dataset = _multi30k(server, wrong_sha="0" * 64)
    with pytest.raises(ChecksumError, match=r"SHA-256 of the gunzipped content is [0-9a-f]{64}"):
        fetch(dataset, tmp_path)
    assert _leftovers(tmp_path) == [".downloads"]
    assert (tmp_path / ".downloads" / "train.en.gz.corrupt").exists()
    assert not (tmp_path / ".downloads" / "train.en.gz").exists()


def test_a_damaged_archive_is_set_apart_and_nothing_half_converted_stays(server, tmp_path):
    archive = _imdb_archive()
    server.files["aclImdb_v1.tar.gz"] = archive[: len(archive) // 2]
    dataset = dataclasses.replace(
        DATASETS["imdb"],
        files=(RemoteFile("aclImdb_v1.tar.gz", f"{server.url}aclImdb_v1.tar.gz"),),
    )
    with pytest.raises(FetchError, match=r"aclImdb_v1.tar.gz is damaged"):
        fetch(dataset, tmp_path)
    assert _leftovers(tmp_path) == [".downloads"]
    assert _leftovers(tmp_path / ".downloads") == ["aclImdb_v1.tar.gz.corrupt"]


def test_404_names_the_url(server, tmp_path):
    dataset = _multi30k(server)
    del server.files["val.en.gz"]
    with pytest.raises(DownloadError) as err:
        fetch(dataset, tmp_path)
    assert str(err.value) == f"{server.url}val.en.gz: HTTP 404 Not Found"


def test_an_unreachable_host_is_retried_then_reported(tmp_path):
    dataset = dataclasses.replace(
        DATASETS["sst2"], files=(RemoteFile("SST-2.zip", f"{UNREACHABLE}SST-2.zip"),)
    )
    events = []
    with pytest.raises(DownloadError, match=r"tried 2 times\); check the network connection"):
        fetch(dataset, tmp_path, progress=events.append, retries=1, retry_wait=0)
    assert [e.kind for e in events] == ["retry"]
    assert _leftovers(tmp_path / ".downloads") == []


def test_mirror_directory_needs_no_server(server, tmp_path):
    dataset = _multi30k(server)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name, data in server.files.items():
        (mirror / name).write_bytes(data)
    dataset = dataclasses.replace(
        dataset,
        files=tuple(dataclasses.replace(f, url=UNREACHABLE + f.name) for f in dataset.files),
    )
    fetch(dataset, tmp_path / "out", mirror=str(mirror))
    assert (tmp_path / "out" / "val.en").read_bytes() == _lines(VAL_EN)

    (mirror / "val.de.gz").unlink()
    with pytest.raises(DownloadError, match=r"val.de.gz: not found in the mirror directory"):
        fetch(dataset, tmp_path / "out", mirror=mirror.as_uri(), force=True)
    with pytest.raises(FetchError, match=r"mirror directory .*nowhere does not exist"):
        fetch(dataset, tmp_path / "out", mirror=str(tmp_path / "nowhere"), force=True)


def _imdb_archive() -> bytes:
    """aclImdb layout: 3 movies x 4 reviews per polarity in train, 2 reviews in test."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:

        def add(name: str, text: str) -> None:
            data = text.encode()
            info = tarfile.TarInfo(f"aclImdb/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        for polarity, rating in (("pos", 9), ("neg", 2)):
            urls = [
                f"http://www.imdb.com/title/tt{polarity}{i // 4}/usercomments" for i in range(12)
            ]
            add(f"train/urls_{polarity}.txt", "\n".join(urls) + "\n")
            for i in range(12):
                add(
                    f"train/{polarity}/{i}_{rating}.txt",
                    f"{polarity} review {i}.<br /><br />Tab\there.",
                )
            add(f"test/{polarity}/0_{rating}.txt", f"test {polarity} review")
        add("README", "Large Movie Review Dataset v1.0")
    return buffer.getvalue()


def _tsv(path: Path) -> list[tuple[str, str]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "text\tlabel"
    return [tuple(line.split("\t")) for line in lines[1:]]


def test_imdb_becomes_a_movie_disjoint_train_dev_split(server, tmp_path):
    server.files["aclImdb_v1.tar.gz"] = _imdb_archive()
    dataset = dataclasses.replace(
        DATASETS["imdb"],
        files=(RemoteFile("aclImdb_v1.tar.gz", f"{server.url}aclImdb_v1.tar.gz"),),
    )
    fetch(dataset, tmp_path)
    train, dev, test = (_tsv(tmp_path / f"{s}.tsv") for s in ("train", "dev", "test"))
    assert len(train) + len(dev) == 24 and len(dev) == 4  # 10% rounded up to whole movies
    assert sorted(test) == [("test neg review", "0"), ("test pos review", "1")]
    assert ("pos review 5.<br /><br />Tab here.", "1") in train + dev

    def movies(rows: list[tuple[str, str]]) -> set[tuple[str, int]]:
        found = (re.match(r"(pos|neg) review (\d+)", text) for text, _ in rows)
        return {(m.group(1), int(m.group(2)) // 4) for m in found}

    assert not movies(train) & movies(dev)
    data = load_task_data("sentiment", tmp_path)
    assert data.labels == ["0", "1"] and len(data.val) == 4


def _sst2_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        rows = ["sentence\tlabel"]
        rows += [f"a {'fine' if i % 2 else 'dull'} film number {i} \t{i % 2}" for i in range(20)]
        archive.writestr("SST-2/train.tsv", "\n".join(rows) + "\n")
        archive.writestr("SST-2/dev.tsv", "sentence\tlabel\nit 's great \t1\nit 's bad \t0\n")
        archive.writestr("SST-2/test.tsv", "index\tsentence\n0\tunlabelled\n")
    return buffer.getvalue()


def test_sst2_is_converted_to_text_label_tsv(server, tmp_path):
    server.files["SST-2.zip"] = _sst2_zip()
    dataset = dataclasses.replace(
        DATASETS["sst2"], files=(RemoteFile("SST-2.zip", f"{server.url}SST-2.zip"),)
    )
    result = fetch(dataset, tmp_path)
    assert [f.name for f in result.files] == ["train.tsv", "dev.tsv"]
    assert _tsv(tmp_path / "dev.tsv") == [("it 's great", "1"), ("it 's bad", "0")]
    assert len(load_task_data("sentiment", tmp_path).train) == 20


def test_dialogsum_jsonl_becomes_src_tgt_and_jsonl(server, tmp_path):
    train = [
        {
            "fname": f"train_{i}",
            "dialogue": f"#Person1#: Hi {i}.\n#Person2#: Hello.",
            "summary": f"They greet {i}. ",
            "topic": "greeting",
        }
        for i in range(3)
    ]
    dev = {
        "fname": "dev_0",
        "dialogue": "#Person1#: Bye.\n#Person2#:  See you.",
        "summary1": "They part.",
        "topic1": "parting",
        "summary2": "x",
        "topic2": "y",
    }
    # Early DialogSum releases wrote Python dict literals; the last train line is one.
    server.files["dialogsum.train.jsonl"] = (
        "\n".join(json.dumps(r) for r in train[:2]) + "\n" + repr(train[2]) + "\n"
    ).encode()
    server.files["dialogsum.dev.jsonl"] = (json.dumps(dev) + "\n").encode()
    dataset = dataclasses.replace(
        DATASETS["dialogsum"],
        files=tuple(
            RemoteFile(name, f"{server.url}{name}")
            for name in ("dialogsum.train.jsonl", "dialogsum.dev.jsonl")
        ),
    )
    fetch(dataset, tmp_path)
    assert (tmp_path / "train.src").read_text().splitlines()[
        2
    ] == "#Person1#: Hi 2. #Person2#: Hello."
    assert (tmp_path / "val.tgt").read_text() == "They part.\n"
    assert json.loads((tmp_path / "val.jsonl").read_text()) == {
        "id": "dev_0",
        "dialogue": "#Person1#: Bye.\n#Person2#:  See you.",
        "summary": "They part.",
        "topic": "parting",
    }
    data = load_task_data("summarize", tmp_path)
    assert [e.tgt for e in data.train] == ["They greet 0.", "They greet 1.", "They greet 2."]


def test_cli_errors_are_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTN_HOME", str(tmp_path))
    result = runner.invoke(app, ["data", "fetch", "wikipedia"])
    assert result.exit_code == 1
    assert "unknown dataset 'wikipedia'; known datasets: dialogsum, imdb, multi30k, sst2" in (
        result.output
    )

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = runner.invoke(app, ["data", "fetch", "sst2", "--dir", str(blocker / "sub")])
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: cannot write to {blocker / 'sub'}")
    assert result.output.count("\n") == 1


def test_cli_list_json_has_every_dataset():
    result = runner.invoke(app, ["data", "list", "--format", "json"])
    assert result.exit_code == 0
    listed = {d["name"]: d for d in json.loads(result.output)}
    assert {"multi30k", "sst2", "imdb", "dialogsum"} <= set(listed)
    assert all(f["sha256"] for f in listed["multi30k"]["files"])
    assert all(f["sha256"] or f["git_blob"] for d in listed.values() for f in d["files"])


def test_every_file_of_the_catalog_is_verified():
    unverified = [(d.name, f.name) for d in DATASETS.values() for f in d.files if not f.verified]
    assert unverified == []
    for f in (f for d in DATASETS.values() for f in d.files):
        assert re.fullmatch(r"[0-9a-f]{64}", f.sha256 or "") or re.fullmatch(
            r"[0-9a-f]{40}", f.git_blob or ""
        ), f.name


def test_a_git_blob_id_is_checked_where_no_sha256_is_known(server, tmp_path):
    body = b'{"fname": "dev_0", "dialogue": "#Person1#: Bye.", "summary": "They part."}\n'
    server.files["dialogsum.dev.jsonl"] = body
    # What `git hash-object` gives for these bytes: SHA-1 of "blob <size>\\0" and the bytes.
    blob = hashlib.sha1(b"blob %d\x00" % len(body) + body).hexdigest()

    def catalog(git_blob: str) -> Dataset:
        url = f"{server.url}dialogsum.dev.jsonl"
        remote = RemoteFile("dialogsum.dev.jsonl", url, git_blob=git_blob)
        return dataclasses.replace(DATASETS["dialogsum"], files=(remote,))

    with pytest.raises(ChecksumError, match=rf"Git blob id of the file is {blob}, expected 0+;"):
        fetch(catalog("0" * 40), tmp_path / "bad")
    assert _leftovers(tmp_path / "bad" / ".downloads") == ["dialogsum.dev.jsonl.corrupt"]
    events = []
    fetch(catalog(blob), tmp_path / "good", progress=events.append)
    assert "Git blob id of the file verified" in [e.message for e in events if e.kind == "verify"]
    assert (tmp_path / "good" / "val.tgt").read_text() == "They part.\n"


def test_installed_script_lists_and_fetches_through_a_mirror(server, tmp_path):
    env = {**os.environ, "ATTN_HOME": str(tmp_path / "home")}
    env.pop("ATTN_MIRROR", None)
    out = subprocess.run(
        [ATTN, "data", "list"], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode == 0, out.stderr
    for name in ("multi30k", "sst2", "imdb", "dialogsum", "CC BY-NC-SA"):
        assert name in out.stdout

    # The real catalog entry; only the mirror points at the local server, which serves a
    # stand-in for SST-2.zip: its pinned SHA-256 refuses it, in one line, and nothing is placed.
    server.files["SST-2.zip"] = _sst2_zip()
    cmd = [ATTN, "data", "fetch", "sst2", "--mirror", server.url]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 1
    assert f"Downloading SST-2.zip from {server.url}SST-2.zip" in out.stderr
    sst2 = DATASETS["sst2"].files[0].sha256
    assert re.fullmatch(
        rf"Error: {re.escape(server.url)}SST-2.zip: SHA-256 of the file is [0-9a-f]{{64}}, "
        rf"expected {sst2}; .*",
        out.stderr.splitlines()[-1],
    )
    assert not (tmp_path / "home" / "data" / "sst2" / "train.tsv").exists()

    # ATTN_MIRROR works like --mirror; a 404 there is a one-line error naming the URL.
    env["ATTN_MIRROR"] = server.url
    out = subprocess.run(
        [ATTN, "data", "fetch", "imdb", "--dir", str(tmp_path / "imdb")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 1
    assert (
        out.stderr.splitlines()[-1] == f"Error: {server.url}aclImdb_v1.tar.gz: HTTP 404 Not Found"
    )
