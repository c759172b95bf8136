"""Prepared data: the corpus encoded once into memory-mapped arrays in MODEL_DIR/prepared/,
reused by later runs, with its hygiene counted, bad rows reported by file and line, and a
preparation killed mid-way never taken for complete data."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import helpers
import numpy as np
import pytest
from helpers import ATTN, slice_translate, train_cli

from attn.data import demo_dir
from attn.data.prepared import MANIFEST, ArrayWriter, open_prepared, write_manifest
from attn.model.training.train import train


def quick(data: Path, **extra) -> dict:
    return helpers.quick(data, **{"max_steps": 2, **extra})


def prepared_events(task: str, model_dir: Path, options: dict, **kwargs) -> list[dict]:
    events: list[dict] = []
    train(task, model_dir, options, threads=1, on_event=events.append, **kwargs)
    return [e for e in events if e["event"] == "prepared"]


# --- the format ----------------------------------------------------------------------------


def test_arrays_round_trip_and_only_a_complete_listed_set_counts(tmp_path):
    writer = ArrayWriter(tmp_path, "ids", np.uint16)
    writer.append(np.array([5, 6, 7]))
    writer.append(np.array([8]))
    assert open_prepared(tmp_path) is None  # nothing published yet
    write_manifest(tmp_path, {"arrays": {"ids": writer.close()}})
    prepared = open_prepared(tmp_path)
    assert prepared is not None
    assert prepared.array("ids").tolist() == [5, 6, 7, 8]
    assert prepared.size_on_disk() == 8
    # A shorter file than listed (a damaged copy) is not prepared data.
    (tmp_path / "ids.bin").write_bytes(b"\0\0")
    assert open_prepared(tmp_path) is None
    (tmp_path / MANIFEST).write_text("{", encoding="utf-8")
    assert open_prepared(tmp_path) is None


# --- preparation through attn train ----------------------------------------------------


def noisy_corpus(tmp_path: Path) -> Path:
    """The demo slice with two empty sides and three exact duplicates added."""
    data = slice_translate(tmp_path, n_train=200)
    for lang, extra in (("en", ["", "A dog.", "A dog.", "A dog.", "Hi."]),
                        ("de", ["Leer.", "Ein Hund.", "Ein Hund.", "Ein Hund.", " "])):  # fmt: skip
        with open(data / f"train.{lang}", "a", encoding="utf-8") as f:
            f.write("\n".join(extra) + "\n")
    return data


def test_empty_sides_and_duplicates_are_dropped_and_counted(tmp_path):
    data = noisy_corpus(tmp_path)
    [plain] = prepared_events("translate", tmp_path / "a", quick(data))
    assert (plain["rows"], plain["empty"], plain["duplicates"]) == (205, 2, 0)
    assert plain["pairs"] == 203 and plain["reused"] is False
    [deduped] = prepared_events("translate", tmp_path / "b", quick(data, dedup=True))
    assert (deduped["empty"], deduped["duplicates"], deduped["pairs"]) == (2, 2, 201)
    arrays = open_prepared(tmp_path / "b" / "prepared")
    assert arrays is not None
    assert len(arrays.array("lengths")) == 201
    assert arrays.array("src_offsets")[-1] == len(arrays.array("src_tokens"))


def test_the_summary_line_says_what_was_prepared(tmp_path):
    result = train_cli("translate", "--data", str(noisy_corpus(tmp_path)), "--model-dir",
                       str(tmp_path / "m"), "--preset", "tiny", "--vocab-size", "400",
                       "--max-steps", "1", "--threads", "1", "--dedup")  # fmt: skip
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if x.startswith("Prepared "))
    assert "Prepared 201 pairs" in line
    assert "from 205 rows" in line
    assert "2 with an empty side, 2 duplicates" in line
    assert str(tmp_path / "m" / "prepared") in line


def test_later_runs_map_the_prepared_data_and_changed_data_is_prepared_again(tmp_path):
    data, model = slice_translate(tmp_path), tmp_path / "m"
    [first] = prepared_events("translate", model, quick(data))
    manifest = (model / "prepared" / MANIFEST).stat().st_mtime_ns
    [again] = prepared_events("translate", model, quick(data), overwrite=True)
    [resumed] = prepared_events("translate", model, {"max_steps": 4}, resume=True)
    assert not first["reused"] and again["reused"] and resumed["reused"]
    assert (model / "prepared" / MANIFEST).stat().st_mtime_ns == manifest
    with open(data / "train.en", "a", encoding="utf-8") as f, open(data / "train.de", "a") as g:
        f.write("One more.\n")
        g.write("Noch einer.\n")
    [changed] = prepared_events("translate", model, {"max_steps": 6}, resume=True)
    assert not changed["reused"] and changed["pairs"] == first["pairs"] + 1


def test_prepare_only_then_train_in_the_same_directory(tmp_path):
    data, model = slice_translate(tmp_path), tmp_path / "m"
    common = ["--data", str(data), "--model-dir", str(model), "--preset", "tiny",
              "--vocab-size", "400", "--threads", "1"]  # fmt: skip
    prepared = train_cli("translate", *common, "--prepare-only")
    assert prepared.exit_code == 0, prepared.output
    assert "Train on it with: attn train translate" in prepared.output
    assert not (model / "config.json").exists()
    assert open_prepared(model / "prepared") is not None
    trained = train_cli("translate", *common, "--max-steps", "2")
    assert trained.exit_code == 0, trained.output
    assert "Using the data prepared in" in trained.output
    assert "Prepared " not in trained.output


def test_sentiment_labels_are_prepared(tmp_path):
    model = tmp_path / "m"
    [event] = prepared_events("sentiment", model, quick(demo_dir("sentiment")))
    arrays = open_prepared(model / "prepared")
    assert arrays is not None
    labels = arrays.array("labels")
    assert len(labels) == event["pairs"] and set(labels.tolist()) == {0, 1}
    assert arrays.manifest["labels"] == ["negative", "positive"]


def test_bad_rows_in_a_corpus_name_file_and_line(tmp_path):
    data = slice_translate(tmp_path, n_train=50)
    with open(data / "train.de", "ab") as f:
        f.write(b"caf\xe9\n")  # Latin-1, not UTF-8: line 51
    with open(data / "train.en", "a", encoding="utf-8") as f:
        f.write("cafe\n")
    result = train_cli("translate", "--data", str(data), "--model-dir", str(tmp_path / "m"),
                       "--preset", "tiny", "--vocab-size", "400")  # fmt: skip
    assert result.exit_code == 1
    assert f"Error: {data / 'train.de'}:51: invalid UTF-8" in result.output
    assert "Traceback" not in result.output
    assert open_prepared(tmp_path / "m" / "prepared") is None


# --- a kill -9 while preparing ------------------------------------------------------------


@pytest.mark.slow
def test_kill_9_while_preparing_leaves_nothing_taken_for_prepared_data(tmp_path):
    """Killed while the arrays are written: no manifest, so the next run prepares again."""
    demo = demo_dir("translate")
    data = tmp_path / "big"
    data.mkdir()
    for lang in ("en", "de"):
        lines = (demo / f"train.{lang}").read_text(encoding="utf-8").splitlines()
        with open(data / f"train.{lang}", "w", encoding="utf-8") as f:
            for copy in range(20):  # 120,000 pairs: seconds of encoding
                f.write("".join(f"{line} ({copy})\n" for line in lines))
        (data / f"val.{lang}").write_text((demo / f"val.{lang}").read_text(encoding="utf-8"))
    model = tmp_path / "m"
    cmd = [ATTN, "train", "translate", "--data", str(data), "--model-dir", str(model), "--preset",
           "tiny", "--vocab-size", "400", "--threads", "1", "--max-steps", "1"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True
    )
    deadline = time.monotonic() + 120
    tokens = model / "prepared" / ".src_tokens.bin.tmp"
    while not (tokens.exists() and tokens.stat().st_size > 0):
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "encoding never started"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert not (model / "prepared" / MANIFEST).exists()
    assert open_prepared(model / "prepared") is None
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "Prepared 120,000 pairs" in again.stderr
    prepared = open_prepared(model / "prepared")
    assert prepared is not None
    assert len(prepared.array("lengths")) == 120_000
    assert json.loads((model / "prepared" / MANIFEST).read_text())["counts"]["pairs"] == 120_000
