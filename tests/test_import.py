"""`attn import`: OPUS-MT (Marian) models of Hugging Face as attn model directories, their
tokenizer, --to, and every attn command on them (no network: tiny models built here)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from helpers import require_extra
from marian_fixtures import (  # noqa: F401 (fixtures)
    build_marian_dir,
    demo_sentences,
    marian_bin_dir,
    marian_dir,
    marian_multilingual_dir,
)
from typer.testing import CliRunner

from attn.cli.main import app

# Outputs of these random models often run to the cap: transformers forces EOS as the
# last of max_new_tokens, so attn's cap on pieces (EOS not counted) is one less.
NEW_TOKENS = 30


def attn_cli(*args: str):
    return CliRunner().invoke(app, list(args))


def imported(source: Path, root: Path) -> Path:
    out = root / f"{source.name}-attn"
    if not out.exists():
        result = attn_cli("import", str(source), "-o", str(out))
        assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def en_de(marian_dir, tmp_path_factory) -> Path:  # noqa: F811
    return imported(marian_dir, tmp_path_factory.mktemp("imported"))


@pytest.fixture(scope="module")
def en_mul(marian_multilingual_dir, tmp_path_factory) -> Path:  # noqa: F811
    return imported(marian_multilingual_dir, tmp_path_factory.mktemp("imported"))


def hf_generate(directory: Path, texts: list[str], beam: int) -> tuple[list[str], list[bool]]:
    """transformers' outputs, and per text whether its output ended by itself (before the
    cap)."""
    from transformers import MarianMTModel, MarianTokenizer

    tok = MarianTokenizer.from_pretrained(directory)
    model = MarianMTModel.from_pretrained(directory).eval()
    with torch.no_grad():
        batch = tok(texts, return_tensors="pt", padding=True)
        out = model.generate(**batch, num_beams=beam, max_new_tokens=NEW_TOKENS, length_penalty=0.0)
    # A capped output holds NEW_TOKENS - 1 pieces and the forced EOS.
    ended = [(row != tok.pad_token_id).sum().item() - 1 < NEW_TOKENS - 1 for row in out[:, 1:]]
    return tok.batch_decode(out, skip_special_tokens=True), ended


def attn_outputs(model: Path, texts: list[str], beam: int, **options) -> list[str]:
    from attn import Translator

    translator = Translator.load(model, device="cpu")
    results = translator.translate(
        texts,
        beam=beam,
        split="none",
        max_length=NEW_TOKENS - 1,
        length_penalty=0.0,
        **options,
    )
    return [r.text for r in results]


def test_the_tokenizer_segments_as_transformers_marian_tokenizer(marian_dir, en_de) -> None:  # noqa: F811
    from transformers import MarianTokenizer as HFTokenizer

    from attn.model.storage.checkpoint import load_tokenizer

    hf = HFTokenizer.from_pretrained(marian_dir)
    ours = load_tokenizer(en_de)
    sources = [*demo_sentences(100), "A <unk> in </s> text", "x  y", "Ünïcödé ½"]
    targets = demo_sentences(100, "de")
    assert ours.encode(sources)[0] == hf(sources).input_ids
    assert ours.target.encode(targets)[0] == hf(text_target=targets).input_ids
    ids = hf(text_target=targets).input_ids
    assert ours.decode(ids) == hf.batch_decode(ids, skip_special_tokens=True)
    assert (ours.eos_id, ours.pad_id) == (hf.eos_token_id, hf.pad_token_id)


@pytest.mark.parametrize("beam", [1, 4])
def test_outputs_equal_transformers_generate(marian_dir, en_de, beam) -> None:  # noqa: F811
    texts = demo_sentences(100)
    expected, ended = hf_generate(marian_dir, texts, beam)
    ours = attn_outputs(en_de, texts, beam, shortlist=False)
    if beam == 1:
        assert ours == expected
    else:
        # Beam outputs cut at the cap differ by where the forced EOS is scored; the others
        # (most) are equal text for text.
        assert sum(ended) >= len(texts) // 2
        assert [o for o, e in zip(ours, ended, strict=True) if e] == [
            x for x, e in zip(expected, ended, strict=True) if e
        ]


@pytest.mark.parametrize("beam", [1, 4])
def test_a_multilingual_model_translates_into_the_language_of_to(
    marian_multilingual_dir,  # noqa: F811
    en_mul,
    beam,
) -> None:
    texts = demo_sentences(100)
    expected, ended = hf_generate(marian_multilingual_dir, [f">>fra<< {t}" for t in texts], beam)
    ours = attn_outputs(en_mul, texts, beam, to="fra")
    keep = ended if beam > 1 else [True] * len(texts)
    assert [o for o, e in zip(ours, keep, strict=True) if e] == [
        x for x, e in zip(expected, keep, strict=True) if e
    ]


def test_to_is_required_by_a_multilingual_model_and_refused_by_others(en_mul, en_de, tmp_path):
    (tmp_path / "in.txt").write_text("A dog runs.\n", encoding="utf-8")
    result = attn_cli("translate", str(tmp_path / "in.txt"), "-m", str(en_mul))
    assert result.exit_code == 1
    assert "choose one with --to (it knows deu, fra, spa)" in result.output
    result = attn_cli("translate", str(tmp_path / "in.txt"), "-m", str(en_mul), "--to", "ita")
    assert result.exit_code == 1 and "no language token >>ita<<" in result.output
    result = attn_cli("translate", str(tmp_path / "in.txt"), "-m", str(en_de), "--to", "fra")
    assert result.exit_code == 1 and "has no target-language tokens" in result.output
    result = attn_cli("translate", str(tmp_path / "in.txt"), "-m", str(en_mul), "--to", "fra")
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 1


def test_info_says_where_an_imported_model_came_from(marian_dir, en_de) -> None:  # noqa: F811
    result = attn_cli("info", "-m", str(en_de), "--format", "json")
    assert result.exit_code == 0, result.output
    about = json.loads(result.stdout)
    assert about["imported"] == {"family": "marian", "path": str(marian_dir.resolve())}
    assert about["preset"] == "none (imported marian)"  # not the nearest of attn's presets
    text = attn_cli("info", "-m", str(en_de)).stdout
    assert text.count(str(marian_dir.resolve())) == 1
    assert "none (imported marian) (d_model" in text


def test_int8_align_attention_and_serve_work_on_an_imported_model(en_de, tmp_path) -> None:
    from attn import Translator

    texts = demo_sentences(8)
    int8 = Translator.load(en_de, device="cpu", int8=True)
    results = list(int8.translate(texts, beam=2))
    assert len(results) == len(texts) and any(r.text for r in results)
    aligned = list(Translator.load(en_de, device="cpu").translate(texts, beam=2, align=True))
    assert all(r.alignment for r in aligned if r.text)
    result = attn_cli("attention", texts[0], "-m", str(en_de), "--format", "json")
    assert result.exit_code == 0, result.output
    maps = json.loads(result.stdout)
    assert maps["source_tokens"][-1] == "</s>" and maps["output_tokens"][-1] == "</s>"


def test_serve_translates_with_an_imported_model(en_de, en_mul) -> None:
    require_extra("serve", "fastapi", "uvicorn")
    from test_serve import request, running

    from attn import Translator
    from attn.server.app import create_app

    pipelines = {"translate": Translator.load(en_mul, device="cpu")}
    expected = next(iter(pipelines["translate"].translate(["A dog runs."], to="spa", beam=4)))
    with running(create_app(pipelines)) as base:
        status, body = request(base, "/translate", {"text": "A dog runs.", "to": "spa"})
        assert (status, body["output"]) == (200, expected.text)
        status, body = request(base, "/translate", {"text": "A dog runs."})
        assert status == 422 and '"to"' in body["error"] and "deu, fra, spa" in body["error"]
        status, health = request(base, "/health")
        assert health["models"]["translate"]["targets"] == ["deu", "fra", "spa"]
        # /attention takes "to" too: its output is the one /translate gives.
        status, body = request(base, "/attention", {"text": "A dog runs.", "to": "spa"})
        assert status == 200 and body["output"] == expected.text
        assert body["source_tokens"][0] == ">>spa<<"
        status, body = request(base, "/attention", {"text": "A dog runs."})
        assert status == 422 and '"to"' in body["error"]


def test_evaluate_takes_to_for_a_multilingual_model(en_mul, tmp_path) -> None:
    data = tmp_path / "test"
    data.mkdir()
    for side in ("en", "de"):
        lines = demo_sentences(20, side)
        (data / f"val.{side}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    args = ("evaluate", "translate", "-m", str(en_mul), "--data", str(data), "--format", "json")
    result = attn_cli(*args, "--to", "fra")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["to"] == "fra"
    result = attn_cli(*args)
    assert result.exit_code == 1 and "choose one with --to" in result.output


def test_attention_takes_to_for_a_multilingual_model(en_mul) -> None:
    result = attn_cli(
        "attention", "A dog runs.", "-m", str(en_mul), "--to", "fra", "--format", "json"
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["source_tokens"][0] == ">>fra<<"
    result = attn_cli("attention", "A dog runs.", "-m", str(en_mul))
    assert result.exit_code == 1 and "choose one with --to" in result.output


@pytest.mark.slow
def test_fine_tuning_an_imported_model_keeps_its_tokenizer_and_learns(en_de, tmp_path) -> None:
    from helpers import slice_translate

    from attn.model.training.metrics_log import read_metrics
    from attn.model.training.train import train

    data = slice_translate(tmp_path, n_train=300, n_val=16)
    out = tmp_path / "tuned"
    opts = {
        "data": str(data),
        "init": str(en_de),
        "max_steps": 40,
        "val_every": 20,
        "batch_tokens": 1024,
        "lr": 3e-3,
        "warmup": 5,
    }
    train("translate", out, opts, threads=1, device="cpu")
    for name in ("source.spm", "target.spm", "vocab.json"):
        assert (out / name).read_bytes() == (en_de / name).read_bytes()
    assert not (out / "tokenizer.model").exists() and (out / "shortlist.safetensors").is_file()
    losses = [r["val_loss"] for r in read_metrics(out) if "val_loss" in r]
    assert len(losses) >= 2 and losses[-1] < losses[0]
    result = attn_cli("translate", "-m", str(out), str(data / "val.en"))
    assert result.exit_code == 0, result.output


def test_a_hub_id_is_read_from_the_cache_offline(marian_dir, tmp_path, monkeypatch) -> None:  # noqa: F811
    require_extra("hub", "huggingface_hub")  # (CI has it through transformers, in dev)
    cache = tmp_path / "hub"
    revision = "0123456789abcdef0123456789abcdef01234567"
    snapshot = cache / "models--Helsinki-NLP--opus-mt-en-de" / "snapshots" / revision
    shutil.copytree(marian_dir, snapshot)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text(revision)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    out = tmp_path / "en-de"
    result = attn_cli("import", "Helsinki-NLP/opus-mt-en-de", "-o", str(out))
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "config.json").read_text())
    assert meta["imported"] == {
        "family": "marian",
        "hub": "Helsinki-NLP/opus-mt-en-de",
        "revision": revision,
    }
    result = attn_cli("import", "Helsinki-NLP/opus-mt-en-fr", "-o", str(tmp_path / "fr"))
    assert result.exit_code == 1 and "cannot be reached" in result.output
    assert not (tmp_path / "fr").exists()


def _broken(marian_dir: Path, root: Path, change) -> Path:  # noqa: F811
    directory = root / "broken"
    shutil.copytree(marian_dir, directory)
    change(directory)
    return directory


def _config(directory: Path, **changes) -> None:
    path = directory / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def _pickled_bin(directory: Path) -> None:
    (directory / "model.safetensors").unlink()
    torch.save({"weights": torch.zeros(2), "extra": Path("x")}, directory / "pytorch_model.bin")


def _vocab_plus_one(directory: Path) -> None:
    vocab = json.loads((directory / "vocab.json").read_text(encoding="utf-8"))
    vocab["<extra>"] = len(vocab)
    (directory / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: _config(d, model_type="bart"), "model_type 'bart' is not supported"),
        (lambda d: _config(d, model_type="t5"), "attn imports marian"),
        (lambda d: (d / "source.spm").unlink(), "no source.spm"),
        (_vocab_plus_one, "but the embedding matrix has"),
        (_pickled_bin, "pickled objects other than tensors"),
    ],
)
def test_bad_model_directories_get_one_line_and_nothing_at_o(
    marian_dir,  # noqa: F811
    tmp_path,
    change,
    message,
) -> None:
    source = _broken(marian_dir, tmp_path, change)
    out = tmp_path / "out"
    result = attn_cli("import", str(source), "-o", str(out))
    assert result.exit_code == 1
    assert message in result.output and result.output.startswith("Error:")
    assert len(result.output.strip().splitlines()) == 1 or "\n" not in result.output.strip()
    assert not out.exists() and not list(tmp_path.glob(".out.*"))


def test_the_bin_weights_import_as_the_safetensors_ones(marian_bin_dir, en_de, tmp_path):  # noqa: F811
    from safetensors.torch import load_file

    out = imported(marian_bin_dir, tmp_path)
    ours, theirs = (
        load_file(str(out / "model.safetensors")),
        load_file(str(en_de / "model.safetensors")),
    )
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_a_file_a_missing_source_and_an_existing_output_are_refused(en_de, marian_dir, tmp_path):  # noqa: F811
    (tmp_path / "file").write_text("x")
    result = attn_cli("import", str(tmp_path / "file"), "-o", str(tmp_path / "a"))
    assert result.exit_code == 1 and "is not a directory" in result.output
    result = attn_cli("import", str(tmp_path / "nowhere"), "-o", str(tmp_path / "a"))
    assert result.exit_code == 1 and "no such directory" in result.output
    result = attn_cli("import", str(marian_dir), "-o", str(en_de))
    assert result.exit_code == 1 and "already exists" in result.output
    copy = tmp_path / "copy"
    shutil.copytree(en_de, copy)
    (copy / "stale.txt").write_text("old")
    result = attn_cli("import", str(marian_dir), "-o", str(copy), "--overwrite")
    assert result.exit_code == 0, result.output
    assert not (copy / "stale.txt").exists() and (copy / "vocab.json").is_file()
