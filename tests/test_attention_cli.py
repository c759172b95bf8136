"""`attn attention`: the maps are the weights the model used, and every output renders them.

The numeric tests use tiny models with random weights (shapes, sums, masks and the computation
by hand do not depend on training); the command runs on the demo-trained models of conftest.py,
through the installed `attn` script.
"""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest
import torch
from helpers import ATTN
from typer.testing import CliRunner

from attn.cli.main import app
from attn.data import demo_dir, read_lines, read_table
from attn.model.inference.attention_maps import (
    align,
    attention_maps,
    format_alignment,
    record_attention,
)
from attn.model.nn.config import ModelConfig
from attn.model.nn.model import build_model
from attn.model.storage.checkpoint import (
    load_model,
    save_model_config,
    save_weights,
)
from attn.model.storage.layout import TOKENIZER, WEIGHTS
from attn.tokenizer import Tokenizer

TEXT = "His small bird paints her fast boat."
runner = CliRunner()


def _model_dir(directory: Path, task: str, texts: list[str], labels: tuple[str, ...] = ()) -> Path:
    """A model directory with a demo-corpus tokenizer and random weights (seeded)."""
    directory.mkdir(parents=True)
    tok = Tokenizer.train(texts, directory / TOKENIZER, vocab_size=1000)
    torch.manual_seed(0)
    config = ModelConfig(
        task=task,
        vocab_size=tok.vocab_size,
        d_model=32,
        n_heads=4,
        n_encoder_layers=2,
        n_decoder_layers=2,
        d_ff=64,
        dropout=0.0,
        max_length=24,
        labels=labels,
    )
    save_weights(build_model(config), directory / WEIGHTS)
    save_model_config(directory, config)
    return directory


@pytest.fixture(scope="module")
def translate_dir(tmp_path_factory) -> Path:
    demo = demo_dir("translate")
    texts = [*read_lines(demo / "train.en"), *read_lines(demo / "train.de")]
    return _model_dir(tmp_path_factory.mktemp("attention") / "translate", "translate", texts)


@pytest.fixture(scope="module")
def sentiment_dir(tmp_path_factory) -> Path:
    rows = list(read_table(demo_dir("sentiment") / "train.tsv"))
    labels = tuple(sorted({label for _, label in rows}))
    texts = [text for text, _ in rows]
    return _model_dir(
        tmp_path_factory.mktemp("attention") / "sentiment", "sentiment", texts, labels
    )


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([ATTN, "attention", *args], capture_output=True, text=True, timeout=120)


# The maps: shapes, sums, masks, and equality with a computation by hand.


def test_maps_have_the_right_shapes_and_rows_sum_to_one(translate_dir):
    maps = attention_maps(load_model(translate_dir), TEXT)
    s, t = len(maps.source_tokens), len(maps.target_tokens)
    assert maps.source_tokens[-1] == "</s>" and maps.target_tokens[0] == "<s>"
    assert maps.output_tokens == [*maps.target_tokens[1:], "</s>"]
    assert maps.weights["encoder"].shape == (2, 4, s, s)
    assert maps.weights["decoder"].shape == (2, 4, t, t)
    assert maps.weights["cross"].shape == (2, 4, t, s)
    for w in maps.weights.values():
        torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:-1]))


def test_decoder_self_attention_is_zero_above_the_diagonal(translate_dir):
    maps = attention_maps(load_model(translate_dir), TEXT)
    w = maps.weights["decoder"]  # (L, h, T, T)
    future = torch.ones(w.shape[-2:], dtype=torch.bool).triu(1)
    assert w.size(-1) > 2
    assert bool((w[..., future] == 0).all())
    assert bool((w[..., ~future] > 0).all())
    for m in maps.select(["decoder"]):
        assert bool((m.matrix[future] == 0).all())


