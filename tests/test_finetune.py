"""`attn train --init`: fine-tuning a trained model on new data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import slice_sentiment, slice_translate, train_cli
from safetensors.torch import load_file

from attn.model.storage.checkpoint import read_model_config
from attn.model.training.metrics_log import read_metrics
from attn.model.training.settings import TrainError, resolve_settings
from attn.model.training.train import train


def weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(model_dir / "model.safetensors"))


def test_settings_take_the_init_models_size_under_the_users_overrides():
    init = {"preset": "tiny", "vocab_size": 360, "overrides": {"dropout": 0.1, "max_length": 64}}
    s = resolve_settings(
        {"data": "d", "init": "m", "overrides": {"dropout": 0.3}}, task="sentiment", init=init
    )
    assert (s.preset, s.vocab_size) == ("tiny", 360)
    assert s.overrides == {"dropout": 0.3, "max_length": 64}
    # The same preset may be named; another one cannot apply to the init model's weights.
    assert resolve_settings({"preset": "tiny", "init": "m"}, task="sentiment", init=init)
    with pytest.raises(TrainError, match="preset comes from the --init model"):
        resolve_settings({"preset": "small", "init": "m"}, task="sentiment", init=init)
    with pytest.raises(TrainError, match="vocab_size comes from the --init model"):
        resolve_settings({"vocab_size": 8000, "init": "m"}, task="sentiment", init=init)


def test_fine_tuning_starts_from_the_init_models_weights_and_tokenizer(sentiment_model, tmp_path):
    out = tmp_path / "tuned"
    # One update at a negligible learning rate: the model validated is the init model.
    result = train(
        "sentiment",
        out,
        {"init": str(sentiment_model), "max_steps": 1, "lr": 1e-12, "warmup": 0},
        threads=1,
        device="cpu",
    )
    before, after = weights(sentiment_model), weights(out)
    assert before.keys() == after.keys()
    for name in before:
        torch.testing.assert_close(after[name], before[name], rtol=0, atol=1e-6, msg=name)
    # A fresh model after one step is at chance; this one keeps the init model's accuracy.
    # Both values as validation computed them (metrics.jsonl rounds to 4 places): the init
    # model's weights are those of its best validation.
    init_best = json.loads((sentiment_model / "config.json").read_text(encoding="utf-8"))["best"]
    assert init_best["metric"] == "accuracy"
    assert result.best_value == pytest.approx(init_best["value"], abs=1e-6)
    assert result.best_value >= 95
    assert read_metrics(out)[-1]["accuracy"] == pytest.approx(result.best_value, abs=1e-4)
    assert (out / "tokenizer.model").read_bytes() == (
        sentiment_model / "tokenizer.model"
    ).read_bytes()
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert config["train"]["init"] == str(sentiment_model)
    assert config["train"]["preset"] == "tiny"
    # A resumed fine-tuning run keeps its init model.
    with pytest.raises(TrainError, match="init is fixed when resuming"):
        train("sentiment", out, {"init": str(tmp_path)}, resume=True, threads=1, device="cpu")


def test_fine_tuning_transfers_what_the_init_model_learned(sentiment_model, tmp_path):
    data = slice_sentiment(tmp_path, n_train=200)
    opts = {"data": str(data), "batch_tokens": 512, "warmup": 5, "max_steps": 10, "val_every": 10}
    common = {"threads": 1, "device": "cpu"}
    tuned = train("sentiment", tmp_path / "tuned", {**opts, "init": str(sentiment_model)}, **common)
    fresh = train("sentiment", tmp_path / "fresh", {**opts, "preset": "tiny"}, **common)
    # Ten steps on 200 reviews teach a fresh model little; the tuned one starts trained.
    assert tuned.best_value >= 90, tuned
    assert fresh.best_value <= 75, fresh
    assert tuned.best_value - fresh.best_value >= 15


def test_fine_tuning_a_translation_model_builds_its_shortlist_with_the_init_tokenizer(
    translate_model, tmp_path
):
    from attn.model.decoding.shortlist import Shortlist

    data = slice_translate(tmp_path, n_train=100)
    out = tmp_path / "tuned"
    opts = {"data": str(data), "init": str(translate_model), "max_steps": 2, "batch_tokens": 512}
    train("translate", out, opts, threads=1, device="cpu")
    assert (out / "tokenizer.model").read_bytes() == (
        translate_model / "tokenizer.model"
    ).read_bytes()
    # Counted on the new pairs (not copied), in the init model's piece ids.
    vocab = read_model_config(out)[0].vocab_size
    tuned = Shortlist.load(out / "shortlist.safetensors", vocab)
    init = Shortlist.load(translate_model / "shortlist.safetensors", vocab)
    assert not torch.equal(tuned.by_source, init.by_source)


@pytest.mark.parametrize(
    ("task", "extra", "message"),
    [
        ("sentiment", ["--set", "d_model=64", "--set", "dropout=0.2"], "--set d_model would"),
        ("sentiment", ["--preset", "small"], "preset comes from the --init model"),
        ("sentiment", ["--labels"], "classifies into labels negative, positive"),
        ("translate", [], "holds a sentiment model, not a translate model"),
    ],
)
def test_cli_refuses_what_cannot_fine_tune_the_init_model(
    sentiment_model, tmp_path, task, extra, message
):
    model = tmp_path / "m"
    if extra == ["--labels"]:
        data = tmp_path / "other.tsv"
        data.write_text("text\tlabel\ngood film\tpos\nbad film\tneg\n", encoding="utf-8")
        extra = ["--train", str(data), "--val", str(data)]
    result = train_cli(task, "--init", str(sentiment_model), "--model-dir", str(model), *extra)
    assert result.exit_code == 1, result.output
    assert result.output.splitlines()[-1].startswith("Error:"), result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (model / "config.json").exists()


def test_cli_refuses_an_init_model_that_is_missing_or_the_output_itself(sentiment_model, tmp_path):
    result = train_cli(
        "sentiment", "--init", str(tmp_path / "none"), "--model-dir", str(tmp_path / "m")
    )
    assert result.exit_code == 1, result.output
    assert "Error: --init: model directory" in result.output and "does not exist" in result.output
    before = weights(sentiment_model)
    args = ["--init", str(sentiment_model), "--model-dir", str(sentiment_model), "--overwrite"]
    result = train_cli("sentiment", *args)
    assert result.exit_code == 1, result.output
    assert "is the model directory itself" in result.output
    after = weights(sentiment_model)
    assert all(torch.equal(before[k], after[k]) for k in before)
    # A model whose weights do not load is refused before the data is read.
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "tokenizer.model"):
        (broken / name).write_bytes((sentiment_model / name).read_bytes())
    (broken / "model.safetensors").write_bytes(b"not weights")
    result = train_cli("sentiment", "--init", str(broken), "--model-dir", str(tmp_path / "m"))
    assert result.exit_code == 1, result.output
    (line,) = result.output.splitlines()  # no "reading data" before it
    assert line.startswith(f"Error: cannot start from {broken}: ")
    assert "model.safetensors: not a readable safetensors file" in line
    assert not (tmp_path / "m").exists()
