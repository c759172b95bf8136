"""`attn export`: CTranslate2 and ONNX exports compute what attn computes.

Fast tests use tiny models with random weights (built in a second): CTranslate2's
log-probabilities of given outputs equal attn's, for a ReLU translation and a GELU
summarization model, and bad input gets one-line errors. Slow tests use the demo-trained
models of conftest.py: CTranslate2's greedy output is attn's (float32, whole vocabulary),
beam 4 and int8 keep the BLEU, and the ONNX graphs equal attn's encoder, decoder step and
greedy search, and its classifier.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from attn.cli.main import app
from attn.data import demo_dir
from attn.model.export import export_model
from attn.model.export.staging import staged_directory
from attn.model.nn.config import ModelConfig
from attn.model.nn.transformer import Transformer
from attn.model.storage.checkpoint import TOKENIZER, WEIGHTS, save_model_config, save_weights
from attn.tokenizer import Tokenizer

ctranslate2 = pytest.importorskip("ctranslate2", reason="needs the export extras")
ort = pytest.importorskip("onnxruntime", reason="needs the export extras")

runner = CliRunner()


def _texts(task: str, split: str, n: int | None = None) -> list[str]:
    name = {"translate": "en", "summarize": "src"}[task]
    lines = (demo_dir(task) / f"{split}.{name}").read_text(encoding="utf-8").splitlines()
    return lines[:n]


def _random_model(directory: Path, task: str, activation: str, **fields) -> Path:
    """A tiny model with random weights and a tokenizer trained on demo sentences."""
    directory.mkdir(parents=True)
    tokenizer = Tokenizer.train(_texts("translate", "train", 2000), directory / TOKENIZER, 400)
    torch.manual_seed(0)
    config = ModelConfig(
        task=task,
        vocab_size=tokenizer.vocab_size,
        d_model=32,
        n_heads=4,
        n_encoder_layers=2,
        n_decoder_layers=0 if task == "sentiment" else 2,
        d_ff=64,
        activation=activation,
        max_length=64,
        **fields,
    )
    save_weights(Transformer(config), directory / WEIGHTS)
    save_model_config(directory, config)
    return directory


@pytest.fixture(scope="module")
def random_models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("random")
    return {
        "translate": _random_model(root / "translate", "translate", "relu"),
        "summarize": _random_model(root / "summarize", "summarize", "gelu"),
        "sentiment": _random_model(
            root / "sentiment", "sentiment", "relu", labels=("negative", "positive")
        ),
    }


def _attn_logprobs(model_dir: Path, sources: list[list[int]], targets: list[list[int]]):
    """attn's log-probabilities of each target piece and of EOS, teacher-forced, with PAD and
    BOS out of the softmax (as exported: attn never generates them)."""
    from attn.model.storage.checkpoint import load_model

    loaded = load_model(model_dir)
    c = loaded.config
    out = []
    with torch.no_grad():
        for src, tgt in zip(sources, targets, strict=True):
            logits = loaded.model(torch.tensor([src]), torch.tensor([[c.bos_id, *tgt]]))[0]
            logits[:, [c.pad_id, c.bos_id]] = -torch.inf
            logp = logits.log_softmax(-1)  # (T, V)
            out.append(logp.gather(1, torch.tensor([*tgt, c.eos_id])[:, None])[:, 0].tolist())
    return out


@pytest.mark.parametrize("task", ["translate", "summarize"])
def test_ctranslate2_scores_equal_attn(random_models, tmp_path, task: str) -> None:
    """Every weight is where CTranslate2 reads it: its log-probabilities of given outputs are
    attn's within 1e-4 (ReLU translation, GELU summarization; padding in the batch)."""
    model_dir = random_models[task]
    out = tmp_path / "ct2"
    export_model(model_dir, "ctranslate2", out)
    assert {"model.bin", "config.json", "shared_vocabulary.json", TOKENIZER} <= {
        p.name for p in out.iterdir()
    }
    tokenizer = Tokenizer.load(out / TOKENIZER)
    texts = _texts(task, "val", 6)
    sources, _ = tokenizer.encode(texts, max_length=64)
    targets, _ = tokenizer.encode([t[::-1][:40] for t in texts], add_eos=False, max_length=40)
    pieces = [[tokenizer.id_to_piece(i) for i in seq] for seq in sources]
    scored = ctranslate2.Translator(str(out)).score_batch(
        [p[:-1] for p in pieces],  # add_source_eos: CTranslate2 appends EOS itself
        [[tokenizer.id_to_piece(i) for i in seq] for seq in targets],
    )
    expected = _attn_logprobs(model_dir, sources, targets)
    for result, want in zip(scored, expected, strict=True):
        assert len(result.log_probs) == len(want)
        np.testing.assert_allclose(result.log_probs, want, atol=1e-4)


