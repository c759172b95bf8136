"""`attn info -m DIR`: a model's task, config, size, data, best score and labels."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from typer.testing import CliRunner

from attn.cli.main import app
from attn.data import demo_dir

runner = CliRunner()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_info_json_describes_a_translation_model(translate_model: Path) -> None:
    from attn.model.nn.transformer import count_parameters
    from attn.model.storage.checkpoint import load_model

    result = runner.invoke(app, ["info", "-m", str(translate_model), "--format", "json"])
    assert result.exit_code == 0, result.output
    about = json.loads(result.output)
    loaded = load_model(translate_model)
    assert about["task"] == "translate"
    assert about["preset"] == "tiny"
    assert about["parameters"] == count_parameters(loaded.model)
    assert about["vocab_size"] == loaded.tokenizer.vocab_size
    assert about["config"] == loaded.config.to_dict()
    assert about["labels"] is None
    files = {Path(d["file"]).name: d for d in about["data"]["train"]}
    assert set(files) == {"train.en", "train.de"}
    demo = demo_dir("translate")
    assert files["train.en"]["sha256"] == _sha256(demo / "train.en")
    assert files["train.de"]["bytes"] == (demo / "train.de").stat().st_size
    records = [
        json.loads(line)
        for line in (translate_model / "metrics.jsonl").read_text().splitlines()
        if '"evaluate"' not in line
    ]
    best = max(records, key=lambda r: r["bleu"])
    assert about["best"] == {"metric": "bleu", "value": best["bleu"], "step": best["step"]}
    assert about["validations"] == len(records)


def test_info_text_for_a_sentiment_model(sentiment_model: Path) -> None:
    result = runner.invoke(app, ["info", "-m", str(sentiment_model)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "task          sentiment" in lines
    assert "labels        negative, positive" in lines
    assert any(line.startswith("preset        tiny (d_model 128, 4 heads") for line in lines)
    assert any(line.startswith("best          accuracy ") for line in lines)
    digest = _sha256(demo_dir("sentiment") / "train.tsv")
    assert any(line.startswith("train data") and digest in line for line in lines)
    assert "              n_heads = 4" in lines


def test_info_of_a_directory_without_a_model(tmp_path: Path) -> None:
    result = runner.invoke(app, ["info", "-m", str(tmp_path)])
    assert result.exit_code == 1
    assert "not an attn model directory" in result.output


def test_info_json_without_a_model(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("ATTN_HOME", str(tmp_path))
    result = runner.invoke(app, ["info", "--format", "json"])
    assert result.exit_code == 0, result.output
    about = json.loads(result.output)
    assert about["home"] == str(tmp_path)
    assert about["model translate"].endswith("(none yet)")
