"""The training options for quality in a budget: subword sampling (`--subword-alpha`), the
moving average of the weights (`--ema`), averaging the last validations (`--average-last`),
and the defaults chosen from the data (`attn.model.training.defaults`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import quick, slice_translate, train_cli
from safetensors.torch import load_file
from torch import nn

from attn.data import demo_dir
from attn.model.nn.config import ModelConfig
from attn.model.storage.checkpoint import load_model, read_model_config
from attn.model.training.corpus import Sequences, Split, SubwordSampling
from attn.model.training.defaults import SMALL_CORPUS, choose_defaults
from attn.model.training.ema import WeightAverage
from attn.model.training.metrics_log import read_metrics
from attn.model.training.settings import TrainError, resolve_settings
from attn.model.training.train import train
from attn.tokenizer.sentencepiece import EOS_ID, Tokenizer

# --- subword sampling -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> Tokenizer:
    demo = demo_dir("translate")
    texts = [
        line
        for lang in ("en", "de")
        for line in (demo / f"train.{lang}").read_text(encoding="utf-8").splitlines()
    ]
    return Tokenizer.train(texts, tmp_path_factory.mktemp("spm") / "t.model", 600)


def _lines(n: int = 64) -> list[str]:
    return (demo_dir("translate") / "train.en").read_text(encoding="utf-8").splitlines()[:n]


def test_resample_changes_segmentations_but_never_the_text(tokenizer):
    texts = _lines()
    rows, _ = tokenizer.encode(texts)
    first = tokenizer.resample(rows, alpha=0.1, seed=7, max_length=256)
    # Other segmentations of the same texts, each ending in EOS.
    assert sum(a != b for a, b in zip(first, rows, strict=True)) > len(rows) // 4
    assert all(r[-1] == EOS_ID for r in first)
    assert tokenizer.decode(first) == tokenizer.decode(rows)
    # The same seed draws the same segmentations; another seed others.
    assert tokenizer.resample(rows, alpha=0.1, seed=7, max_length=256) == first
    assert tokenizer.resample(rows, alpha=0.1, seed=8, max_length=256) != first
    # A large alpha stays near the best segmentation.
    near = tokenizer.resample(rows, alpha=50.0, seed=7, max_length=256)
    assert sum(a != b for a, b in zip(near, rows, strict=True)) < sum(
        a != b for a, b in zip(first, rows, strict=True)
    )
    # Cut to max_length as encode cuts, EOS kept.
    short = tokenizer.resample(rows, alpha=0.1, seed=7, max_length=5)
    assert all(len(r) <= 5 and r[-1] == EOS_ID for r in short)
    # Encoding (what inference does) stays the one best segmentation after sampling.
    assert tokenizer.encode(texts)[0] == rows


def test_sampled_batches_are_the_same_for_the_same_draw(tokenizer):
    texts = _lines(32)
    src = Sequences.from_lists(iter([tokenizer.encode(texts)[0]]))
    tgt = Sequences.from_lists(iter([tokenizer.encode(texts[::-1])[0]]))
    split = Split(src, np.maximum(src.lengths, tgt.lengths), tgt=tgt)
    sampled = Split(src, split.lengths, tgt=tgt, sampling=SubwordSampling(tokenizer, 0.1, 0))
    config = ModelConfig(task="translate", vocab_size=tokenizer.vocab_size, max_length=64)
    index, cpu = list(range(32)), torch.device("cpu")
    plain = split.batch(index, config, cpu)
    a, b = sampled.batch(index, config, cpu, draw=3), sampled.batch(index, config, cpu, draw=3)
    other = sampled.batch(index, config, cpu, draw=4)
    assert torch.equal(a.src, b.src) and torch.equal(a.target, b.target)
    assert not torch.equal(a.src, other.src)
    assert a.src.shape != plain.src.shape or not torch.equal(a.src, plain.src)
    # The token counts are those of the sampled rows; the texts are the batch's own.
    assert a.n_src == int((a.src != 0).sum()) and a.n_tgt == int((a.target != 0).sum())
    assert tokenizer.decode(a.src) == tokenizer.decode(plain.src)
    assert tokenizer.decode(a.target) == tokenizer.decode(plain.target)


def test_subword_sampling_and_ema_resume_to_the_same_weights(tmp_path):
    data = slice_translate(tmp_path)
    opts = quick(data, subword_alpha=0.2, ema=0.9)
    whole, split, plain = tmp_path / "whole", tmp_path / "split", tmp_path / "plain"
    runs = (whole, split)
    train("translate", whole, {**opts, "max_steps": 12}, threads=1, device="cpu")
    train("translate", split, {**opts, "max_steps": 5}, threads=1, device="cpu")
    train("translate", split, {"max_steps": 12}, resume=True, threads=1, device="cpu")
    a, b = (
        load_file(str(whole / "last/model.safetensors")),
        load_file(str(split / "last/model.safetensors")),
    )
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6, msg=name)
    # The averages resume too.
    a, b = (torch.load(d / "last/trainer_state.pt", weights_only=True)["ema"] for d in runs)
    assert a["updates"] == b["updates"] == 12
    for x, y in zip(a["shadow"], b["shadow"], strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-6)
    # Sampling changes what is learned (other segmentations than the plain run's).
    train("translate", plain, {**quick(data, ema=0.9), "max_steps": 12}, threads=1, device="cpu")
    c = load_file(str(plain / "last/model.safetensors"))
    assert any(not torch.equal(c[name], load_file(str(whole / "last/model.safetensors"))[name])
               for name in c)  # fmt: skip


def test_a_model_trained_with_sampling_translates_deterministically(tmp_path):
    from attn.model.inference.pipeline import Translator

    data = slice_translate(tmp_path)
    model_dir = tmp_path / "m"
    train("translate", model_dir, quick(data, subword_alpha=0.1, max_steps=30), threads=1,
          device="cpu")  # fmt: skip
    translator = Translator.load(model_dir, device="cpu")
    texts = _lines(12)
    first = [r.text for r in translator.translate(texts, beam=1)]
    # Sampling in between (another run's training) does not reach inference.
    tok = translator.tokenizer
    tok.resample(tok.encode(texts)[0], alpha=0.1, seed=99, max_length=64)
    assert [r.text for r in translator.translate(texts, beam=1)] == first
    assert tok.encode(texts)[0] == Tokenizer.load(model_dir / "tokenizer.model").encode(texts)[0]


# --- the moving average of the weights -----------------------------------------------------


def test_weight_average_follows_the_formula_swaps_in_and_resumes():
    torch.manual_seed(0)
    layer = nn.Linear(3, 2)
    ema = WeightAverage(layer, decay=0.5)
    expected = [p.detach().clone() for p in layer.parameters()]
    for step in range(4):
        with torch.no_grad():
            for p in layer.parameters():
                p.add_(1.0 + step)
        rate = 1 - min(0.5, (1 + step) / (10 + step))
        ema.update()
        params = list(layer.parameters())
        expected = [e + rate * (p.detach() - e) for e, p in zip(expected, params, strict=True)]
    for avg, e in zip(ema.shadow, expected, strict=True):
        torch.testing.assert_close(avg, e)
    own = [p.detach().clone() for p in layer.parameters()]
    with ema.applied():
        for p, e in zip(layer.parameters(), expected, strict=True):
            torch.testing.assert_close(p.detach(), e)
    for p, o in zip(layer.parameters(), own, strict=True):
        assert torch.equal(p.detach(), o)
    other = WeightAverage(layer, decay=0.5)
    other.load_state_dict(ema.state_dict())
    assert other.updates == 4
    assert all(torch.equal(a, b) for a, b in zip(other.shadow, ema.shadow, strict=True))
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(layer, decay=1.0)


def test_ema_validates_and_keeps_the_average(tmp_path):
    data = slice_translate(tmp_path)
    model_dir = tmp_path / "m"
    train("translate", model_dir, quick(data, ema=0.9, max_steps=10, val_every=10), threads=1,
          device="cpu")  # fmt: skip
    state = torch.load(model_dir / "last/trainer_state.pt", weights_only=True)
    shadow = state["ema"]["shadow"]
    assert state["ema"]["updates"] == 10
    best = load_file(str(model_dir / "model.safetensors"))
    raw = load_file(str(model_dir / "last/model.safetensors"))
    loaded = load_model(model_dir, device="cpu").model
    names = [n for n, p in loaded.named_parameters() if p.requires_grad]
    assert len(names) == len(shadow)
    for name, avg in zip(names, shadow, strict=True):
        if name in best:  # (tied weights are saved once)
            assert torch.equal(best[name], avg), name
    # The average is not the trained weights themselves.
    assert any(not torch.equal(best[n], raw[n]) for n in best)
    # Step checkpoints (for attn average) hold what was validated: the average.
    train("translate", model_dir, {"max_steps": 12, "keep_checkpoints": 1}, resume=True,
          threads=1, device="cpu")  # fmt: skip
    state = torch.load(model_dir / "last/trainer_state.pt", weights_only=True)
    kept = load_file(str(model_dir / "checkpoints/step-000012.safetensors"))
    for name, avg in zip(names, state["ema"]["shadow"], strict=True):
        if name in kept:
            assert torch.equal(kept[name], avg), name


# --- averaging the last validations --------------------------------------------------------


@pytest.mark.parametrize("better", [True, False])
def test_average_last_keeps_the_mean_of_the_checkpoints_when_it_validates_better(
    tmp_path, monkeypatch, better
):
    from attn.model.training import validation

    calls = []

    def scores(self, model, limit=None):
        if limit is not None:  # the check before the first step
            return {"val_loss": 1.0, "bleu": 0.0}
        calls.append(1)
        # Three validations score 1, 2, 3; the average scores 4 (better) or 0.
        value = float(len(calls)) if len(calls) <= 3 else (4.0 if better else 0.0)
        return {"val_loss": 1.0, "bleu": value}

    monkeypatch.setattr(validation.Validator, "scores", scores)
    data = slice_translate(tmp_path)
    model_dir = tmp_path / "m"
    train("translate", model_dir, quick(data, max_steps=15, val_every=5, average_last=3),
          threads=1, device="cpu")  # fmt: skip
    steps = [
        load_file(str(model_dir / f"checkpoints/step-{s:06d}.safetensors")) for s in (5, 10, 15)
    ]
    best = load_file(str(model_dir / "model.safetensors"))
    _, meta = read_model_config(model_dir)
    if better:
        for name in best:
            torch.testing.assert_close(best[name], sum(s[name] for s in steps) / 3)
        assert meta["averaged"] == {"steps": [5, 10, 15]}
        assert meta["best"]["value"] == 4.0
        load_model(model_dir, device="cpu")  # a loadable model
    else:
        assert all(torch.equal(best[n], steps[2][n]) for n in best)
        assert "averaged" not in meta and meta["best"]["value"] == 3.0


def test_average_last_settings():
    s = resolve_settings({"data": "d", "average_last": 4, "keep_checkpoints": 2})
    assert s.kept_checkpoints == 4
    with pytest.raises(TrainError, match="average_last"):
        resolve_settings({"data": "d", "average_last": 1})
    with pytest.raises(TrainError, match="ema must be below 1"):
        resolve_settings({"data": "d", "ema": 1.0})


# --- R-Drop ----------------------------------------------------------------------------------


def _r_drop_cases():
    """A tiny translation model with a batch, and a tiny sentiment model with its bag."""
    from attn.model.nn.model import build_model

    torch.manual_seed(0)
    small = {"vocab_size": 40, "d_model": 16, "n_heads": 2, "d_ff": 32, "dropout": 0.3}
    mt = build_model(ModelConfig(n_encoder_layers=1, n_decoder_layers=1, **small))
    src = torch.randint(4, 40, (3, 7))
    tgt = torch.randint(4, 40, (3, 6))
    tgt[0, 4:] = 0  # padding, which the loss skips
    sa = build_model(ModelConfig(task="sentiment", n_encoder_layers=1, ngram_buckets=128,
                                 labels=("neg", "pos"), **small))  # fmt: skip
    with torch.no_grad():
        sa.ngrams.ratios.normal_()  # as if counted from training data (zero: no gradient)
    return [(mt, (src, tgt, tgt.roll(-1, 1))), (sa, (src, torch.zeros(0), torch.tensor([0, 1, 1])))]


@pytest.mark.parametrize("case", [0, 1], ids=["translate", "sentiment"])
def test_r_drop_without_dropout_is_the_plain_loss(case):
    from attn.model.training.objective import Objective

    model, batch = _r_drop_cases()[case]
    model.eval()  # no dropout: the two passes agree, their divergence is 0
    plain = Objective(model, 0.1)(*batch)
    torch.testing.assert_close(Objective(model, 0.1, r_drop=5.0)(*batch), plain)


@pytest.mark.parametrize("case", [0, 1], ids=["translate", "sentiment"])
def test_r_drop_adds_the_weighted_divergence_of_two_dropout_passes(case):
    from attn.model.training.objective import Objective

    model, batch = _r_drop_cases()[case]
    model.train()

    def loss(weight: float) -> torch.Tensor:
        torch.manual_seed(1)  # the same dropout masks for every weight
        return Objective(model, 0.1, r_drop=weight)(*batch)

    one, two, three = loss(1.0), loss(2.0), loss(3.0)
    assert two > one  # two dropout masks disagree: a positive divergence
    torch.testing.assert_close(three - one, 2 * (two - one))
    two.backward()  # and it trains: every weight the batch reaches gets a gradient
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for n, p in model.named_parameters() if "embed" not in n)  # fmt: skip


def test_r_drop_projecting_the_padding_too_gives_the_same_loss(monkeypatch):
    # On a GPU the loss projects every position and weights the padding out (no boolean
    # index, which would wait for the host); on the CPU it projects only the kept ones.
    from attn.model.training import objective

    model, batch = _r_drop_cases()[0]
    model.train()

    def loss() -> torch.Tensor:
        torch.manual_seed(1)  # the same dropout masks
        return objective.Objective(model, 0.1, r_drop=2.0)(*batch)

    kept = loss()
    monkeypatch.setattr(objective, "select_rows", lambda device: False)
    torch.testing.assert_close(loss(), kept)


def test_r_drop_trains_a_sentiment_model_that_learns(tmp_path):
    result = train_cli("sentiment", "--model-dir", str(tmp_path / "m"), "--r-drop", "1",
                       "--threads", "2")  # fmt: skip
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["train"]["r_drop"] == 1.0
    final = read_metrics(tmp_path / "m")[-1]
    assert final["accuracy"] >= 95, final
    with pytest.raises(TrainError, match="r_drop"):
        resolve_settings({"data": "d", "r_drop": -1.0})


# --- defaults that fit the data -------------------------------------------------------------


def test_the_defaults_chooser_is_deterministic_and_fits_task_size_and_budget():
    small = choose_defaults("translate", 4 << 20, {"time_budget": 1500.0})
    assert small == choose_defaults("translate", 4 << 20, {"time_budget": 1500.0})
    assert small.values["preset"] == "small" and small.values["lr"] == 2.5e-3
    assert "25 min budget" in small.line() and "preset small" in small.line()
    assert choose_defaults("translate", 4 << 20, {"time_budget": 120.0}).values["preset"] == "tiny"
    summarize = choose_defaults("summarize", 10 << 20, {"time_budget": 1620.0})
    assert summarize.values["preset"] == "tiny"
    assert summarize.values["overrides"]["max_length"] == 256
    # With no budget or a long one, the data chooses max_length.
    for options in ({}, {"time_budget": 4 * 3600.0}):
        overrides = choose_defaults("summarize", 10 << 20, options).values["overrides"]
        assert "max_length" not in overrides
    sentiment = choose_defaults("sentiment", 30 << 20, {})
    assert sentiment.values["overrides"]["ngram_buckets"] > 0
    # A large corpus keeps the plain data defaults.
    assert choose_defaults("translate", SMALL_CORPUS + 1, {}).values == {}


def test_every_option_given_overrides_the_chosen_defaults():
    options = {"data": "d", "lr": 1e-4, "preset": "tiny", "overrides": {"dropout": 0.3}}
    chosen = choose_defaults("translate", 4 << 20, options)
    assert "lr" not in chosen.values and "preset" not in chosen.values
    assert "dropout" not in chosen.values.get("overrides", {})
    s = resolve_settings(options, chosen=chosen.values)
    assert (s.lr, s.preset, s.overrides["dropout"]) == (1e-4, "tiny", 0.3)
    assert s.warmup == chosen.values["warmup"] == 600 and s.ema == chosen.values["ema"]
    # The chosen model fields lie under the user's own.
    given = {"data": "d", "time_budget": 1620.0, "overrides": {"dropout": 0.2}}
    summarize = choose_defaults("summarize", 4 << 20, given)
    s = resolve_settings(given, task="summarize", chosen=summarize.values)
    assert s.overrides == {"dropout": 0.2, "max_length": 256}


def test_cli_prints_the_chosen_defaults_and_config_records_them(tmp_path):
    data = slice_translate(tmp_path)
    model_dir = tmp_path / "m"
    result = train_cli(
        "translate", "--data", str(data), "--model-dir", str(model_dir), "--max-steps", "2",
        "--val-every", "2", "--vocab-size", "400", "--batch-tokens", "512", "--lr", "1e-3",
        "--threads", "1",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if x.startswith("Defaults for"))
    assert "small corpus" in line and "preset small" in line and "lr" not in line
    meta = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    assert meta["defaults"]["values"]["preset"] == "small"
    assert meta["train"]["lr"] == 1e-3 and meta["train"]["warmup"] == 600
    # Resumed: the record stays.
    result = train_cli("translate", "--model-dir", str(model_dir), "--resume", "--max-steps", "3")
    assert result.exit_code == 0, result.output
    again = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    assert again["defaults"] == meta["defaults"]


def test_the_demo_corpus_gets_no_chosen_defaults(tmp_path):
    result = train_cli("translate", "--model-dir", str(tmp_path / "m"), "--max-steps", "1",
                       "--val-every", "1", "--threads", "1")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Defaults for" not in result.output
    assert "defaults" not in json.loads((tmp_path / "m/config.json").read_text(encoding="utf-8"))


# --- the linear decay ------------------------------------------------------------------------


def test_linear_decay_warms_up_then_falls_to_zero_at_the_end_of_the_run(tmp_path):
    from attn.model.training.schedule import lr_at

    assert lr_at(5, 1e-3, 10, "linear", done=0.05) == pytest.approx(0.5e-3 * 0.95)
    assert lr_at(50, 1e-3, 10, "linear", done=0.5) == pytest.approx(0.5e-3)
    assert lr_at(100, 1e-3, 10, "linear", done=1.0) == 0.0
    assert lr_at(100, 1e-3, 0, "linear", done=0.25) == pytest.approx(0.75e-3)
    data = slice_translate(tmp_path)
    opts = quick(data, decay="linear", lr=1e-3, max_steps=20, val_every=10)
    train("translate", tmp_path / "m", opts, threads=1, device="cpu")
    lrs = [r["lr"] for r in read_metrics(tmp_path / "m")]
    assert lrs == [pytest.approx(0.5e-3), 0.0]
    with pytest.raises(TrainError, match="decay must be one of"):
        resolve_settings({"data": "d", "decay": "cosine"})


def test_cooldown_decay_follows_inverse_sqrt_then_falls_to_zero_over_the_last_fifth(tmp_path):
    from attn.model.training.schedule import lr_at

    for step, done in ((5, 0.05), (40, 0.4), (80, 0.8)):  # warmup, then inverse-sqrt
        expected = lr_at(step, 1e-3, 10, "inverse-sqrt")
        assert lr_at(step, 1e-3, 10, "cooldown", done) == pytest.approx(expected)
    assert lr_at(90, 1e-3, 10, "cooldown", done=0.9) == pytest.approx(
        0.5 * lr_at(90, 1e-3, 10, "inverse-sqrt")
    )
    assert lr_at(100, 1e-3, 10, "cooldown", done=1.0) == 0.0
    data = slice_translate(tmp_path)
    opts = quick(data, decay="cooldown", lr=1e-3, warmup=5, max_steps=20, val_every=10)
    train("translate", tmp_path / "m", opts, threads=1, device="cpu")
    lrs = [r["lr"] for r in read_metrics(tmp_path / "m")]
    assert lrs == [pytest.approx(1e-3 * (5 / 10) ** 0.5), 0.0]


@pytest.mark.parametrize(
    ("recipe", "task"),
    [("multi30k-en-de", "translate"), ("dialogsum", "summarize"), ("imdb", "sentiment")],
)
def test_a_run_without_a_recipe_gets_the_recipes_settings(recipe, task):
    import tomllib

    from attn.cli.commands.train import parse_duration

    raw = tomllib.loads((Path(__file__).parents[1] / f"recipes/{recipe}.toml").read_text("utf-8"))
    raw = {k: v for k, v in raw.items() if k not in ("model_dir", "data", "src", "tgt", "seed")}
    raw["overrides"] = raw.pop("set", {})
    raw["time_budget"] = parse_duration(raw["time_budget"])
    size = 8 << 20  # a small corpus, as each recipe's dataset is

    def settings(options):
        chosen = choose_defaults(task, size, options).values
        return resolve_settings(options, task=task, chosen=chosen)

    plain = {"data": "d", "time_budget": raw["time_budget"]}
    assert settings(plain) == settings({"data": "d", **raw})


# --- the arithmetic of the training step ----------------------------------------------------


def test_precision_modes_on_the_cpu(monkeypatch):
    from attn.model.training import precision

    cpu = torch.device("cpu")
    assert precision.Precision(cpu, "float32").dtype is None
    assert precision.Precision(cpu, "bfloat16").dtype is torch.bfloat16
    for native, name in ((True, "bfloat16"), (False, "float32")):
        monkeypatch.setattr(precision, "cpu_has_bf16", lambda native=native: native)
        auto = precision.Precision(cpu, "auto")
        assert auto.name == name and auto.scaler is None
    # With AMX, auto keeps a model narrower than `small` in float32; bfloat16 when asked.
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    for amx, width, name in (
        (True, 128, "float32"),
        (True, 256, "bfloat16"),
        (True, None, "bfloat16"),
        (False, 128, "bfloat16"),
    ):
        monkeypatch.setattr(precision, "cpu_has_amx", lambda amx=amx: amx)
        assert precision.Precision(cpu, "auto", width).name == name, (amx, width)
        assert precision.Precision(cpu, "bfloat16", width).name == "bfloat16"
    widths = {"tiny": 128, "small": 256, "base": 512}
    for preset, width in widths.items():
        chosen = resolve_settings({"data": "d", "preset": preset})
        assert precision.model_width("summarize", chosen) == width
        assert precision.model_width("sentiment", chosen) is None
    wider = resolve_settings({"data": "d", "preset": "tiny", "overrides": {"d_model": 384}})
    assert precision.model_width("translate", wider) == 384
    assert precision.model_width("translate", resolve_settings({"data": "d", "init": "m"})) is None
    with pytest.raises(TrainError, match="not supported on meta"):
        precision.Precision(torch.device("meta"), "bfloat16")
    for unknown in (
        lambda: resolve_settings({"data": "d", "precision": "float16"}),
        lambda: precision.Precision(cpu, "float16"),
    ):
        with pytest.raises(TrainError, match="precision must be one of auto, float32, bfloat16"):
            unknown()


# A bfloat16 product over 1,100 shapes, then the first shape again: oneDNN's verbose log
# says whether it still had that kernel (`cache_hit`) or built it anew (`cache_miss`).
KERNEL_CACHE_PROBE = """
import sys, torch
from attn.model.device import apply_process_settings
apply_process_settings("cpu", 1, training=sys.argv[1] == "train")
w = torch.randn(32, 16, dtype=torch.bfloat16)
for rows in [*range(16, 1116), 16]:
    torch.randn(rows, 32, dtype=torch.bfloat16) @ w
