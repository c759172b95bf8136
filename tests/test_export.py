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
from helpers import require_extra
from typer.testing import CliRunner

from attn.cli.main import app
from attn.data import demo_dir
from attn.model.export import export_model
from attn.model.export.staging import staged_directory
from attn.model.nn.config import ModelConfig
from attn.model.nn.model import build_model
from attn.model.storage.checkpoint import save_model_config, save_weights
from attn.model.storage.layout import TOKENIZER, WEIGHTS
from attn.tokenizer import Tokenizer

runner = CliRunner()


@pytest.fixture(scope="module", autouse=True)
def _extra() -> None:
    require_extra("export", "ctranslate2", "onnx", "onnxruntime", "onnxscript")


def _texts(task: str, split: str, n: int | None = None) -> list[str]:
    name = {"translate": "en", "summarize": "src"}[task]
    lines = (demo_dir(task) / f"{split}.{name}").read_text(encoding="utf-8").splitlines()
    return lines[:n]


def _random_model(directory: Path, task: str, activation: str, **fields) -> Path:
    """A tiny model with random weights (a sentiment model's bag of n-grams too, with its
    ratios) and a tokenizer trained on demo sentences."""
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
    model = build_model(config)
    if getattr(model, "ngrams", None) is not None:
        with torch.no_grad():  # as if trained: a weight and a ratio for every bucket
            for tensor in (model.ngrams.weight, model.ngrams.ratios):
                tensor.normal_()
    save_weights(model, directory / WEIGHTS)
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
    import ctranslate2

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
    # The source model by its directory's name: no path of the exporting machine.
    assert info["source"] == random_models["translate"].name
    assert model not in (out / "attn_export.json").read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["ct2"]


# The demo-trained models of conftest.py: what a user would export.


def _refs(n: int | None = None) -> list[str]:
    return (demo_dir("translate") / "val.de").read_text(encoding="utf-8").splitlines()[:n]


def _bleu(outputs: list[str]) -> float:
    import sacrebleu

    return sacrebleu.corpus_bleu(outputs, [_refs(len(outputs))]).score


@pytest.fixture(scope="module")
def attn_outputs(translate_model) -> dict[int, list[str]]:
    """attn's float32 outputs on the demo validation set over the whole vocabulary: greedy
    and beam 4 (defaults otherwise)."""
    from attn import Translator

    translator = Translator.load(translate_model, device="cpu", threads=1)
    texts = _texts("translate", "val")
    return {
        beam: [r.text for r in translator.translate(texts, beam=beam, shortlist=False)]
        for beam in (1, 4)
    }


