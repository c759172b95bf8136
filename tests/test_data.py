"""Data readers and task loading: good files, bad files with exact messages, real data."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import require_extra

from attn.data import (
    DataError,
    Example,
    demo_dir,
    load_task_data,
    read_jsonl,
    read_lines,
    read_parallel,
    read_table,
)
from attn.data.make_demo import generate

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def error_of(call) -> str:
    with pytest.raises(DataError) as info:
        call()
    return str(info.value)


# --- read_lines ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "lines"),
    [
        (b"", []),
        (b"a\nb\n", ["a", "b"]),
        (b"a\nb", ["a", "b"]),
        (b"a\r\nb\r\n", ["a", "b"]),
        # Only \n ends a line: a lone \r is text (one left at the very end goes).
        (b"a\rb\r", ["a\rb"]),
        (b"a\r\rb\r\n", ["a\r\rb"]),
        (b"a\r\r\nb", ["a\r", "b"]),
        (
            "a\x85b\u2028c\u2029d\x0be\x0cf\x1cg\x1dh\x1ei\n".encode(),
            ["a\x85b\u2028c\u2029d\x0be\x0cf\x1cg\x1dh\x1ei"],
        ),
        (b"\n\nx\n\n", ["", "", "x", ""]),
        (b"\xef\xbb\xbfhello\n", ["hello"]),
        ("caf\u00e9 😀 日本\n".encode(), ["caf\u00e9 😀 日本"]),
        (b"  keep spaces \t\n", ["  keep spaces \t"]),
    ],
)
def test_read_lines(tmp_path: Path, data: bytes, lines: list[str]) -> None:
    assert list(read_lines(write(tmp_path / "f.txt", data))) == lines


def test_read_lines_streams_crlf_split_across_chunks(tmp_path: Path) -> None:
    # 65535 bytes then CRLF: the CR ends the first 64 KB chunk, the LF starts the next.
    line = "x" * 65535
    path = write(tmp_path / "big.txt", f"{line}\r\nnext\r\n")
    assert list(read_lines(path)) == [line, "next"]


def test_read_lines_decodes_blocks_and_names_the_bad_line_in_a_later_one(tmp_path: Path) -> None:
    # Lines are decoded a 64 KB read at a time: a character split across two reads, lines
    # spanning reads, and a bad byte far into the file still give exact lines and numbers.
    lines = [f"{i} caf\u00e9 \u65e5\u672c " + "x" * (i % 97) for i in range(20_000)]
    data = "\n".join(lines).encode()
    assert len(data) > 10 * 65536
    path = write(tmp_path / "many.txt", data)
    assert list(read_lines(path)) == lines
    bad = data.replace(b"\n15000 caf", b"\n15000 c\xffaf", 1)
    path = write(tmp_path / "bad.txt", bad)
    assert error_of(lambda: list(read_lines(path))).startswith(
        f"{path}:15001: invalid UTF-8 (byte 0xff at column 8)"
    )
    replaced = list(read_lines(path, errors="replace"))
    assert replaced[15000] == lines[15000].replace("caf", "c\ufffdaf", 1)
    assert replaced[:15000] == lines[:15000] and replaced[15001:] == lines[15001:]


def test_read_lines_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = io.TextIOWrapper(io.BytesIO(b"one\r\ntwo\n"))
    monkeypatch.setattr(sys, "stdin", fake)
    assert list(read_lines("-")) == ["one", "two"]


def test_read_lines_invalid_utf8(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.txt", b"fine\ncaf\xc3\xa9 \xff!\n")
    assert error_of(lambda: list(read_lines(path))) == (
        f"{path}:2: invalid UTF-8 (byte 0xff at column 6); "
        "convert the file to UTF-8 (for example with iconv)"
    )
    assert list(read_lines(path, errors="replace")) == ["fine", "café \ufffd!"]


def test_read_lines_nul_after_first_8kb(tmp_path: Path) -> None:
    path = write(tmp_path / "nul.txt", b"a" * 9000 + b"\nb\0c\n")
    assert error_of(lambda: list(read_lines(path))) == (
        f"{path}:2: NUL byte at column 2, which text never contains; "
        "convert the file to UTF-8 (for example with iconv)"
    )
    assert list(read_lines(path, errors="replace"))[1] == "b\ufffdc"


@pytest.mark.parametrize(
    ("data", "what"),
    [
        (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "looks like a binary file, not UTF-8 text"),
        ("text".encode("utf-16"), "looks like UTF-16 text; convert it to UTF-8"),
    ],
)
def test_read_lines_binary(tmp_path: Path, data: bytes, what: str) -> None:
    path = write(tmp_path / "x.bin", data)
    assert error_of(lambda: list(read_lines(path))) == f"{path}: {what}"


def test_read_lines_path_errors(tmp_path: Path) -> None:
    assert error_of(lambda: list(read_lines(tmp_path / "nope"))) == f"{tmp_path}/nope: no such file"
    assert error_of(lambda: list(read_lines(tmp_path))) == f"{tmp_path}: is a directory"
    if os.name == "posix" and os.geteuid() != 0:
        locked = write(tmp_path / "locked.txt", "x")
        locked.chmod(0)
        assert error_of(lambda: list(read_lines(locked))) == f"{locked}: permission denied"
    with pytest.raises(ValueError, match="errors must be"):
        list(read_lines(tmp_path / "nope", errors="ignore"))


# --- read_parallel ---------------------------------------------------------------------


def test_read_parallel(tmp_path: Path) -> None:
    src = write(tmp_path / "train.en", "a dog\r\na cat\n")
    tgt = write(tmp_path / "train.de", "ein Hund\neine Katze")
    assert list(read_parallel(src, tgt)) == [("a dog", "ein Hund"), ("a cat", "eine Katze")]


@pytest.mark.parametrize(("n_src", "n_tgt"), [(3, 2), (2, 3), (0, 1)])
def test_read_parallel_line_count_mismatch(tmp_path: Path, n_src: int, n_tgt: int) -> None:
    src = write(tmp_path / "train.en", "x\n" * n_src)
    tgt = write(tmp_path / "train.de", "y\n" * n_tgt)
    assert error_of(lambda: list(read_parallel(src, tgt))) == (
        f"{src}: has {n_src} lines but {tgt} has {n_tgt}; "
        "line N of one file must pair with line N of the other"
    )


def test_read_parallel_empty_line(tmp_path: Path) -> None:
    src = write(tmp_path / "train.en", "a\nb\nc\n")
    tgt = write(tmp_path / "train.de", "a\nb\n  \n")
    assert error_of(lambda: list(read_parallel(src, tgt))) == f"{tgt}:3: empty line"


# --- read_table ------------------------------------------------------------------------


def test_read_table_tsv_strips_and_guesses(tmp_path: Path) -> None:
    path = write(tmp_path / "t.tsv", "sentence \tlabel\r\nit 's fine \t1\r\nbad\t 0 \r\n")
    assert list(read_table(path)) == [("it 's fine", "1"), ("bad", "0")]


def test_read_table_csv_quoted(tmp_path: Path) -> None:
    path = write(
        tmp_path / "t.csv", 'id,review,sentiment\n1,"good, really",pos\n2,"two\nlines",neg\n'
    )
    assert list(read_table(path)) == [("good, really", "pos"), ("two\nlines", "neg")]


def test_read_table_named_columns(tmp_path: Path) -> None:
    path = write(tmp_path / "t.tsv", "a\tb\tc\nx\ty\tz\n")
    assert list(read_table(path, text_field="c", label_field="a")) == [("z", "x")]


@pytest.mark.parametrize(
    ("name", "data", "what"),
    [
        ("t.tsv", "text\tlabel\nok\t1\na\tb\tc\n", "3: expected 2 fields, found 3"),
        ("t.tsv", "text\tlabel\nok\t1\nno tab here\n", "3: expected 2 fields, found 1"),
        ("t.tsv", "text\tlabel\nok\t\n", "2: missing label"),
        ("t.tsv", "text\tlabel\n \t1\n", "2: empty text"),
        ("t.tsv", "text\tlabel\nok\t1\n\nx\t0\n", "3: empty line"),
        ("t.csv", 'text,label\n"a",1\n"b,0\n', "3: invalid CSV (unexpected end of data)"),
        ("t.csv", "text,label\na,1,2\n", "2: expected 2 fields, found 3"),
        (
            "t.tsv",
            "words\tlabel\nok\t1\n",
            "1: cannot tell which column holds the text (columns: words, label); "
            "name it with --text-field",
        ),
    ],
)
def test_read_table_errors(tmp_path: Path, name: str, data: str, what: str) -> None:
    path = write(tmp_path / name, data)
    assert error_of(lambda: list(read_table(path))) == f"{path}:{what}"


def test_read_table_empty_file_and_unknown_column(tmp_path: Path) -> None:
    empty = write(tmp_path / "e.tsv", "")
    assert error_of(lambda: list(read_table(empty))) == (
        f"{empty}: empty file; expected a header line such as text<TAB>label"
    )
    path = write(tmp_path / "t.tsv", "text\tlabel\nok\t1\n")
    assert error_of(lambda: list(read_table(path, label_field="stars"))) == (
        f'{path}:1: no column "stars" in the header (columns: text, label)'
    )


# --- read_jsonl ------------------------------------------------------------------------


def test_read_jsonl(tmp_path: Path) -> None:
    path = write(tmp_path / "d.jsonl", '{"dialogue": "A: hi\\nB: yo", "summary": "s", "id": 3}\n')
    assert list(read_jsonl(path, ["dialogue", "summary"])) == [("A: hi\nB: yo", "s")]


@pytest.mark.parametrize(
    ("data", "what"),
    [
        (
            '{"dialogue": "d", "summary": "s"}\n{"dialogue": "d"}\n',
            '2: missing field "summary"',
        ),
        (
            '{"dialogue": "d", "summary": "s"\n',
            "1: invalid JSON (Expecting ',' delimiter: line 1 column 33 (char 32))",
        ),
        ('{"dialogue": "d", "summary": 5}\n', '1: field "summary" must be a string, found int'),
        ('{"dialogue": "d", "summary": " "}\n', '1: empty field "summary"'),
        ('["d", "s"]\n', "1: expected a JSON object, found list"),
        ('{"dialogue": "d", "summary": "s"}\n\n', "2: empty line"),
    ],
)
def test_read_jsonl_errors(tmp_path: Path, data: str, what: str) -> None:
    path = write(tmp_path / "d.jsonl", data)
    assert error_of(lambda: list(read_jsonl(path, ["dialogue", "summary"]))) == f"{path}:{what}"


# --- load_task_data --------------------------------------------------------------------


def test_demo_corpora_load() -> None:
    counts = {"translate": (6000, 300), "summarize": (4000, 200), "sentiment": (4000, 300)}
    for task, (n_train, n_val) in counts.items():
        data = load_task_data(task)
        assert (len(data.train), len(data.val)) == (n_train, n_val)
        assert not data.val_from_train
        assert not {ex.src for ex in data.val} & {ex.src for ex in data.train}
        assert all(f.parent == demo_dir(task) for f in data.train_files + data.val_files)
    assert load_task_data("sentiment").labels == ["negative", "positive"]
    assert load_task_data("translate").train_files[0].name == "train.en"


def test_demo_generator_is_byte_identical(tmp_path: Path) -> None:
    generate(tmp_path)
    for task in ("translate", "summarize", "sentiment"):
        for path in sorted(demo_dir(task).iterdir()):
            assert (tmp_path / task / path.name).read_bytes() == path.read_bytes(), path


def test_translate_directory_conventions(tmp_path: Path) -> None:
    write(tmp_path / "train.en", "a\nb\nc\n")
    write(tmp_path / "train.de", "A\nB\nC\n")
    write(tmp_path / "test2016.en", "never read\n")
    write(tmp_path / "test2016.de", "nie\n")
    data = load_task_data("translate", tmp_path, val_fraction=0.34, seed=1)
    assert data.val_from_train and len(data.val) == 1 and len(data.train) == 2
    assert set(data.train + data.val) == {Example("a", "A"), Example("b", "B"), Example("c", "C")}
    assert load_task_data("translate", tmp_path, tgt="en").train[0] == Example("A", "a")
    write(tmp_path / "train.fr", "x\ny\nz\n")
    assert error_of(lambda: load_task_data("translate", tmp_path)) == (
        f"{tmp_path}: found languages de, en, fr; choose the direction with --src and --tgt"
    )
    assert error_of(lambda: load_task_data("translate", tmp_path, src="en", tgt="cs")) == (
        f"{tmp_path}: no train.cs (languages found: de, en, fr)"
    )
    write(tmp_path / "dev.en", "d\n")
    write(tmp_path / "dev.fr", "D\n")
    data = load_task_data("translate", tmp_path, src="en", tgt="fr")
    assert data.val == [Example("d", "D")] and not data.val_from_train


def test_summarize_prefers_src_tgt_then_jsonl(tmp_path: Path) -> None:
    write(tmp_path / "train.jsonl", '{"document": "long text", "target": "short"}\n' * 4)
    data = load_task_data("summarize", tmp_path, val_fraction=0.25)
    assert data.train[0] == Example("long text", "short") and len(data.val) == 1
    write(tmp_path / "train.src", "from src\n")
    write(tmp_path / "train.tgt", "s\n")
    assert load_task_data("summarize", tmp_path, val_fraction=0).train == [Example("from src", "s")]


def test_sentiment_labels(tmp_path: Path) -> None:
    write(tmp_path / "train.tsv", "text\tlabel\na\t10\nb\t2\nc\t1\n")
    write(tmp_path / "val.jsonl", '{"text": "x", "label": "2"}\n{"text": "y", "label": "3"}\n')
    write(tmp_path / "dev.tsv", "text\tlabel\nz\t1\n")
    assert error_of(lambda: load_task_data("sentiment", tmp_path)) == (
        f"{tmp_path / 'val.jsonl'}:2: label '3' does not occur in the training data "
        "(labels: 1, 2, 10)"
    )
    (tmp_path / "val.jsonl").unlink()
    data = load_task_data("sentiment", tmp_path)
    assert data.labels == ["1", "2", "10"] and data.val == [Example("z", "1")]


def test_task_data_errors(tmp_path: Path) -> None:
    write(tmp_path / "train.tsv", "text\tlabel\n")
    assert error_of(lambda: load_task_data("sentiment", tmp_path)) == (
        f"{tmp_path / 'train.tsv'}: no training examples"
    )
    write(tmp_path / "train.tsv", "text\tlabel\na\tpos\nb\tpos\n")
    assert "only one label ('pos')" in error_of(lambda: load_task_data("sentiment", tmp_path))
    assert error_of(lambda: load_task_data("summarize", tmp_path)) == (
        f"{tmp_path}: no training data found; expected train.src and train.tgt, or train.jsonl"
    )
    assert error_of(lambda: load_task_data("translate", tmp_path / "nope")) == (
        f"{tmp_path / 'nope'}: no such file or directory"
    )
    with pytest.raises(ValueError, match="unknown task 'parse'"):
        load_task_data("parse")


def test_explicit_train_and_val_files(tmp_path: Path) -> None:
    src = write(tmp_path / "a.txt", "x\ny\n")
    tgt = write(tmp_path / "b.txt", "X\nY\n")
    data = load_task_data("translate", train=[src, tgt], val=[src, tgt])
    assert data.train == data.val == [Example("x", "X"), Example("y", "Y")]


def test_demo_files_ship_in_a_non_editable_install(tmp_path: Path) -> None:
    require_extra("dev", "setuptools")
    # Build from a copy: setuptools writes build/ next to the sources.
    source = tmp_path / "src"
    shutil.copytree(
        Path(__file__).resolve().parents[1],
        source,
        ignore=shutil.ignore_patterns(".*", "build", "runs", "*.egg-info", "__pycache__"),
    )
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
    )
    for task in ("translate", "summarize", "sentiment"):
        shipped = sorted(p.name for p in (target / "attn" / "data" / "demo" / task).iterdir())
        assert shipped == sorted(p.name for p in demo_dir(task).iterdir())


# --- the real shared datasets ----------------------------------------------------------


def _shared(sub: str) -> Path:
    path = SHARED / sub
    if not path.is_dir():
        # CI, where the datasets are always there, sets this: a skip would hide a break.
        if os.environ.get("ATTN_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(f"{path} not present (ATTN_REQUIRE_SHARED_DATA=1)")
        pytest.skip(f"{path} not present")
    return path


@pytest.mark.parametrize(
    ("task", "sub", "kwargs", "n_train", "n_val", "labels"),
    [
        ("translate", "translation/multi30k", {"src": "en", "tgt": "de"}, 29000, 1014, None),
        ("translate", "translation/multi30k", {"src": "en", "tgt": "fr"}, 29000, 1014, None),
        ("sentiment", "sentiment/sst2", {}, 67349, 872, ["0", "1"]),
        ("sentiment", "sentiment/imdb", {}, 22473, 2527, ["0", "1"]),
        ("summarize", "summarization/dialogsum", {}, 12460, 500, None),
    ],
)
def test_shared_datasets_load(
    task: str, sub: str, kwargs: dict, n_train: int, n_val: int, labels: list[str] | None
) -> None:
    data = load_task_data(task, _shared(sub), **kwargs)
    assert (len(data.train), len(data.val), data.labels) == (n_train, n_val, labels)
    assert not data.val_from_train
    assert all(p.name.startswith(("train.", "val.", "dev.")) for p in data.train_files)
    if task == "sentiment":
        assert not data.train[0].src.endswith(" ")


def test_shared_dialogsum_jsonl(tmp_path: Path) -> None:
    jsonl = _shared("summarization/dialogsum") / "val.jsonl"
    rows = list(read_jsonl(jsonl, ["dialogue", "summary"]))
    assert len(rows) == 500 and "\n" in rows[0][0]


def test_translate_jsonl_fields_default_to_languages(tmp_path: Path) -> None:
    path = write(tmp_path / "pairs.jsonl", '{"en": "a dog", "de": "ein Hund"}\n')
    data = load_task_data("translate", path, src="en", tgt="de", val_fraction=0)
    assert data.train == [Example("a dog", "ein Hund")]
