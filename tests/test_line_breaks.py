"""A line ends at `\\n` (or `\\r\\n`) and nowhere else, and text may hold any other character:
the characters `str.splitlines()` also splits at (U+0085, U+2028, U+2029, form feed,
vertical tab, U+001C-U+001E and a lone `\\r`) go through every reader, the prepared data,
training and its validation, inference, `attn evaluate` and the server inside one line.

The models are trained for two steps on copies of the demo corpora with those characters
inserted inside lines: quick, and what they learn does not matter here.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import train_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from attn.cli.main import app
from attn.data import demo_dir, read_jsonl, read_lines, read_parallel, read_table
from attn.data.task_files import load_split
from attn.model.training.metrics_log import read_metrics

# Every character str.splitlines() splits at, but \n (and \r\n, which it takes as one).
BREAKS = ("\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029")
TASKS = ("translate", "summarize", "sentiment")
FAST = ["--threads", "1"]
QUICK = [*FAST, "--beam", "1", "--max-length", "4"]
# A directory name that puts the breaks into metrics.jsonl (attn evaluate logs the paths).
ODD_DIR = "d\u2028\x85\u2029\x0c"


def with_breaks(line: str, i: int) -> str:
    """`line` with two of BREAKS inside it (which two, by `i`): never at either end."""
    a, b = BREAKS[i % len(BREAKS)], BREAKS[(i + 4) % len(BREAKS)]
    words = line.split(" ")
    if len(words) < 3:
        return f"{line[:1]}{a}{b}{line[1:]}"
    return " ".join([words[0], a + words[1], *words[2:-1], b + words[-1]])


def copy_demo(task: str, out: Path, n_train: int = 240, n_val: int = 12) -> Path:
    """The first lines of the task's demo corpus, each with breaks inserted, as a data dir."""
    out.mkdir(parents=True)
    for path in sorted(demo_dir(task).iterdir()):
        split = path.name.split(".")[0]
        n = n_train if split == "train" else n_val
        lines = path.read_bytes().decode("utf-8").split("\n")[:-1]
        if path.suffix == ".tsv":  # the header stays, the text column gets the breaks
            header, rows = lines[0], [line.split("\t") for line in lines[1 : n + 1]]
            lines = [header] + [f"{with_breaks(t, i)}\t{y}" for i, (t, y) in enumerate(rows)]
        else:
            lines = [with_breaks(line, i) for i, line in enumerate(lines[:n])]
        (out / path.name).write_bytes("".join(f"{line}\n" for line in lines).encode())
    return out


def train(task: str, data: Path, model: Path, *extra: str) -> None:
    result = train_cli(
        task, "--data", str(data), "--model-dir", str(model), "--preset", "tiny",
        "--vocab-size", "500", "--batch-tokens", "512", "--max-steps", "2", "--val-every", "1",
        "--save-every", "0", *FAST, *extra,
    )  # fmt: skip
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("corpora")
    return {task: copy_demo(task, root / task) for task in TASKS}


@pytest.fixture(scope="module")
def models(corpora, tmp_path_factory) -> dict[str, Path]:
    """A model per task, trained (and validated) for two steps on its corpus with breaks."""
    root = tmp_path_factory.mktemp("models")
    for task in TASKS:
        train(task, corpora[task], root / task)
    return {task: root / task for task in TASKS}


def infer(task: str, model: Path, texts: list[str], *args: str) -> list[str]:
    """`attn TASK` on `texts` as stdin lines: its output lines, exactly one per input line."""
    options = FAST if task == "sentiment" else QUICK
    stdin = "".join(f"{t}\n" for t in texts).encode()
    result = CliRunner().invoke(app, [task, "-m", str(model), *options, *args], input=stdin)
    assert result.exit_code == 0, result.output
    out = result.stdout_bytes.decode("utf-8")
    assert out.endswith("\n") or not texts
    lines = out.split("\n")[:-1]
    assert len(lines) == len(texts), out
    # No \r, which universal newlines would take for a line end; JSON Lines escape the
    # other characters str.splitlines() splits at too.
    assert not any("\r" in line for line in lines), out
    if "jsonl" in args:
        assert all(len(line.splitlines()) == 1 for line in lines), out
    return lines


# --- the three tasks train, resume and infer ----------------------------------------------


@pytest.mark.parametrize("task", TASKS)
def test_train_resume_and_infer_on_text_with_breaks(task, corpora, models, tmp_path):
    model = tmp_path / task
    shutil.copytree(models[task], model)
    records = [r for r in read_metrics(model) if "val_loss" in r]
    assert [r["step"] for r in records] == [1, 2]  # validated on text with breaks

    train(task, corpora[task], model, "--resume", "--max-steps", "4")
    assert [r["step"] for r in read_metrics(model) if "val_loss" in r] == [1, 2, 3, 4]
    val = next(p for p in corpora[task].iterdir() if p.name.startswith("val"))
    sources = list(read_lines(val))[1:] if val.suffix == ".tsv" else list(read_lines(val))
    sources = [s.split("\t")[0] for s in sources]
    assert any(b in s for s in sources for b in BREAKS)
    infer(task, model, sources)


def test_damaged_prepared_data_names_the_file_and_line_and_the_way_out(tmp_path):
    from attn.data import Example
    from attn.model.training.prepare import _read_val
    from attn.model.training.settings import TrainError

    val = tmp_path / "prepared" / "val.jsonl"
    val.parent.mkdir()
    val.write_text('["a\\u2028b", "c"]\n["d", "e\n', encoding="utf-8")
    with pytest.raises(TrainError) as info:
        _read_val(val, Example)
    message = str(info.value)
    assert message.startswith(f"{val}:2: not a JSON value (Unterminated string"), message
    assert f"delete {val.parent} and run again" in message
    assert "report it as a bug" in message