"""


@pytest.mark.parametrize("run", ["train", "translate"])
def test_a_training_process_keeps_more_than_onednns_1024_kernels(run, tmp_path):
    """The training batches' shapes and validation's decoding outgrew oneDNN's cache (1,024
    kernels by default), which slowed every step after a validation; training keeps 16,384."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("ONEDNN_")}
    env["ONEDNN_VERBOSE"] = "profile_create"
    out = subprocess.run(
        [sys.executable, "-c", KERNEL_CACHE_PROBE, run],
        capture_output=True, text=True, env=env, check=True, cwd=tmp_path,
    ).stdout  # fmt: skip
    created = [line for line in out.splitlines() if ",create:cache_" in line]
    if len(created) < 1101:
        pytest.skip("this CPU runs bfloat16 products outside oneDNN")
    assert ",create:cache_miss," in created[0]
    last = "hit" if run == "train" else "miss"
    assert f",create:cache_{last}," in created[-1], created[-1]


def test_bfloat16_training_tracks_float32_and_keeps_float32_weights(tmp_path):
    data = slice_translate(tmp_path)
    logs: dict[str, list[dict]] = {}
    for mode in ("float32", "bfloat16"):
        events: list[dict] = []
        train("translate", tmp_path / mode, quick(data, precision=mode, max_steps=100),
              threads=1, device="cpu", on_event=events.append)  # fmt: skip
        start = next(e for e in events if e["event"] == "start")
        assert start["precision"] == mode
        weights = load_file(str(tmp_path / mode / "model.safetensors"))
        assert {w.dtype for w in weights.values()} == {torch.float32}
        logs[mode] = [e for e in events if e["event"] in ("log", "validation")]
    f32, b16 = ([e.get("loss", e.get("val_loss")) for e in logs[m]] for m in logs)
    assert len(f32) == len(b16) == 3  # the loss at steps 50 and 100, the val loss at 100
    # Both learn, and by about as much: the lower-precision products change little ...
    assert b16[1] < 0.8 * b16[0] and f32[1] < 0.8 * f32[0]
    assert abs(b16[1] - f32[1]) < 0.05 * f32[1] and abs(b16[2] - f32[2]) < 0.05 * f32[2]
    # ... but they do change something: autocast was on.
    assert b16 != f32