@pytest.fixture(scope="module")
def ct2_dirs(translate_model, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ct2")
    for weights in ("float32", "int8"):
        export_model(translate_model, "ctranslate2", root / weights, quantization=weights)
    return {"float32": root / "float32", "int8": root / "int8"}


def _first_step_gap(model_dir: Path, text: str, ct2_pieces: list[str]) -> float:
    """How far apart attn's log-probabilities of its own piece and of CTranslate2's are at the
    first step where their greedy outputs for `text` part."""
    from attn import Translator
    from attn.model.decoding.search import GenerationOptions, generate
    from attn.model.storage.checkpoint import load_model

    loaded = load_model(model_dir)
    model, c, tokenizer = loaded.model, loaded.config, loaded.tokenizer
    batch = tokenizer.encode_batch([text], max_length=c.max_length)
    options = GenerationOptions(
        beam=1, max_length_a=Translator.max_length_a, max_length_b=Translator.max_length_b
    )
    ours = [*generate(model, batch.ids, batch.mask, options)[0][0].tokens, c.eos_id]
    vocab = {tokenizer.id_to_piece(i): i for i in range(c.vocab_size)}
    theirs = [*(vocab[p] for p in ct2_pieces), c.eos_id]
    t = next(i for i, (x, y) in enumerate(zip(ours, theirs, strict=False)) if x != y)
    with torch.no_grad():
        logits = model(batch.ids, torch.tensor([[c.bos_id, *ours[:t]]]))[0, -1]
    logp = logits.log_softmax(-1)
    return abs(float(logp[ours[t]] - logp[theirs[t]]))


@pytest.mark.slow
def test_ctranslate2_greedy_is_attns(translate_model, ct2_dirs, attn_outputs) -> None:
    """float32 greedy: the same translation for >= 98% of the demo validation sentences, and
    where one differs, the two pieces it parts on score within 1e-4 (a tie)."""
    from attn.model.export.ctranslate2_run import CT2Translator

    texts = _texts("translate", "val")
    outputs = CT2Translator(ct2_dirs["float32"]).translate(texts, beam=1)
    ours = attn_outputs[1]
    differ = [i for i, (o, a) in enumerate(zip(outputs, ours, strict=True)) if o.text != a]
    assert len(differ) <= 0.02 * len(texts), [(ours[i], outputs[i].text) for i in differ]
    for i in differ:
        assert _first_step_gap(translate_model, texts[i], outputs[i].pieces) < 1e-4


@pytest.mark.slow
def test_ctranslate2_beam_and_int8_keep_the_bleu(ct2_dirs, attn_outputs) -> None:
    from attn.model.export.ctranslate2_run import CT2Translator

    texts = _texts("translate", "val")
    attn_bleu = _bleu(attn_outputs[4])
    float32 = [o.text for o in CT2Translator(ct2_dirs["float32"]).translate(texts, beam=4)]
    int8 = [o.text for o in CT2Translator(ct2_dirs["int8"]).translate(texts, beam=4)]
    # Greedy is the same search in both (test above); beam searches end their beams by
    # different rules, so a few sentences differ: 0.94 BLEU apart on the demo model one
    # AMD EPYC trained, 0.3 on an Intel Xeon's.
    assert abs(_bleu(float32) - attn_bleu) <= 1.5
    assert abs(_bleu(int8) - attn_bleu) <= 2.0


@pytest.fixture(scope="module")
def onnx_dir(translate_model, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "export"
    result = runner.invoke(
        app, ["export", "-m", str(translate_model), "--format", "onnx", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    return out


@pytest.mark.slow
def test_onnx_export_holds_the_graphs_and_a_readme(onnx_dir: Path) -> None:
    import onnx

    files = {p.name for p in onnx_dir.iterdir()}
    assert files == {"encoder.onnx", "decoder_step.onnx", "README", TOKENIZER, "attn_export.json"}
    step = onnx.load(str(onnx_dir / "decoder_step.onnx"))
    dims = {
        v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in [*step.graph.input, *step.graph.output]
    }
    assert dims["tgt_ids"] == ["batch", 1]
    assert dims["past_key_0"][0] == "batch" and dims["past_key_0"][2] == "past_len"
    assert dims["logits"][0] == "batch"
    readme = (onnx_dir / "README").read_text()
    for name in ("src_ids", "src_mask", "cross_key_i", "past_key_i", "present_value_i", "logits"):
        assert name in readme


@pytest.mark.slow
def test_onnx_graphs_equal_attn(translate_model, onnx_dir: Path) -> None:
    """Encoder outputs and decoder-step logits within 1e-4 of the step attn's search runs
    (float32), on a padded batch, step after step with the cache, from an empty past."""
    from attn.model.decoding.incremental import StepWeights
    from attn.model.export.onnx_run import OnnxSeq2Seq
    from attn.model.storage.checkpoint import load_model

    loaded = load_model(translate_model)
    model, c = loaded.model, loaded.config
    runner_ = OnnxSeq2Seq(onnx_dir)
    src_ids, src_mask = runner_.encode_texts(_texts("translate", "val", 8))
    assert not src_mask.all()  # the batch is padded
    src, mask = torch.from_numpy(src_ids), torch.from_numpy(src_mask)
    memory, cross = runner_.encode(src_ids, src_mask)
    with torch.no_grad():
        expected = model.encode(src, mask)
        np.testing.assert_allclose(memory, expected.numpy(), atol=1e-4)
        for layer, (k, v) in zip(model.decoder, cross, strict=True):
            attention = layer.cross_attn
            np.testing.assert_allclose(k, attention._split(attention.k_proj(expected)), atol=1e-4)
            np.testing.assert_allclose(v, attention._split(attention.v_proj(expected)), atol=1e-4)
        empty = np.zeros((len(src_ids), c.n_heads, 0, c.d_head), dtype=np.float32)
        past = [(empty, empty)] * c.n_decoder_layers
        seqs = torch.full((len(src_ids), 1), c.bos_id)
        state = StepWeights(model).start(expected, mask, beams=1, width=12)
        for t in range(12):
            logits, past = runner_.step(seqs[:, -1:].numpy(), src_ids != c.pad_id, past, cross)
            stepped = model.project(state.step(seqs[:, -1], t))  # (B, vocab)
            np.testing.assert_allclose(logits, stepped.numpy(), atol=1e-4)
            assert past[0][0].shape[2] == seqs.size(1)
            seqs = torch.cat([seqs, torch.from_numpy(logits.argmax(-1))[:, None]], dim=1)


@pytest.mark.slow
def test_onnx_greedy_is_attns(onnx_dir: Path, attn_outputs) -> None:
    from attn.model.export.onnx_run import OnnxSeq2Seq

    texts = _texts("translate", "val")
    runner_ = OnnxSeq2Seq(onnx_dir)
    outputs = [o for i in range(0, len(texts), 32) for o in runner_.greedy(texts[i : i + 32])]
    assert outputs == attn_outputs[1]
    assert runner_.greedy(["", "A dog runs."])[0] == ""


@pytest.mark.slow
def test_onnx_classifier_equals_attn(sentiment_model, tmp_path) -> None:
    """Sentiment exports as one graph whose scores are attn's (and so its labels)."""
    from attn import SentimentClassifier
    from attn.model.export.onnx_run import OnnxClassifier

    export_model(sentiment_model, "onnx", tmp_path / "onnx")
    assert (tmp_path / "onnx" / "classifier.onnx").is_file()
    texts = [
        line.rsplit("\t", 1)[0]
        for line in (demo_dir("sentiment") / "val.tsv").read_text().splitlines()[1:65]
    ]
    onnx_probs = OnnxClassifier(tmp_path / "onnx").classify(texts)
    attn_results = SentimentClassifier.load(sentiment_model, device="cpu").classify(texts)
    for got, want in zip(onnx_probs, attn_results, strict=True):
        assert max(got, key=got.get) == want.label
        np.testing.assert_allclose(list(got.values()), list(want.probs.values()), atol=1e-4)


def test_ctranslate2_spec_names_the_tokenizers_own_unknown_piece(random_models) -> None:
    """attn's tokenizer keeps `<unk>` at id 1; an imported one (Marian's) says where its is."""
    from attn.model.export.ctranslate2_model import build_spec
    from attn.model.storage.checkpoint import load_model

    loaded = load_model(random_models["translate"])
    assert build_spec(loaded).config.unk_token == loaded.tokenizer.id_to_piece(1) == "<unk>"

    class Moved:  # an imported vocabulary whose unknown piece sits elsewhere
        unk_id = 5

        def id_to_piece(self, i: int) -> str:
            return "<unk>" if i == 5 else f"p{i}"

    loaded.tokenizer = Moved()
    assert build_spec(loaded).config.unk_token == "<unk>"


def test_onnx_classifier_with_a_scaled_bag_of_ngrams_equals_attn(tmp_path) -> None:
    """A sentiment model whose bag of n-grams scales its features by their log-count ratios
    exports with the ratios: the same probabilities as attn's."""
    from attn import SentimentClassifier
    from attn.model.export.onnx_run import OnnxClassifier
    from attn.model.storage.checkpoint import load_model

    labels = ("negative", "positive")
    directory = _random_model(tmp_path / "m", "sentiment", "relu", labels=labels,
                              ngram_buckets=4096, ngram_order=3)  # fmt: skip
    export_model(directory, "onnx", tmp_path / "onnx")
    texts = _texts("translate", "val", 32)
    onnx_probs = OnnxClassifier(tmp_path / "onnx").classify(texts)
    attn_results = SentimentClassifier.load(directory, device="cpu").classify(texts)
    assert {max(got, key=got.get) for got in onnx_probs} == set(labels)  # both, as the bag says
    for got, want in zip(onnx_probs, attn_results, strict=True):
        np.testing.assert_allclose(list(got.values()), list(want.probs.values()), atol=1e-4)
    # Without its ratios the same weights would score otherwise: the export carries them.
    loaded = load_model(directory)
    with torch.no_grad():
        loaded.model.ngrams.ratios.fill_(1.0)
        batch = loaded.tokenizer.encode_batch(texts[:1])
        unscaled = loaded.model.classify(batch.ids, batch.mask).softmax(-1)[0]
    assert abs(unscaled[1].item() - onnx_probs[0]["positive"]) > 1e-3