def test_padded_positions_get_zero_weight(translate_dir):
    loaded = load_model(translate_dir)
    tok, model = loaded.tokenizer, loaded.model
    batch = tok.encode_batch([TEXT, "Birds are beautiful."])
    tgt = tok.encode_batch(["Vögel sind schön."], add_bos=True, add_eos=False).ids
    tgt = tgt.expand(2, -1)  # (2, T)
    _, weights = record_attention(model, batch.ids, batch.mask, tgt)
    short = int(batch.mask[1].sum())
    assert short < batch.ids.size(1)
    assert bool((weights["encoder"][1, ..., short:] == 0).all())
    assert bool((weights["cross"][1, ..., short:] == 0).all())
    real = weights["encoder"][1, :, :, :short]  # (L, h, S, short): real queries and keys
    torch.testing.assert_close(real[..., :short, :].sum(-1), torch.ones(2, 4, short))
    # The padding changes nothing: the short sentence alone gets the same weights.
    _, alone = record_attention(model, batch.ids[1:, :short], batch.mask[1:, :short], tgt[:1])
    torch.testing.assert_close(alone["cross"][0], weights["cross"][1, ..., :short])


@pytest.mark.parametrize(("kind", "layer"), [("encoder", 1), ("decoder", 0), ("cross", 1)])
def test_weights_equal_softmax_of_q_k_computed_by_hand(translate_dir, kind, layer):
    loaded = load_model(translate_dir)
    model = loaded.model
    block = model.encoder[layer] if kind == "encoder" else model.decoder[layer]
    mha = block.cross_attn if kind == "cross" else block.self_attn
    inputs = []
    # The last call is the recording pass (generation runs the same modules before it).
    hook = mha.register_forward_pre_hook(lambda _m, args: inputs.append(args[:2]))
    try:
        maps = attention_maps(loaded, TEXT)
    finally:
        hook.remove()
    x_q, x_kv = inputs[-1]  # the normed inputs: (1, T_q, d), (1, T_k, d)
    with torch.no_grad():
        q = mha.q_proj(x_q)[0].view(-1, 4, 8).transpose(0, 1)  # (h, T_q, d_k)
        k = mha.k_proj(x_kv)[0].view(-1, 4, 8).transpose(0, 1)  # (h, T_k, d_k)
        scores = q @ k.transpose(1, 2) / math.sqrt(8)  # (h, T_q, T_k)
        if kind == "decoder":
            scores = scores.masked_fill(torch.ones_like(scores).triu(1).bool(), -math.inf)
        expected = scores.softmax(-1)
    head = 2
    torch.testing.assert_close(maps.weights[kind][layer, head], expected[head])
    torch.testing.assert_close(maps.select([kind], [layer])[0].matrix, expected.mean(0))


def test_sentiment_has_only_encoder_attention(sentiment_dir):
    maps = attention_maps(load_model(sentiment_dir), "The service was great.")
    assert maps.kinds == ("encoder",)
    assert maps.output in ("negative", "positive") and 0.5 <= maps.probability <= 1
    with pytest.raises(ValueError, match="no cross attention"):
        maps.select(["cross"])


# Word alignment.


def test_align_takes_the_argmax_and_merges_pieces_to_words():
    src = ["▁the", "▁ca", "t", "▁sat"]
    tgt = ["▁die", "▁Kat", "ze", "▁saß"]
    w = torch.tensor(
        [
            [0.7, 0.1, 0.1, 0.1, 0.0],
            [0.1, 0.2, 0.6, 0.1, 0.0],
            [0.1, 0.6, 0.2, 0.1, 0.0],
            [0.0, 0.0, 0.1, 0.2, 0.7],  # most weight on EOS: ignored, "▁sat" is next best
            [0.0, 0.0, 0.0, 0.0, 1.0],  # the EOS row: ignored
        ]
    )
    assert align(src, tgt, w) == [(0, 0), (1, 1), (2, 2)]
    assert format_alignment(align(src, tgt, w)) == "0-0 1-1 2-2"


def test_align_averages_layers_and_heads():
    src, tgt = ["▁a", "▁b"], ["▁x"]
    w = torch.tensor([[[[0.9, 0.1]], [[0.0, 1.0]]], [[[0.2, 0.8]], [[0.4, 0.6]]]])  # (2, 2, 1, 2)
    assert align(src, tgt, w) == [(1, 0)]  # mean: 0.375 vs 0.625
    assert align(src, tgt, w[0, 0]) == [(0, 0)]


