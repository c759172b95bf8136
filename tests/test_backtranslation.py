"""Synthetic training pairs (`attn train translate --synthetic DIR`, tagged back-translation):
their sources carry the tag, the tokenizer holds it as one piece, the prepared data counts
them, validation never holds one, and a bad directory gets a one-line error."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from helpers import ATTN, slice_translate

from attn.data.scan import TRAIN, VAL, scan_training_data
from attn.data.task_files import BT_TAG, find_task_files
from attn.tokenizer import Tokenizer

# Synthetic sources that no real pair of the demo corpus holds: where a pair came from shows.
SYNTHETIC_SOURCE = "synthetic source number {}"


def _synthetic_dir(tmp_path: Path, n: int, src: str = "en", tgt: str = "de") -> Path:
    directory = tmp_path / "bt"
    directory.mkdir()
    (directory / f"train.{src}").write_text(
        "".join(SYNTHETIC_SOURCE.format(i) + "\n" for i in range(n)), encoding="utf-8"
    )
    (directory / f"train.{tgt}").write_text(
        "".join(f"synthetische Zeile {i}\n" for i in range(n)), encoding="utf-8"
    )
    return directory


def _train(*args: str) -> subprocess.CompletedProcess:
    cmd = [ATTN, "train", "translate", "--preset", "tiny", "--vocab-size", "400"]
    cmd += ["--batch-tokens", "512", "--max-steps", "2", "--val-every", "2", "--threads", "1"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=600)


def _one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_synthetic_sources_are_tagged_and_come_after_the_real_pairs(tmp_path):
    data = slice_translate(tmp_path, n_train=40)
    (data / "val.en").unlink()
    (data / "val.de").unlink()
    bt = _synthetic_dir(tmp_path, 30)
    (bt / "train.en").write_text(
        (bt / "train.en").read_text(encoding="utf-8") + "\n", encoding="utf-8"
    )  # one synthetic pair with an empty source: dropped, not tagged into a real one
    (bt / "train.de").write_text(
        (bt / "train.de").read_text(encoding="utf-8") + "leer\n", encoding="utf-8"
    )
    files = find_task_files("translate", data, src="en", tgt="de", synthetic=bt)
    rows = [(path, ex) for path, _, ex in files.examples("train", empty="keep")]
    assert [ex.src.startswith(BT_TAG) for _, ex in rows] == [False] * 40 + [True] * 30 + [False]
    assert rows[40][1].src == f"{BT_TAG} {SYNTHETIC_SOURCE.format(0)}"
    assert rows[40][1].tgt == "synthetische Zeile 0"

    scan = scan_training_data(files, dedup=False, sample_size=1000, seed=0, emit=lambda e: None)
    assert scan.real == 40 and scan.empty == 1
    # Held out for validation: real rows only (the first 40), as without synthetic pairs.
    held = [row for row, role in enumerate(scan.roles) if role == VAL]
    assert held and max(held) < 40
    assert all(role == TRAIN for role in scan.roles[40:70])
    plain = find_task_files("translate", data, src="en", tgt="de")
    alone = scan_training_data(plain, dedup=False, sample_size=1000, seed=0, emit=lambda e: None)
    assert list(alone.roles) == list(scan.roles[:40])


def test_train_with_synthetic_pairs_on_the_demo_corpus(tmp_path):
    data = slice_translate(tmp_path, n_train=300)
    bt = _synthetic_dir(tmp_path, 120)
    model = tmp_path / "model"
    result = _train("--data", str(data), "--synthetic", str(bt), "--model-dir", str(model))
    assert result.returncode == 0, result.stderr
    assert "Prepared 420 pairs (" in result.stderr
    assert " tokens; 120 pairs synthetic) and 16 validation examples" in result.stderr

    tokenizer = Tokenizer.load(model / "tokenizer.model")
    assert tokenizer.has_piece(BT_TAG)
    assert BT_TAG in tokenizer.pieces(f"{BT_TAG} {SYNTHETIC_SOURCE.format(3)}")
    assert not tokenizer.has_piece("<XY>")

    manifest = json.loads((model / "prepared" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["counts"]["pairs"] == 420 and manifest["counts"]["synthetic"] == 120
    assert len(manifest["key"]["synthetic"]) == 2
    validation = (model / "prepared" / "val.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(validation) == 16
    assert not any(BT_TAG in line or "synthetic source" in line for line in validation)
    config = json.loads((model / "config.json").read_text(encoding="utf-8"))
    assert config["train"]["synthetic"] == str(bt.resolve())
    assert config["data"]["synthetic"] == [str(bt / "train.en"), str(bt / "train.de")]
    assert {Path(d["file"]).parent for d in config["data"]["train"]} == {data.resolve()}

    # Other synthetic pairs: other prepared data (the key holds them), read anew.
    (bt / "train.de").write_text(
        "".join(f"eine andere Zeile {i}\n" for i in range(120)), encoding="utf-8"
    )
    again = _train(
        "--data", str(data), "--synthetic", str(bt), "--model-dir", str(model), "--overwrite"
    )
    assert again.returncode == 0, again.stderr
    assert "tokens; 120 pairs synthetic) and 16 validation" in again.stderr
    config = json.loads((model / "config.json").read_text(encoding="utf-8"))
    assert len(config["data"]["synthetic_sha256"]) == 2

    # Resuming with the same synthetic pairs says nothing; with others, it warns.
    more = ("--data", str(data), "--synthetic", str(bt), "--model-dir", str(model))
    same = _train(*more, "--resume", "--max-steps", "3")
    assert same.returncode == 0, same.stderr
    assert "changed" not in same.stderr
    (bt / "train.de").write_text(
        "".join(f"noch eine Zeile {i}\n" for i in range(120)), encoding="utf-8"
    )
    changed = _train(*more, "--resume", "--max-steps", "4")
    assert changed.returncode == 0, changed.stderr
    assert "the training data changed since this run began" in changed.stderr

    # Fine-tuning a model whose tokenizer lacks the tag on synthetic pairs is refused.
    plain = tmp_path / "plain"
    assert _train("--data", str(data), "--model-dir", str(plain)).returncode == 0
    tuned = tmp_path / "tuned"
    refused = _train(
        "--init", str(plain), "--data", str(data), "--synthetic", str(bt), "--model-dir", str(tuned)
    )
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: synthetic pairs need a tokenizer with their tag <BT>"), last
    assert not (tuned / "tokenizer.model").exists()


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda tmp: tmp / "missing", "no such directory"),
        (lambda tmp: tmp, "no train.en or train.de"),
    ],
)
def test_bad_synthetic_directory_is_one_line(tmp_path, make, expected):
    data = slice_translate(tmp_path, n_train=50)
    line = _one_line_error(
        _train("--data", str(data), "--synthetic", str(make(tmp_path)), "--model-dir", "m")
    )
    assert expected in line
    assert not (tmp_path / "m").exists()


def test_synthetic_pairs_only_for_translation_from_parallel_files(tmp_path):
    bt = _synthetic_dir(tmp_path, 5)
    with pytest.raises(ValueError, match="for translate, not sentiment"):
        find_task_files("sentiment", None, synthetic=bt)
    jsonl = tmp_path / "train.jsonl"
    jsonl.write_text('{"src": "a", "tgt": "b"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="two line-aligned files"):
        find_task_files("translate", jsonl, synthetic=bt)
