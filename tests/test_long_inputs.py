"""Inputs longer than the model: the length chosen at preparation, and summaries and
sentiment that take the whole input (`attn.model.inference.long_inputs`) unless told to cut.

The models here are trained for a few steps only: what is tested is which pieces reach the
model, not what it makes of them.
"""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import require_extra
from typer.testing import CliRunner

from attn.cli.main import app
from attn.data import demo_dir
from attn.model.training.train import train

SMALL = 32  # the models' max_length, in pieces
FACT = "Zebulon fed the purple walrus"


def _demo_lines(task: str, name: str) -> list[str]:
    return (demo_dir(task) / name).read_text(encoding="utf-8").splitlines()


def _options(**extra) -> dict:
    return {
        "preset": "tiny",
        "vocab_size": 400,
        "batch_tokens": 1024,
        "warmup": 1,
        "max_steps": 2,
        "val_every": 1000,
        "seed": 0,
        **extra,
    }


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """A summarize and a sentiment model on the demo corpora, max_length 32."""
    root = tmp_path_factory.mktemp("long")
    out = {}
    for task in ("summarize", "sentiment"):
        opts = _options(overrides={"max_length": SMALL})
        train(task, root / task, opts, threads=1, device="cpu")
        out[task] = root / task
    return out


def _long_text(task: str, n: int = 12) -> str:
    """A text of `n` demo inputs, the fact last: many times max_length."""
    if task == "summarize":
        lines = _demo_lines("summarize", "val.src")[:n]
    else:
        lines = [row.split("\t")[0] for row in _demo_lines("sentiment", "val.tsv")[1 : n + 1]]
    return " ".join(lines) + f" {FACT}."


def _record_inputs(monkeypatch, task: str) -> list[torch.Tensor]:
    """What the model receives: the source ids of every batch."""
    seen: list[torch.Tensor] = []
    if task == "summarize":
        import attn.model.inference.pipeline as pipeline

        search = pipeline.generate

        def recording(model, src, mask, *args, **kwargs):
            seen.extend(row[m] for row, m in zip(src.cpu(), mask.cpu(), strict=True))
            return search(model, src, mask, *args, **kwargs)

        monkeypatch.setattr(pipeline, "generate", recording)
    else:
        from attn.model.nn.model import Classifier

        classify = Classifier.classify

        def recording(self, src, mask, *args, **kwargs):
            seen.extend(row[m] for row, m in zip(src.cpu(), mask.cpu(), strict=True))
            return classify(self, src, mask, *args, **kwargs)

        monkeypatch.setattr(Classifier, "classify", recording)
    return seen


def _reached(seen: list[torch.Tensor], tokenizer, text: str) -> bool:
    """Whether the pieces of `text` reached the model in one of its inputs."""
    (ids,), _ = tokenizer.encode([text], add_eos=False)
    for row in seen:
        row = row.tolist()
        if any(row[i : i + len(ids)] == ids for i in range(len(row) - len(ids) + 1)):
            return True
    return False


def _run(task: str, model: Path, stdin: str, *extra: str):
    args = [task, "-m", str(model), *extra]
    if task == "summarize":
        args += ["--beam", "1", "--max-length", "4"]
    result = CliRunner().invoke(app, args, input=stdin)
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.parametrize("task", ["summarize", "sentiment"])
def test_the_last_part_of_a_long_input_reaches_the_model(models, monkeypatch, task) -> None:
    from attn.tokenizer import Tokenizer

    tokenizer = Tokenizer.load(models[task] / "tokenizer.model")
    text = _long_text(task)
    assert len(tokenizer.encode([text])[0][0]) > 6 * SMALL
    seen = _record_inputs(monkeypatch, task)
    _run(task, models[task], f"{text}\n")
    assert seen and max(len(row) for row in seen) <= SMALL
    assert _reached(seen, tokenizer, FACT)  # nothing is cut
    seen.clear()
    _run(task, models[task], f"{text}\n", "--max-input", "cut")
    assert seen and not _reached(seen, tokenizer, FACT)  # the model's cut drops the end