def test_align_rejects_weights_smaller_than_the_pieces():
    with pytest.raises(ValueError, match="cannot cover"):
        align(["▁a", "▁b"], ["▁x"], torch.ones(1, 1))


# The command, through the installed script.


def test_table_shows_tokens_and_weights_when_piped(translate_model):
    out = _run(TEXT, "-m", str(translate_model), "--layer", "1")
    assert out.returncode == 0, out.stderr
    assert "\x1b[" not in out.stdout  # no colour codes in a pipe
    lines = out.stdout.splitlines()
    assert lines[0].startswith("output: ")
    for title in ("encoder self-attention", "decoder masked", "cross-attention"):
        assert sum(title in line for line in lines) == 1
    assert "layer 1, mean of 4 heads" in out.stdout
    rows = [line.split() for line in lines if line.lstrip().startswith("\u00b7small ")]
    assert len(rows) == 1  # the encoder's row of "·small": its weights x 100
    n_source = len(Tokenizer.load(translate_model / TOKENIZER).pieces(TEXT)) + 1  # and </s>
    assert len(rows[0]) == 1 + n_source
    assert all(0 <= int(v) <= 100 for v in rows[0][1:])
    # Decoder self-attention: step i sees <s> and the i pieces before it; the rest is ".".
    start = next(i for i, line in enumerate(lines) if "decoder masked" in line)
    block = [line.split() for line in lines[start + 1 : lines.index("", start)]]
    width = max(len(cells) for cells in block)  # a row: its label and one cell per column
    rows = [cells[1:] for cells in block if len(cells) == width]
    assert len(rows) == width - 1 > 2
    assert rows[0][0] == "100"
    for i, row in enumerate(rows):
        assert "." not in row[: i + 1] and set(row[i + 1 :]) <= {"."}


@pytest.mark.parametrize("beam", [1, 4])
def test_the_output_shown_is_the_one_translate_gives(translate_model, beam):
    # As POST /attention: the pipeline's search with the same beam (4 by default).
    from attn import Translator

    args = ["-m", str(translate_model), "--kind", "cross", "--format", "json"]
    out = _run(TEXT, *args, *(["--beam", str(beam)] if beam != 4 else []))
    assert out.returncode == 0, out.stderr
    translator = Translator.load(translate_model, device="cpu")
    (expected,) = translator.translate([TEXT], beam=beam, split="none")
    assert json.loads(out.stdout)["output"] == expected.text


def test_json_and_png(translate_model, tmp_path):
    from matplotlib.image import imread

    png = tmp_path / "attention.png"
    args = ["-m", str(translate_model), "--kind", "cross", "--heads", "--format", "json"]
    out = _run(TEXT, *args, "--png", str(png))
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["task"] == "translate"
    pieces = Tokenizer.load(translate_model / TOKENIZER).pieces(TEXT)
    assert data["source_tokens"] == [*pieces, "</s>"]  # raw pieces, "▁" kept
    assert [(m["kind"], m["layer"], m["head"]) for m in data["maps"]] == [
        ("cross", layer, head) for layer in range(2) for head in range(4)
    ]
    m = data["maps"][0]
    assert (m["rows"], m["columns"]) == ("output", "source")
    assert len(m["matrix"]) == len(data["output_tokens"])
    assert all(len(row) == len(data["source_tokens"]) for row in m["matrix"])
    assert all(abs(sum(row) - 1) < 1e-4 for row in m["matrix"])
    assert {t for _, t in data["alignment"]} == set(range(len(data["output"].split())))
    image = imread(png)  # one image: a row per layer, a column per head
    assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > image.shape[0]