# --- any text, through every stage --------------------------------------------------------


@st.composite
def texts_with_breaks(draw) -> str:
    """Any text without \\n, from the whole of Unicode, holding every character in BREAKS;
    a letter at each end, so that stripping and a CRLF cannot touch it."""
    chars = draw(
        st.lists(
            st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\x00"),
            max_size=12,
        )
    )
    for b in BREAKS:
        chars.insert(draw(st.integers(0, len(chars))), b)
    return "a" + "".join(chars) + "z"


TEXTS = st.lists(texts_with_breaks(), min_size=1, max_size=3)


def write(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes("".join(f"{line}\n" for line in lines).encode("utf-8"))
    return path


def check_readers(root: Path, texts: list[str]) -> None:
    """Plain lines, parallel files, TSV, CSV and JSONL give back each text as it was."""
    targets = [t[::-1] for t in texts]
    assert list(read_lines(write(root / "plain.txt", texts))) == texts
    pairs = read_parallel(write(root / "p.src", texts), write(root / "p.tgt", targets))
    assert list(pairs) == list(zip(texts, targets, strict=True))
    tsv_texts = [t.replace("\t", " ") for t in texts]  # a TAB would start another field
    tsv = write(root / "t.tsv", ["text\tlabel", *(f"{t}\tpos" for t in tsv_texts)])
    assert list(read_table(tsv)) == [(t, "pos") for t in tsv_texts]
    with open(root / "t.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n", quoting=csv.QUOTE_ALL)
        writer.writerows([("text", "label"), *((t, "pos") for t in texts)])
    assert list(read_table(root / "t.csv")) == [(t, "pos") for t in texts]
    records = [json.dumps({"src": s, "tgt": t}, ensure_ascii=False) for s, t in pairs_of(texts)]
    assert list(read_jsonl(write(root / "t.jsonl", records), ("src", "tgt"))) == pairs_of(texts)


def pairs_of(texts: list[str]) -> list[tuple[str, str]]:
    return [(t, t[::-1]) for t in texts]


def check_prepared_val(root: Path, texts: list[str]) -> None:
    """The validation examples the prepared data keeps, and the split they are read from."""
    from attn.data import Example
    from attn.model.training.prepare import _read_val, _write_val

    examples = [Example(s, t) for s, t in pairs_of(texts)]
    _write_val(root / "val.jsonl", examples)
    assert _read_val(root / "val.jsonl", Example) == examples
    data = root / "split"
    write(data / "val.src", texts)
    write(data / "val.tgt", [t for _, t in pairs_of(texts)])
    loaded, _ = load_split("summarize", data, split="val")
    assert [(ex.src, ex.tgt) for ex in loaded] == pairs_of(texts)


def check_inference(models: dict[str, Path], texts: list[str]) -> None:
    """One output line per input line in each format (one format a task, to stay quick)."""
    tsv = infer("translate", models["translate"], texts, "-f", "tsv")
    # TSV's first column: the source, its tabs and \r made spaces, the rest kept.
    clean = [t.replace("\t", " ").replace("\r", " ") for t in texts]
    assert [line.split("\t")[0] for line in tsv] == clean
    infer("summarize", models["summarize"], texts)
    lines = infer("sentiment", models["sentiment"], texts, "-f", "jsonl")
    records = [json.loads(line) for line in lines]
    assert [r["source"] for r in records] == texts


def check_evaluate(root: Path, models: dict[str, Path], texts: list[str]) -> None:
    """attn evaluate reads every line, and its metrics.jsonl line (naming a directory full of
    breaks) reads back as one record."""
    data = root / ODD_DIR
    write(data / "test.en", texts)
    write(data / "test.de", texts)
    model = models["translate"]
    result = CliRunner().invoke(
        app,
        ["evaluate", "translate", "-m", str(model), "--data", str(data / "test.en"),
         "--ref", str(data / "test.de"), "--format", "json", "--beam", "1", *FAST],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n"] == len(texts)
    last = read_metrics(model)[-1]
    assert last["evaluate"] and last["n"] == len(texts)
    assert last["data"][0] == str((data / "test.en").resolve())


@pytest.fixture(scope="module")
def server(models) -> Iterator[str]:
    from test_serve import running

    from attn import SentimentClassifier, Summarizer, Translator
    from attn.server.app import create_app

    kinds = {"translate": Translator, "summarize": Summarizer, "sentiment": SentimentClassifier}
    loaded = {task: kinds[task].load(models[task], device="cpu") for task in TASKS}
    with running(create_app(loaded, max_wait=0)) as base:
        yield base


def check_server(base: str, texts: list[str]) -> None:
    from test_serve import request

    options: dict[str, Any] = {"beam": 1, "max_length": 4}
    for task in TASKS:
        body = {"texts": texts, **({} if task == "sentiment" else options)}
        status, reply = request(base, f"/{task}", body)
        assert status == 200, reply
        assert [r["source"] for r in reply["results"]] == texts
        status, reply = request(base, f"/{task}", {"text": texts[0]})
        assert status == 200 and reply["source"] == texts[0], reply


@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(texts=TEXTS)
def test_any_text_stays_one_line_everywhere(texts, models, server, tmp_path_factory):
    root = tmp_path_factory.mktemp("texts")
    check_readers(root, texts)
    check_prepared_val(root, texts)
    check_inference(models, texts)
    check_evaluate(root, models, texts)
    check_server(server, texts)