@pytest.mark.parametrize("task", ["summarize", "sentiment"])
def test_the_warning_counts_and_names_the_lines(models, task) -> None:
    text = _long_text(task, 6)
    result = _run(task, models[task], f"short.\n{text}\n\n{text}\nshort too.\n")
    assert len(result.stdout.splitlines()) == 5
    assert "<stdin>:2, 4: 2 lines longer than the model's max_length (32 pieces)" in result.stderr
    assert "truncated" not in result.stderr
    cut = _run(task, models[task], f"short.\n{text}\n", "--max-input", "cut")
    assert "truncated" in cut.stderr and "lines longer" not in cut.stderr


def test_max_input_cut_gives_the_cut_output(models) -> None:
    from attn import SentimentClassifier, Summarizer

    summarizer = Summarizer.load(models["summarize"], device="cpu")
    texts = ["Tom went home.", _long_text("summarize", 6), ""]
    cut = list(summarizer.generate(texts, beam=1, max_length=4))  # the model's own cut
    stdin = "".join(f"{t}\n" for t in texts)
    out = _run("summarize", models["summarize"], stdin, "--max-input", "cut").stdout
    assert out.splitlines() == [r.text for r in cut]
    whole = list(summarizer.summarize(texts, beam=1, max_length=4))
    assert [r.split_further for r in whole] == [False, True, False]
    assert whole[0].text == cut[0].text and not whole[1].truncated and cut[1].truncated

    classifier = SentimentClassifier.load(models["sentiment"], device="cpu")
    texts = ["I liked it.", _long_text("sentiment", 6)]
    cut_c = list(classifier.classify(texts, max_input="cut"))
    whole_c = list(classifier.classify(texts))
    assert cut_c[1].truncated and whole_c[1].split_further and not whole_c[1].truncated
    # (in other batches: equal to float tolerance)
    assert whole_c[0].probs == pytest.approx(cut_c[0].probs, abs=1e-5)
    assert sum(whole_c[1].probs.values()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="max_input"):
        classifier.classify(texts, max_input="middle")


@pytest.mark.parametrize("task", ["summarize", "sentiment"])
def test_the_server_takes_max_input(models, monkeypatch, task) -> None:
    require_extra("serve", "fastapi", "uvicorn")
    from test_serve import request, running

    from attn.model.inference.pipeline import load_pipeline
    from attn.server.app import create_app
    from attn.tokenizer import Tokenizer

    tokenizer = Tokenizer.load(models[task] / "tokenizer.model")
    text = _long_text(task)
    body = {"text": text} | ({"beam": 1, "max_length": 4} if task == "summarize" else {})
    seen = _record_inputs(monkeypatch, task)
    with running(create_app({task: load_pipeline(task, models[task], device="cpu")})) as base:
        status, answer = request(base, f"/{task}", body)
        assert status == 200 and answer["source"] == text
        assert seen and _reached(seen, tokenizer, FACT)  # whole, by default
        seen.clear()
        status, answer = request(base, f"/{task}", body | {"max_input": "cut"})
        assert status == 200 and answer["source"] == text
        assert seen and not _reached(seen, tokenizer, FACT)
        status, answer = request(base, f"/{task}", {"text": "Hi.", "max_input": "middle"})
        assert status == 422 and "max_input" in answer["error"]


def test_parts_cover_the_text_and_fit(models) -> None:
    from attn import Summarizer
    from attn.model.inference.long_inputs import PartSplitter

    summarizer = Summarizer.load(models["summarize"], device="cpu")
    splitter = PartSplitter(summarizer.tokenizer, SMALL)
    turns = [
        f"#Person{i % 2 + 1}#: {line}"
        for i, line in enumerate(_demo_lines("summarize", "val.src")[:8])
    ]
    for text in ("\n".join(turns), " ".join(turns), _long_text("summarize")):
        spans = splitter.parts(text)
        assert len(spans) > 1 and all(splitter.fits(text[a:b]) for a, b in spans)
        assert "".join(text[a:b] for a, b in spans).replace(" ", "").replace("\n", "") == (
            text.replace(" ", "").replace("\n", "")
        )
    # A dialogue of turns that fit is cut between turns, one a line or run together.
    short = [
        f"#Person{i % 2 + 1}#: {line}"
        for i, line in enumerate(_demo_lines("summarize", "val.tgt")[:40])
    ]
    short = [turn for turn in short if splitter.fits(turn)][:12]
    assert len(short) == 12
    for text in ("\n".join(short), " ".join(short)):
        spans = splitter.parts(text)
        assert len(spans) > 1 and all(text[a:b].startswith("#Person") for a, b in spans)