def test_out_dir_writes_one_image_per_map_and_prints_nothing(translate_model, tmp_path):
    out_dir = tmp_path / "maps"
    args = ["--layer", "0", "--head", "1", "--out-dir", str(out_dir)]
    result = runner.invoke(app, ["attention", TEXT, "-m", str(translate_model), *args])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert f"wrote 3 images to {out_dir}" in " ".join(result.stderr.split())
    names = sorted(p.name for p in out_dir.iterdir())
    assert names == [f"{kind}-layer0-1.png" for kind in ("cross", "decoder", "encoder")]
    assert (out_dir / "decoder-layer0-1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sentiment_table(sentiment_model):
    out = _run("The service was great.", "-m", str(sentiment_model), "--head", "3")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("label: ")
    assert "encoder self-attention, layer 0, head 3" in out.stdout
    assert "decoder" not in out.stdout
    assert "\u00b7service" in out.stdout


def test_long_text_is_cut_to_the_width_and_said_on_stderr(translate_dir):
    text = " ".join(["His small bird paints her fast boat."] * 3)
    result = runner.invoke(
        app, ["attention", text, "-m", str(translate_dir), "--kind", "encoder", "--layer", "0"]
    )
    assert result.exit_code == 0, result.output
    assert "the text is longer than the model's 24 pieces" in result.stderr
    assert "the terminal fits" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["", "-m", "{translate}"], "TEXT is empty"),
        (["hi", "-m", "{missing}"], "does not exist"),
        (["hi", "-m", "{translate}", "--layer", "2"], "layer must be between 0 and 1, got 2"),
        (["hi", "-m", "{translate}", "--head", "4"], "head must be between 0 and 3, got 4"),
        (["hi", "-m", "{translate}", "--head", "1", "--heads"], "exclude each other"),
        (["hi", "-m", "{sentiment}", "--kind", "cross"], "no cross attention"),
        (["hi", "-m", "{sentiment}", "--task", "translate"], "not a translate model"),
        (["hi", "-m", "{translate}", "--png", "{missing}/a.png"], "cannot write"),
    ],
)
def test_user_mistakes_are_one_line_errors(translate_dir, sentiment_dir, tmp_path, args, message):
    paths = {"translate": translate_dir, "sentiment": sentiment_dir, "missing": tmp_path / "no"}
    result = runner.invoke(app, ["attention", *(a.format(**paths) for a in args)])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ")
    assert message in " ".join(result.stderr.split())
    assert result.stdout == ""


def test_alignments_come_from_the_search_that_gave_the_output(translate_model):
    """With align, the same outputs as without (beam search included), and each alignment
    covers exactly its output's words: it is of that search's pieces."""
    from attn import Translator

    translator = Translator.load(translate_model, device="cpu")
    texts = [TEXT, "", "Birds are beautiful.", "A man rides a bike in the park."]
    plain = list(translator.translate(texts, beam=4))
    aligned = list(translator.translate(texts, beam=4, align=True))
    assert [r.text for r in aligned] == [r.text for r in plain]
    assert [r.score for r in aligned] == [r.score for r in plain]
    assert aligned[1].alignment == []  # an empty line: no words
    for r in (aligned[0], aligned[2], aligned[3]):
        assert r.alignment == sorted(set(r.alignment))
        assert {t for _, t in r.alignment} == set(range(len(r.text.split())))
        assert all(0 <= s < len(r.source.split()) for s, _ in r.alignment)
    assert plain[0].alignment is None


def test_translate_align_adds_word_pairs(translate_model, tmp_path):
    lines = [TEXT, "", "Birds are beautiful."]
    source = tmp_path / "in.txt"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    cmd = [ATTN, "translate", str(source), "-m", str(translate_model), "--beam", "1", "--align"]
    out = subprocess.run([*cmd, "--format", "jsonl"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    records = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["source"] for r in records] == lines
    assert records[1]["alignment"] == []
    for r in (records[0], records[2]):
        n_src, n_out = len(r["source"].split()), len(r["output"].split())
        assert r["alignment"] and r["alignment"] == sorted(r["alignment"])
        assert {t for _, t in r["alignment"]} == set(range(n_out))  # every output word
        assert all(0 <= s < n_src for s, _ in r["alignment"])
    # "Sein kleiner Vogel malt ihr schnelles Boot.": the trained model keeps the word order.
    assert records[0]["output"] == "Sein kleiner Vogel malt ihr schnelles Boot."
    assert sum(s == t for s, t in records[0]["alignment"]) >= 5
    result = runner.invoke(app, [*cmd[1:], "--format", "tsv"])
    assert result.exit_code == 0, result.output
    columns = [line.split("\t") for line in result.stdout.splitlines()]
    assert [c[-1] for c in columns] == [format_alignment(r["alignment"]) for r in records]
