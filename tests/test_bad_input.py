"""Bad input never crashes attn or loses a line: each case is handled, or gets one
`Error: ...` line on stderr and exit 1, never a traceback.

Most cases run the installed `attn` script in a subprocess, as a user would, in the test's
directory so that file names in messages are short and exact.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import ATTN
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from attn.cli.main import app

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
FAST = ["--threads", "1"]
# Greedy and short: these tests are about lines, not translation quality.
QUICK = [*FAST, "--beam", "1", "--max-length", "8"]
# How data/readers.py ends a line.
LINE_BREAK = re.compile(rb"\r?\n")


def attn(*args: str | Path, stdin: bytes = b"", cwd: Path | None = None):
    return subprocess.run(
        [ATTN, *map(str, args)], input=stdin, capture_output=True, env=ENV, cwd=cwd, timeout=300
    )


def lines(out: bytes) -> list[str]:
    """Output lines, each required to end with a newline."""
    assert out == b"" or out.endswith(b"\n"), out[-200:]
    return out.decode("utf-8").split("\n")[:-1]


def assert_error(result, message: str, answered: int = 0) -> None:
    """Exit 1, exactly the line `Error: message` on stderr, and on stdout only the
    `answered` lines that came before the bad one."""
    err = result.stderr.decode()
    assert "Traceback" not in err, err
    assert result.returncode == 1, err
    assert len(lines(result.stdout)) == answered
    assert err == f"Error: {message}\n"


def assert_train_error(result, message: str) -> None:
    """`attn train` prints stage lines first; the error is its last line, the only one."""
    err = result.stderr.decode()
    assert "Traceback" not in err, err
    assert result.returncode == 1, err
    assert err.endswith(f"Error: {message}\n"), err
    assert err.count("Error:") == 1, err


# --- inference input --------------------------------------------------------------------


def test_invalid_utf8_names_file_and_line(tmp_path, sentiment_model):
    (tmp_path / "in.txt").write_bytes(b"A fine film.\nab\xffcd\nok\n")
    result = attn("sentiment", "-m", sentiment_model, *FAST, "in.txt", cwd=tmp_path)
    assert_error(
        result,
        "in.txt:2: invalid UTF-8 (byte 0xff at column 3); use --errors replace to substitute it",
    )


def test_errors_replace_continues(tmp_path, sentiment_model):
    (tmp_path / "bad.txt").write_bytes(b"A fine film.\nab\xffcd\nok\n")
    (tmp_path / "good.txt").write_text("A fine film.\nab\ufffdcd\nok\n", encoding="utf-8")
    result = attn(
        "sentiment", "-m", sentiment_model, *FAST, "--errors", "replace", "bad.txt", "good.txt",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr == b""
    out = lines(result.stdout)
    assert len(out) == 6
    assert out[:3] == out[3:]


def test_bom_and_crlf_read_like_plain_lines(tmp_path, sentiment_model):
    texts = ["A fine film.", "", "The soup was cold.", "   ", "Not bad at all."]
    plain = "\n".join(texts) + "\n"
    files = {
        "lf.txt": plain.encode(),
        "bom.txt": b"\xef\xbb\xbf" + plain.encode(),
        "crlf.txt": plain.replace("\n", "\r\n").encode(),
        "mixed.txt": b"A fine film.\r\n\nThe soup was cold.\n   \r\nNot bad at all.",
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    result = attn("sentiment", "-m", sentiment_model, *FAST, *files, cwd=tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    out = lines(result.stdout)
    groups = [out[i : i + len(texts)] for i in range(0, len(out), len(texts))]
    assert len(groups) == len(files)
    assert all(group == groups[0] for group in groups)
    # Empty and whitespace-only lines give empty lines; the others a label and probability.
    assert [line == "" for line in groups[0]] == [False, True, False, True, False]
    assert all(re.fullmatch(r"\w+\t\d\.\d{4}", line) for line in groups[0] if line)


def test_lone_cr_is_text(tmp_path, sentiment_model):
    # Only \n ends a line (as for wc -l and paste): old Mac line ends make one line.
    (tmp_path / "cr.txt").write_bytes(b"A fine film.\rThe soup was cold.\rNot bad.\n")
    result = attn("sentiment", "-m", sentiment_model, *FAST, "cr.txt", cwd=tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    (line,) = lines(result.stdout)
    assert re.fullmatch(r"\w+\t\d\.\d{4}", line)


def test_nul_byte_after_the_first_8kb(tmp_path, sentiment_model):
    head = b"A fine film.\n" * 1000  # 13 KB: past the binary sniff
    (tmp_path / "nul.txt").write_bytes(head + b"bad\x00line\nok\n")
    result = attn("sentiment", "-m", sentiment_model, *FAST, "nul.txt", cwd=tmp_path)
    assert_error(
        result,
        "nul.txt:1001: NUL byte at column 4, which text never contains; "
        "use --errors replace to substitute it",
        answered=1000,  # the first chunk of 1000 lines was done before line 1001 was read
    )
    replaced = attn(
        "sentiment", "-m", sentiment_model, *FAST, "--errors", "replace", "nul.txt", cwd=tmp_path
    )
    assert replaced.returncode == 0
    assert len(lines(replaced.stdout)) == 1002


def test_one_megabyte_line_gets_one_warning_whole_or_cut(tmp_path, sentiment_model):
    big = "this film was good " * 55_000  # 1 MB
    (tmp_path / "big.txt").write_text(f"{big}\nA fine film.\n{'x' * 1_000_000}\n", encoding="utf-8")
    max_length = json.loads((sentiment_model / "config.json").read_text())["model"]["max_length"]
    result = attn("sentiment", "-m", sentiment_model, *FAST, "big.txt", cwd=tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr.decode() == (
        f"Warning: big.txt:1, 3: 2 lines longer than the model's max_length ({max_length} "
        "pieces), classified in overlapping windows (--max-input cut cuts instead)\n"
    )
    assert len(lines(result.stdout)) == 3
    cut = attn(
        "sentiment", "-m", sentiment_model, *FAST, "--max-input", "cut", "big.txt", cwd=tmp_path
    )
    assert cut.returncode == 0, cut.stderr.decode()
    assert cut.stderr.decode() == (
        f"Warning: some inputs are longer than the model's max_length ({max_length} pieces) "
        "and were truncated\n"
    )
    assert len(lines(cut.stdout)) == 3


def test_one_megabyte_line_translates_to_one_line(tmp_path, translate_model):
    (tmp_path / "big.txt").write_text("a dog " * 170_000 + "\nA dog runs.\n", encoding="utf-8")
    result = attn("translate", "-m", translate_model, *QUICK, "big.txt", cwd=tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    # Translation cuts nothing: the line is split further, and the warning names it.
    assert result.stderr.decode().count("\n") == 1
    assert result.stderr.decode().startswith(
        "Warning: big.txt:1: a sentence longer than the model's max_length"
    )
    out = lines(result.stdout)
    assert len(out) == 2
    assert out[0]


def test_no_final_newline_keeps_the_last_line(tmp_path, translate_model):
    (tmp_path / "a.txt").write_bytes(b"A dog runs.\nA cat sleeps.")
    result = attn("translate", "-m", translate_model, *QUICK, "a.txt", cwd=tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    out = lines(result.stdout)
    assert len(out) == 2
    assert all(out)


@pytest.mark.parametrize("task", ["translate", "sentiment"])
def test_only_empty_lines_and_empty_stdin(task, translate_model, sentiment_model):
    model = translate_model if task == "translate" else sentiment_model
    result = attn(task, "-m", model, *FAST, stdin=b"\n\n  \n\t\n\n")
    assert (result.returncode, result.stdout, result.stderr) == (0, b"\n" * 5, b"")
    result = attn(task, "-m", model, *FAST, stdin=b"")
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")


def test_binary_and_utf16_files_are_refused(tmp_path, sentiment_model):
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4
    (tmp_path / "image.png").write_bytes(png)
    result = attn("sentiment", "-m", sentiment_model, *FAST, "image.png", cwd=tmp_path)
    assert_error(result, "image.png: looks like a binary file, not UTF-8 text")
    (tmp_path / "utf16.txt").write_bytes("A fine film.\n".encode("utf-16"))
    result = attn("sentiment", "-m", sentiment_model, *FAST, "utf16.txt", cwd=tmp_path)
    assert_error(result, "utf16.txt: looks like UTF-16 text; convert it to UTF-8")


def test_directory_missing_and_output_in_missing_directory(tmp_path, sentiment_model):
    (tmp_path / "adir").mkdir()
    (tmp_path / "in.txt").write_text("A fine film.\n", encoding="utf-8")
    run = ("sentiment", "-m", sentiment_model, *FAST)
    assert_error(attn(*run, "adir", cwd=tmp_path), "adir: is a directory")
    assert_error(attn(*run, "missing.txt", cwd=tmp_path), "missing.txt: no such file")
    assert_error(
        attn(*run, "in.txt", "-o", "nowhere/out.txt", cwd=tmp_path),
        "nowhere/out.txt: No such file or directory",
    )
    assert not (tmp_path / "nowhere").exists()


def test_unreadable_file(tmp_path, sentiment_model):
    path = tmp_path / "secret.txt"
    path.write_text("A fine film.\n", encoding="utf-8")
    path.chmod(0)
    try:
        with open(path, "rb"):
            pytest.skip("running as root: chmod 000 does not stop reads (see the simulated test)")
    except PermissionError:
        pass
    result = attn("sentiment", "-m", sentiment_model, *FAST, "secret.txt", cwd=tmp_path)
    assert_error(result, "secret.txt: permission denied")


def test_unreadable_file_simulated(tmp_path, sentiment_model, monkeypatch):
    """What the OS says to a user without read permission, whoever runs the tests."""
    path = tmp_path / "secret.txt"
    path.write_text("A fine film.\n", encoding="utf-8")

    def denied(file, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(file))

    monkeypatch.setattr("attn.data.readers.open", denied, raising=False)
    result = CliRunner().invoke(app, ["sentiment", "-m", str(sentiment_model), str(path)])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == f"Error: {path}: permission denied\n"


# --- training data ------------------------------------------------------------------------

TRAIN = ["--preset", "tiny", "--max-steps", "3", "--threads", "1"]


def write(directory: Path, files: dict[str, str | bytes]) -> Path:
    directory.mkdir(exist_ok=True)
    for name, content in files.items():
        data = content.encode() if isinstance(content, str) else content
        (directory / name).write_bytes(data)
    return directory


def test_parallel_files_with_different_line_counts(tmp_path):
    write(tmp_path / "d", {"train.en": "a b\nc d\ne f\n", "train.de": "x\ny\n"})
    result = attn("train", "translate", "--data", "d", "--model-dir", "m", *TRAIN, cwd=tmp_path)
    d = tmp_path / "d"
    assert_train_error(
        result,
        f"{d}/train.en: has 3 lines but {d}/train.de has 2; "
        "line N of one file must pair with line N of the other",
    )
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (
            {"train.tsv": "text\tlabel\ngood film\tpos\nbad\tneg\textra\n"},
            "train.tsv:3: expected 2 fields, found 3",
        ),
        (
            {
                "train.tsv": "text\tlabel\ngood film\tpos\nbad\tneg\n",
                "val.tsv": "text\tlabel\nok\tmeh\n",
            },
            "val.tsv:2: label 'meh' does not occur in the training data (labels: neg, pos)",
        ),
        (
            {"train.jsonl": '{"text": "good", "label": "pos"}\n{"text": "bad", \n'},
            "train.jsonl:2: invalid JSON (Expecting property name enclosed in double quotes: "
            "line 1 column 17 (char 16))",
        ),
        ({"train.tsv": "text\tlabel\n"}, "train.tsv: no training examples"),
        ({"train.tsv": ""}, "train.tsv: empty file; expected a header line such as text<TAB>label"),
        ({"train.tsv": "text\tlabel\n\xff\tpos\n"}, "train.tsv:2: invalid UTF-8"),
    ],
    ids=["columns", "unknown-val-label", "bad-jsonl", "no-examples", "empty-file", "utf8"],
)
def test_bad_sentiment_data(tmp_path, files, message):
    data = tmp_path / "d"
    write(data, {k: v.encode("latin-1") if "\xff" in v else v for k, v in files.items()})
    result = attn("train", "sentiment", "--data", "d", "--model-dir", "m", *TRAIN, cwd=tmp_path)
    err = result.stderr.decode()
    assert "Traceback" not in err
    assert result.returncode == 1
    last = err.splitlines()[-1]
    assert last.startswith(f"Error: {data}/{message}"), err


def test_vocab_size_larger_than_the_data_allows_falls_back(tmp_path):
    demo = Path(__file__).resolve().parents[1] / "data" / "demo" / "translate"
    files = {}
    for split, n in (("train", 200), ("val", 8)):
        for lang in ("en", "de"):
            text = (demo / f"{split}.{lang}").read_text(encoding="utf-8")
            files[f"{split}.{lang}"] = "\n".join(text.splitlines()[:n]) + "\n"
    write(tmp_path / "d", files)
    result = attn(
        "train", "translate", "--data", "d", "--model-dir", "m", *TRAIN, "--vocab-size", "8000",
        "--batch-tokens", "512", cwd=tmp_path,
    )  # fmt: skip
    err = result.stderr.decode()
    assert result.returncode == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("Warning:")]
    assert len(warnings) == 1
    assert re.fullmatch(
        r"Warning: training text is too small for a vocabulary of 8000; using \d+ instead",
        warnings[0],
    )


def test_vocab_impossible_even_at_the_minimum(tmp_path):
    write(tmp_path / "d", {"train.en": "a b\nb a\nab ba\n", "train.de": "x y\ny x\nxy yx\n"})
    result = attn("train", "translate", "--data", "d", "--model-dir", "m", *TRAIN, cwd=tmp_path)
    assert_train_error(
        result,
        "not enough training text for a tokenizer: it supports only 269 pieces, the minimum "
        "is 300; give more text",
    )


def test_overwrite_with_bad_data_keeps_the_model(tmp_path, sentiment_model):
    model = shutil.copytree(sentiment_model, tmp_path / "m")
    before = {p.name: p.read_bytes() for p in model.iterdir() if p.is_file()}
    write(tmp_path / "d", {"train.tsv": "text\tlabel\ngood film\tpos\nbad\tneg\textra\n"})
    result = attn(
        "train", "sentiment", "--data", "d", "--model-dir", "m", "--overwrite", *TRAIN,
        cwd=tmp_path,
    )  # fmt: skip
    assert_train_error(result, f"{tmp_path / 'd'}/train.tsv:3: expected 2 fields, found 3")
    assert {p.name: p.read_bytes() for p in model.iterdir() if p.is_file()} == before


# --- model directories --------------------------------------------------------------------


def edit_config(model: Path, edit) -> None:
    path = model / "config.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    edit(data)
    path.write_text(json.dumps(data), encoding="utf-8")


def test_missing_empty_and_wrong_task_model_dirs(tmp_path, sentiment_model):
    (tmp_path / "empty").mkdir()
    assert_error(
        attn("translate", "-m", "nowhere", stdin=b"x\n", cwd=tmp_path),
        "model directory nowhere does not exist",
    )
    assert_error(
        attn("translate", "-m", "empty", stdin=b"x\n", cwd=tmp_path),
        "empty is not an attn model directory (no config.json)",
    )
    assert_error(
        attn("translate", "-m", sentiment_model, stdin=b"x\n"),
        f"{sentiment_model} holds a sentiment model, not a translate model",
    )


def test_config_from_a_newer_attn(tmp_path, sentiment_model):
    model = shutil.copytree(sentiment_model, tmp_path / "m")
    edit_config(model, lambda d: d.update(format_version=99))
    assert_error(
        attn("sentiment", "-m", "m", stdin=b"x\n", cwd=tmp_path),
        "m/config.json: written by a newer attn (format 99, this attn reads <= 1); upgrade attn",
    )


@pytest.mark.parametrize("size", [0, 5, 50_000])
def test_truncated_weights(tmp_path, sentiment_model, size):
    model = shutil.copytree(sentiment_model, tmp_path / "m")
    with open(model / "model.safetensors", "r+b") as f:
        f.truncate(size)
    result = attn("sentiment", "-m", "m", stdin=b"x\n", cwd=tmp_path)
    err = result.stderr.decode()
    assert err.startswith("Error: m/model.safetensors: not a readable safetensors file ("), err
    assert_error(result, err.removeprefix("Error: ").rstrip("\n"))


def test_tokenizer_that_does_not_match_the_config(tmp_path, sentiment_model):
    from attn.tokenizer import Tokenizer

    model = shutil.copytree(sentiment_model, tmp_path / "m")
    texts = [f"word{i} other{i * 7} more text here" for i in range(300)]
    tok = Tokenizer.train(texts, model / "tokenizer.model", 300)
    vocab = json.loads((model / "config.json").read_text())["model"]["vocab_size"]
    assert tok.vocab_size != vocab
    assert_error(
        attn("sentiment", "-m", "m", stdin=b"x\n", cwd=tmp_path),
        f"m: tokenizer has {tok.vocab_size} pieces but the config says vocab_size {vocab}; "
        "the directory is inconsistent",
    )
    (model / "tokenizer.model").write_bytes(b"not a sentencepiece model")
    err = attn("sentiment", "-m", "m", stdin=b"x\n", cwd=tmp_path).stderr.decode()
    assert err.startswith("Error: m/tokenizer.model: not a valid SentencePiece model")
    assert err.count("\n") == 1


# --- one line out per line in, whatever the lines --------------------------------------

# Any text except what ends a line for data/readers.py (\n, \r), NUL (an error unless
# --errors replace) and lone surrogates (not encodable). Python's other line breaks
# (\v, \f, \x1c-\x1e, \x85, \u2028, \u2029) are ordinary characters to attn.
LINE = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r\x00"),
    max_size=30,
)
# The fixtures are session-scoped models, the same for every example.
FIXTURE = HealthCheck.function_scoped_fixture
TEXTS = st.lists(st.one_of(LINE, st.sampled_from(["", " ", "\t", "  \u3000 "])), max_size=12)


def split_output(out: bytes) -> list[bytes]:
    """Lines as data/readers.py (and so a downstream attn) would read them."""
    assert out == b"" or out.endswith(b"\n")
    return LINE_BREAK.split(out)[:-1] if out else []


def check_lines(task: str, model: Path, texts: list[str], extra: list[str]) -> None:
    data = "".join(f"{t}\n" for t in texts).encode()
    result = CliRunner().invoke(app, [task, "-m", str(model), *extra], input=data)
    assert result.exit_code == 0, result.output
    out = split_output(result.stdout_bytes)
    assert len(out) == len(texts)
    for i, (text, line) in enumerate(zip(texts, out, strict=True)):
        read = text.removeprefix("\ufeff") if i == 0 else text  # a BOM starts only a file
        if not read.strip():
            assert line == b""
        elif task == "sentiment":
            assert re.fullmatch(rb"\w+\t\d\.\d{4}", line), line


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(texts=TEXTS)
def test_translate_one_line_out_per_line_in(translate_model, texts):
    check_lines("translate", translate_model, texts, ["--beam", "1", "--max-length", "6"])


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(texts=TEXTS)
def test_sentiment_one_line_out_per_line_in(sentiment_model, texts):
    check_lines("sentiment", sentiment_model, texts, [])


def test_one_line_out_per_line_in_subprocess(translate_model):
    texts = ["A dog runs.", "", "a\u2028b\x85c\x0bd\x0ce\x1cf", "   ", "\ufeffx", "😀 ñ 中文", "\t"]
    data = "".join(f"{t}\n" for t in texts).encode()
    result = attn("translate", "-m", translate_model, *QUICK, "--format", "tsv", stdin=data)
    assert result.returncode == 0, result.stderr.decode()
    out = split_output(result.stdout)
    assert len(out) == len(texts)
    # TSV's first column is the source line as read (tabs become spaces).
    sources = [line.split(b"\t")[0].decode() for line in out]
    assert sources == [t.replace("\t", " ") for t in texts]