def test_windows_cover_every_piece() -> None:
    from attn.model.inference.long_inputs import window_starts

    for n, room in ((40, 31), (31 * 5 + 3, 31), (100, 7), (32, 31)):
        starts = window_starts(n, room)
        covered = set()
        for s in starts:
            covered.update(range(s, min(n, s + room)))
        assert covered == set(range(n)) and starts[-1] + room == n
        assert all(b - a == room // 2 for a, b in itertools.pairwise(starts[:-1]))


def test_length_choice_helpers() -> None:
    from attn.model.training.lengths import (
        LengthHistogram,
        choose_max_length,
        covering_length,
        length_cap,
    )

    lengths = np.arange(1, 1001)
    assert covering_length(lengths) == 990
    assert choose_max_length([lengths, np.array([5, 6])], cap=2048) == 992
    assert choose_max_length([lengths], cap=512) == 512  # the cap wins
    assert choose_max_length([np.array([10, 20])], cap=2048) == 256  # never below the default
    assert length_cap("tiny", 4096) == 1024 and length_cap("base", 4096) == 1024
    assert length_cap("base", 16384) == 2048 and length_cap("tiny", 512) == 256
    histogram = LengthHistogram()
    histogram.add(lengths[:500])
    histogram.add(lengths[500:])
    assert histogram.summary(900) == {"median": 500, "p99": 990, "max": 1000, "over": 100}


def test_the_chosen_length_holds_99_percent_of_the_corpus(tmp_path: Path) -> None:
    from attn.tokenizer import Tokenizer

    rng = random.Random(0)
    src, tgt = _demo_lines("summarize", "train.src"), _demo_lines("summarize", "train.tgt")
    data = tmp_path / "data"
    data.mkdir()
    rows = [(" ".join(src[i : i + rng.choice([1, 2, 8, 14])]), tgt[i]) for i in range(300)]
    (data / "train.src").write_text("".join(f"{s}\n" for s, _ in rows), encoding="utf-8")
    (data / "train.tgt").write_text("".join(f"{t}\n" for _, t in rows), encoding="utf-8")
    events: list[dict] = []
    model = tmp_path / "model"
    train("summarize", model, _options(data=str(data), batch_tokens=4096), threads=1,
          device="cpu", on_event=events.append)  # fmt: skip
    meta = json.loads((model / "config.json").read_text())
    chosen = meta["model"]["max_length"]
    lengths = meta["data"]["lengths"]
    assert lengths["chosen"] == chosen and 256 < chosen <= lengths["cap"] == 1024
    assert chosen % 8 == 0
    tokenizer = Tokenizer.load(model / "tokenizer.model")
    for side in (0, 1):  # the training rows (the held-out ones included): >= 99% fit
        ids, _ = tokenizer.encode([row[side] for row in rows])
        sizes = np.array([len(i) for i in ids])
        assert np.mean(sizes <= chosen) >= 0.99
    # No longer than needed: the training sources' 99th percentile, rounded up to 8.
    assert lengths["src"]["p99"] <= chosen < lengths["src"]["p99"] + 8
    prepared = next(e for e in events if e["event"] == "prepared")
    assert prepared["lengths"]["src"]["median"] > 0
    # A given max_length is kept.
    given = tmp_path / "given"
    opts = _options(data=str(data), batch_tokens=4096, overrides={"max_length": 64})
    train("summarize", given, opts, threads=1, device="cpu")
    meta = json.loads((given / "config.json").read_text())
    assert meta["model"]["max_length"] == 64 and "chosen" not in meta["data"]["lengths"]
    assert meta["data"]["lengths"]["src"]["over"] > 0


def test_positions_beyond_the_model_are_refused() -> None:
    from attn.model.nn.config import ModelConfig
    from attn.model.nn.model import build_model

    config = ModelConfig(task="summarize", vocab_size=64, d_model=16, n_heads=2, d_ff=32,
                         n_encoder_layers=1, n_decoder_layers=1, max_length=16)  # fmt: skip
    model = build_model(config).eval()
    ok = torch.ones(1, 16, dtype=torch.long)
    model.encode(ok, ok.bool())
    long = torch.ones(1, 40, dtype=torch.long)
    with pytest.raises(ValueError, match="max_length 16"):
        model.encode(long, long.bool())