def test_staged_directory_appears_whole_or_not_at_all(tmp_path) -> None:
    out = tmp_path / "out"
    with pytest.raises(OSError), staged_directory(out) as tmp:
        (tmp / "model.bin").write_bytes(b"half")
        raise OSError(28, "No space left on device")
    assert list(tmp_path.iterdir()) == []
    with staged_directory(out) as tmp:
        (tmp / "a").write_text("new")
    assert (out / "a").read_text() == "new"
    with pytest.raises(RuntimeError), staged_directory(out, overwrite=True) as tmp:
        raise RuntimeError("killed")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert (out / "a").read_text() == "new"
    with staged_directory(out, overwrite=True) as tmp:
        (tmp / "b").write_text("newer")
    assert [p.name for p in out.iterdir()] == ["b"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def _error(args: list[str], message: str, started: bool = False) -> None:
    """Exit 1 and the one line `Error: message`, after the progress line if `started`."""
    result = runner.invoke(app, ["export", *map(str, args)])
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert lines[-1] == f"Error: {message}"
    assert len(lines) == 1 + started and result.stderr.endswith("\n")
    assert result.stdout == ""


def test_export_errors_are_one_line(random_models, tmp_path) -> None:
    model = random_models["translate"]
    _error(
        ["-m", tmp_path / "nope", "--format", "onnx", "-o", tmp_path / "o"],
        f"model directory {tmp_path / 'nope'} does not exist",
    )
    _error(
        ["-m", tmp_path, "--format", "onnx", "-o", tmp_path / "o"],
        f"{tmp_path} is not an attn model directory (no config.json)",
    )
    (tmp_path / "exists").mkdir()
    _error(
        ["-m", model, "--format", "ctranslate2", "-o", tmp_path / "exists"],
        f"{tmp_path / 'exists'} already exists; pass --overwrite to replace it",
    )
    _error(
        ["-m", model, "--format", "ctranslate2", "-o", model],
        f"{model} holds the model being exported; choose another -o/--output",
    )
    _error(
        ["-m", random_models["sentiment"], "--format", "ctranslate2", "-o", tmp_path / "o"],
        "a sentiment model cannot be exported to CTranslate2 (it runs encoder-decoder models, "
        "not classifiers); use --format onnx",
    )
    _error(
        ["-m", model, "--format", "onnx", "--quantization", "int8", "-o", tmp_path / "o"],
        "--quantization applies to --format ctranslate2 only",
    )
    result = runner.invoke(app, ["export", "-m", str(model), "--format", "tflite", "-o", "x"])
    assert result.exit_code == 2
    assert not (tmp_path / "o").exists()


def test_export_without_the_extras_names_the_package(random_models, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ctranslate2", None)  # import fails
    _error(
        ["-m", random_models["translate"], "--format", "ctranslate2", "-o", tmp_path / "o"],
        "exporting to ctranslate2 needs the ctranslate2 package: pip install 'attn[export]'",
    )
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    _error(
        ["-m", random_models["translate"], "--format", "onnx", "-o", tmp_path / "o"],
        "exporting to onnx needs the onnxruntime package: pip install 'attn[export]'",
    )


def test_a_write_failing_half_way_leaves_nothing(random_models, tmp_path, monkeypatch) -> None:
    from attn.model.export import ctranslate2_model

    def fail_half_way(loaded, directory: Path, quantization) -> None:
        (directory / "model.bin").write_bytes(b"\0" * 100)
        raise OSError(28, "No space left on device", "config.json")

    monkeypatch.setattr(ctranslate2_model, "write_ctranslate2", fail_half_way)
    out = tmp_path / "out"
    _error(
        ["-m", random_models["translate"], "--format", "ctranslate2", "-o", out],
        "config.json: No space left on device",
        started=True,
    )
    assert list(tmp_path.iterdir()) == []


def test_overwrite_replaces_an_export(random_models, tmp_path) -> None:
    out = tmp_path / "ct2"
    out.mkdir()
    (out / "stale").write_text("x")
    model = str(random_models["translate"])
    args = ["-m", model, "--format", "ctranslate2", "-o", str(out), "--quantization", "int8"]
    result = runner.invoke(app, ["export", *args, "--overwrite"])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "Exported the translate model (int8)" in result.stderr
    assert not (out / "stale").exists()
    info = json.loads((out / "attn_export.json").read_text())
    assert info["weights"] == "int8" and info["model"]["task"] == "translate"
    assert [p.name for p in tmp_path.iterdir()] == ["ct2"]
