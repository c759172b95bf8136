"""Imported Marian (OPUS-MT) models at the level of the network: `model/importers/marian.py`
converts a Hugging Face Marian directory (built by `marian_fixtures` with `transformers`) and
attn's own network, searches, int8 and exports must compute what transformers computes.

Text-level checks (the tokenizer, `attn import`) are in test_import.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from marian_fixtures import (  # noqa: F401 (fixtures)
    build_marian_dir,
    demo_sentences,
    marian_bin_dir,
    marian_dir,
)

from attn.model.decoding.incremental import StepWeights
from attn.model.decoding.quantize import quantize_int8
from attn.model.decoding.search import GenerationOptions, generate
from attn.model.importers.marian import (
    UnsupportedModelError,
    marian_config,
    marian_state_dict,
    read_weights,
)
from attn.model.nn.config import ModelConfig
from attn.model.nn.transformer import Transformer, sinusoidal_positions
from attn.model.storage.checkpoint import LoadedModel

# transformers' generate needs max_length = attn's cap + 2 (the start piece and EOS).
CAP = 30


def _hf_config(directory: Path) -> dict:
    return json.loads((directory / "config.json").read_text(encoding="utf-8"))


def _convert(directory: Path) -> Transformer:
    config = marian_config(_hf_config(directory))
    model = Transformer(config).eval()
    model.load_state_dict(marian_state_dict(read_weights(directory), config))
    return model


@pytest.fixture(scope="module")
def pair(marian_dir):  # noqa: F811
    """transformers' model, its tokenizer and attn's converted model."""
    from transformers import MarianMTModel, MarianTokenizer

    hf = MarianMTModel.from_pretrained(marian_dir).eval()
    return hf, MarianTokenizer.from_pretrained(marian_dir), _convert(marian_dir)


@pytest.fixture(scope="module")
def batch(pair):
    """100 demo sentences tokenized by transformers (EOS last, padded with <pad>)."""
    _, tokenizer, _ = pair
    encoded = tokenizer(demo_sentences(100), return_tensors="pt", padding=True)
    return encoded.input_ids, encoded.attention_mask.bool()


def test_config_maps_marian_options(marian_dir) -> None:  # noqa: F811
    hf = _hf_config(marian_dir)
    c = marian_config(hf)
    assert (c.norm, c.positions, c.activation) == ("post", "split", "silu")
    assert c.scale_embeddings and c.logits_bias
    assert (c.eos_id, c.pad_id, c.decoder_start_id) == (0, hf["vocab_size"] - 1, c.pad_id)
    assert c.start_id == c.pad_id and c.vocab_size == hf["vocab_size"]
    assert (c.d_model, c.n_encoder_layers, c.d_ff) == (hf["d_model"], 2, hf["encoder_ffn_dim"])
    # A config.json round trip keeps every option.
    assert ModelConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c


def test_old_configs_load_with_todays_network() -> None:
    """A config.json written before these options loads and builds the network as before:
    pre-norm with final norms, interleaved positions, scaled embeddings, no logits bias."""
    old = ModelConfig(vocab_size=100, d_model=16, n_heads=2, d_ff=32).to_dict()
    for name in ("norm", "positions", "scale_embeddings", "logits_bias", "decoder_start_id"):
        del old[name]
    c = ModelConfig.from_dict(old)
    assert c.start_id == c.bos_id
    names = set(Transformer(c).state_dict())
    assert {"encoder_norm.weight", "decoder_norm.weight"} <= names
    assert "logits_bias" not in names
    pe = sinusoidal_positions(10, 16)
    angle = 3 * 10000 ** (-torch.arange(0, 16, 2) / 16)  # position 3, the 8 frequencies
    assert torch.allclose(pe[3, 0::2], angle.sin()) and torch.allclose(pe[3, 1::2], angle.cos())


def test_split_positions_are_marians() -> None:
    from transformers.models.marian.modeling_marian import MarianSinusoidalPositionalEmbedding

    for d in (32, 30):
        table = MarianSinusoidalPositionalEmbedding(64, d)
        expected = table.create_weight()
        assert torch.allclose(sinusoidal_positions(64, d, "split"), expected, atol=1e-6)


def test_logits_equal_transformers_on_a_padded_batch(pair, batch) -> None:
    hf, tokenizer, model = pair
    src, src_mask = batch
    assert not src_mask.all()  # padded
    targets = tokenizer(text_target=demo_sentences(100, "de"), return_tensors="pt", padding=True)
    tgt = targets.input_ids
    c = model.config
    tgt_in = torch.cat([torch.full_like(tgt[:, :1], c.start_id), tgt[:, :-1]], 1)
    with torch.no_grad():
        expected = hf(input_ids=src, attention_mask=src_mask.long(), decoder_input_ids=tgt_in)
        got = model.decode(tgt_in, model.encode(src, src_mask), src_mask)
    real = targets.attention_mask.bool()  # positions whose input is the start or a piece
    diff = (got - expected.logits)[real].abs().max().item()
    assert diff < 1e-4, diff


def test_teacher_forced_loss_equals_transformers(pair, batch) -> None:
    """Training's objective (with the logits bias, on the CPU path) gives transformers' loss."""
    from attn.model.training.objective import Objective

    hf, tokenizer, model = pair
    src, src_mask = batch
    labels = tokenizer(text_target=demo_sentences(100, "de"), return_tensors="pt", padding=True)
    target = labels.input_ids  # pieces, EOS, then <pad>
    c = model.config
    tgt_in = torch.cat([torch.full_like(target[:, :1], c.start_id), target[:, :-1]], 1)
    tgt_in.masked_fill_(tgt_in == c.eos_id, c.pad_id)
    with torch.no_grad():
        ours = Objective(model, 0.0)(src, tgt_in, target) / (target != c.pad_id).sum()
        hf_labels = target.masked_fill(target == c.pad_id, -100)
        theirs = hf(input_ids=src, attention_mask=src_mask.long(), labels=hf_labels).loss
    assert abs(ours.item() - theirs.item()) < 1e-4


@pytest.mark.parametrize("beam", [1, 4])
def test_search_equals_transformers_generate(pair, batch, beam: int) -> None:
    """Greedy and beam-4 ids equal `generate`'s: no length penalty on either side
    (transformers divides by length ** alpha, attn by ((5 + length) / 6) ** alpha; at alpha 0
    both rank by the log-probability) and the same cap.

    At the cap the two beam searches score differently by design: transformers forces EOS
    with a log-probability of 0, attn counts EOS's own; so beam outputs are compared where
    transformers' ended before the cap (greedy ones everywhere)."""
    hf, _, model = pair
    src, src_mask = batch
    with torch.no_grad():
        expected = hf.generate(
            input_ids=src,
            attention_mask=src_mask.long(),
            num_beams=beam,
            length_penalty=0.0,
            early_stopping=False,
            max_length=CAP + 2,
            do_sample=False,
        )
    options = GenerationOptions(beam=beam, length_penalty=0.0, max_length=CAP)
    got = generate(model, src, src_mask, options)
    c = model.config
    want = [[i for i in row[1:] if i not in (c.eos_id, c.pad_id)] for row in expected.tolist()]
    got = [h[0].tokens for h in got]
    ended = [i for i, tokens in enumerate(want) if len(tokens) < CAP]
    if beam == 1:
        assert got == want
    assert [got[i] for i in ended] == [want[i] for i in ended]
    assert len(ended) >= 40 and len({len(want[i]) for i in ended}) > 5  # many lengths


def test_incremental_decoder_equals_full_forward(pair, batch) -> None:
    _, _, model = pair
    src, src_mask = batch[0][:16], batch[1][:16]
    c = model.config
    with torch.no_grad():
        memory = model.encode(src, src_mask)
        seqs = torch.full((16, 1), c.start_id)
        state = StepWeights(model).start(memory, src_mask, beams=1, width=12)
        for t in range(12):
            step = model.project(state.step(seqs[:, -1], t))  # (B, V)
            full = model.decode(seqs, memory, src_mask)[:, -1]
            assert torch.allclose(step, full, atol=1e-4)
            seqs = torch.cat([seqs, step.argmax(-1, keepdim=True)], 1)
    options = GenerationOptions(beam=4, length_penalty=0.6, max_length=CAP)
    cached = generate(model, src, src_mask, options)
    reference = generate(model, src, src_mask, options, use_cache=False)
    assert [h[0].tokens for h in cached] == [h[0].tokens for h in reference]


def test_int8_runs_and_stays_close(marian_dir, batch) -> None:  # noqa: F811
    model = _convert(marian_dir)
    src, src_mask = batch
    options = GenerationOptions(beam=1, max_length=CAP)
    float_out = [h[0].tokens for h in generate(model, src, src_mask, options)]
    with torch.no_grad():
        tgt = torch.full((src.size(0), 1), model.config.start_id)
        float_logits = model.decode(tgt, model.encode(src, src_mask), src_mask)
    quantize_int8(model)
    weights = StepWeights(_convert(marian_dir), precision="int8")
    int8_out = [h[0].tokens for h in generate(model, src, src_mask, options, weights=weights)]
    with torch.no_grad():
        int8_logits = model.decode(tgt, model.encode(src, src_mask), src_mask)
    error = (int8_logits - float_logits).abs().mean() / float_logits.std()
    # Random weights of a tiny model quantize worse than trained ones; the first piece
    # (where int8 rounding has not yet sent a search elsewhere) mostly agree.
    same = sum(a[:1] == b[:1] for a, b in zip(float_out, int8_out, strict=True))
    assert error < 0.1, error
    assert same >= 0.8 * len(float_out), same


def _reference_greedy(model: Transformer, src, src_mask, allowed, cap: int) -> list[list[int]]:
    """Greedy search spelled out: full decoding, logits (with the bias) restricted to each
    sentence's allowed pieces, never PAD/BOS, EOS forced at the cap."""
    c = model.config
    out = []
    for row in range(src.size(0)):
        s, m = src[row : row + 1], src_mask[row : row + 1]
        memory = model.encode(s, m)
        seq = [c.start_id]
        while True:
            logits = model.decode(torch.tensor([seq]), memory, m)[0, -1]
            logits = logits.masked_fill(~allowed[row], -torch.inf)
            logits[[c.pad_id, c.bos_id]] = -torch.inf
            token = c.eos_id if len(seq) > cap else int(logits.argmax())
            if token == c.eos_id:
                break
            seq.append(token)
        out.append(seq[1:])
    return out


def test_shortlist_takes_the_logits_bias_of_its_pieces(pair, batch) -> None:
    _, _, model = pair
    src, src_mask = batch[0][:12], batch[1][:12]
    c = model.config
    generator = torch.Generator().manual_seed(0)
    allowed = torch.rand(12, c.vocab_size, generator=generator) < 0.3
    allowed[:, c.eos_id] = True
    options = GenerationOptions(beam=1, max_length=15)
    with torch.no_grad():
        got = generate(model, src, src_mask, options, allowed=allowed)
        want = _reference_greedy(model, src, src_mask, allowed, 15)
    assert [h[0].tokens for h in got] == want
    # The bias matters here: without it the search picks other pieces.
    unbiased = _convert_without_bias(model)
    other = generate(unbiased, src, src_mask, options, allowed=allowed)
    assert [h[0].tokens for h in other] != want


def _convert_without_bias(model: Transformer) -> Transformer:
    copy = Transformer(model.config).eval()
    copy.load_state_dict(model.state_dict())
    copy.logits_bias.zero_()
    return copy


def test_bin_weights_convert_as_safetensors(marian_dir, marian_bin_dir) -> None:  # noqa: F811
    assert (marian_bin_dir / "pytorch_model.bin").is_file()
    assert not (marian_bin_dir / "model.safetensors").exists()
    c = marian_config(_hf_config(marian_dir))
    a = marian_state_dict(read_weights(marian_dir), c)
    b = marian_state_dict(read_weights(marian_bin_dir), c)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model_type": "bart"}, "model_type 'bart' is not 'marian'"),
        ({"share_encoder_decoder_embeddings": False}, "share_encoder_decoder_embeddings"),
        ({"decoder_vocab_size": 7}, "one vocabulary shared"),
        ({"activation_function": "gelu_new"}, "activation_function 'gelu_new'"),
        ({"normalize_before": True}, "normalize_before True is not supported"),
        ({"decoder_ffn_dim": 128}, "encoder_ffn_dim 64 differs from decoder_ffn_dim 128"),
        ({"d_model": 33}, "d_model must be divisible by n_heads"),
    ],
)
def test_unsupported_configs_are_refused(marian_dir, change, message) -> None:  # noqa: F811
    hf = _hf_config(marian_dir) | change
    with pytest.raises(UnsupportedModelError, match=message) as e:
        marian_config(hf)
    assert "\n" not in str(e.value)


def test_unsupported_weights_are_refused(marian_dir, tmp_path) -> None:  # noqa: F811
    c = marian_config(_hf_config(marian_dir))
    tensors = read_weights(marian_dir)
    missing = {k: v for k, v in tensors.items() if "fc2.bias" not in k}
    with pytest.raises(
        UnsupportedModelError, match=re.escape("no model.encoder.layers.0.fc2.bias")
    ):
        marian_state_dict(missing, c)
    smaller = c.replace(vocab_size=c.vocab_size - 1, pad_id=0, bos_id=0, decoder_start_id=0)
    with pytest.raises(UnsupportedModelError, match=re.escape("embed.weight has shape")):
        marian_state_dict(tensors, smaller)
    separate = dict(tensors)
    separate["model.decoder.embed_tokens.weight"] = tensors["model.shared.weight"] + 1
    with pytest.raises(UnsupportedModelError, match="embeddings differ"):
        marian_state_dict(separate, c)
    extra = dict(tensors) | {"model.encoder.layernorm_embedding.weight": torch.ones(c.d_model)}
    with pytest.raises(
        UnsupportedModelError, match=re.escape("no place for: model.encoder.layernorm")
    ):
        marian_state_dict(extra, c)


class _Pickled:
    """Not a tensor: `torch.load(weights_only=True)` must refuse to build it."""


def test_a_bin_with_pickled_objects_is_refused(tmp_path) -> None:
    torch.save({"model.shared.weight": torch.zeros(2, 2), "x": _Pickled()}, tmp_path / "w.bin")
    (tmp_path / "w.bin").rename(tmp_path / "pytorch_model.bin")
    with pytest.raises(UnsupportedModelError, match="pickled objects other than tensors") as e:
        read_weights(tmp_path)
    assert "\n" not in str(e.value)
    torch.save({"model.shared.weight": torch.zeros(2, 2), "n": 3}, tmp_path / "pytorch_model.bin")
    with pytest.raises(UnsupportedModelError, match="other than a mapping of names to tensors"):
        read_weights(tmp_path)
    (tmp_path / "pytorch_model.bin").unlink()
    with pytest.raises(
        UnsupportedModelError, match=re.escape("no model.safetensors or pytorch_model.bin")
    ):
        read_weights(tmp_path)


class _Pieces:
    """The pieces of a Marian vocab.json by id: all an export needs of a tokenizer."""

    def __init__(self, directory: Path) -> None:
        vocab = json.loads((directory / "vocab.json").read_text(encoding="utf-8"))
        self.pieces = sorted(vocab, key=vocab.get)
        self.vocab_size = len(self.pieces)
        self.unk_id = vocab["<unk>"]

    def id_to_piece(self, i: int) -> str:
        return self.pieces[i]


def test_ctranslate2_export_translates_as_ct2s_own_converter(pair, marian_dir, tmp_path) -> None:  # noqa: F811
    """attn's CTranslate2 spec of the converted model and `ct2-transformers-converter`'s of the
    Hugging Face directory give the same pieces, greedy and beam 4."""
    import ctranslate2
    from ctranslate2.converters import TransformersConverter

    from attn.model.export.ctranslate2_model import build_spec

    _, tokenizer, model = pair
    loaded = LoadedModel(model, model.config, _Pieces(marian_dir), marian_dir)
    spec = build_spec(loaded)
    spec.validate()
    spec.optimize(quantization=None)
    (tmp_path / "attn").mkdir()
    spec.save(str(tmp_path / "attn"))
    TransformersConverter(str(marian_dir)).convert(str(tmp_path / "ct2"))
    ours = ctranslate2.Translator(str(tmp_path / "attn"), device="cpu")
    theirs = ctranslate2.Translator(str(tmp_path / "ct2"), device="cpu")
    sentences = demo_sentences(40)
    tokens = [tokenizer.convert_ids_to_tokens(tokenizer(s).input_ids) for s in sentences]
    for beam in (1, 4):
        kwargs = {"beam_size": beam, "max_decoding_length": CAP, "length_penalty": 1.0}
        # attn's export appends EOS itself (as attn does); the converter's model reads it.
        got = ours.translate_batch([t[:-1] for t in tokens], **kwargs)
        want = theirs.translate_batch(tokens, **kwargs)
        got_tokens = [r.hypotheses[0] for r in got]
        assert got_tokens == [r.hypotheses[0] for r in want]
        assert len({len(t) for t in got_tokens}) > 3


@pytest.mark.slow
def test_onnx_graphs_follow_the_options(pair, marian_dir, batch, tmp_path) -> None:  # noqa: F811
    """The ONNX encoder and decoder step of the converted model compute attn's (post-norm,
    split positions, logits bias, the start piece) to 1e-4."""
    from attn.model.export.onnx_graphs import DECODER_STEP, ENCODER, write_onnx
    from attn.model.export.onnx_run import _session

    _, _, model = pair
    c = model.config
    write_onnx(LoadedModel(model, c, _Pieces(marian_dir), marian_dir), tmp_path)
    encoder, decoder = _session(tmp_path / ENCODER, 1), _session(tmp_path / DECODER_STEP, 1)
    src, src_mask = batch[0][:8], batch[1][:8]
    memory, *cross = encoder.run(None, {"src_ids": src.numpy(), "src_mask": src_mask.numpy()})
    with torch.no_grad():
        expected = model.encode(src, src_mask)
        np.testing.assert_allclose(memory, expected.numpy(), atol=1e-4)
        state = StepWeights(model).start(expected, src_mask, beams=1, width=8)
        empty = np.zeros((8, c.n_heads, 0, c.d_head), dtype=np.float32)
        past = [empty, empty] * c.n_decoder_layers
        seqs = torch.full((8, 1), c.start_id)
        for t in range(8):
            feeds = {"tgt_ids": seqs[:, -1:].numpy(), "src_mask": src_mask.numpy()}
            for i in range(c.n_decoder_layers):
                feeds |= {f"past_key_{i}": past[2 * i], f"past_value_{i}": past[2 * i + 1]}
                feeds |= {f"cross_key_{i}": cross[2 * i], f"cross_value_{i}": cross[2 * i + 1]}
            logits, *past = decoder.run(None, feeds)
            full = model.decode(seqs, expected, src_mask)[:, -1]
            np.testing.assert_allclose(logits, full.numpy(), atol=1e-4)
            step = model.project(state.step(seqs[:, -1], t))
            np.testing.assert_allclose(logits, step.numpy(), atol=1e-4)
            seqs = torch.cat([seqs, torch.from_numpy(logits.argmax(-1))[:, None]], 1)


def test_fixture_directory_has_the_hub_layout(marian_dir) -> None:  # noqa: F811
    names = {p.name for p in marian_dir.iterdir()}
    assert {"config.json", "model.safetensors", "source.spm", "target.spm"} <= names
    assert {"vocab.json", "tokenizer_config.json"} <= names
    vocab = json.loads((marian_dir / "vocab.json").read_text(encoding="utf-8"))
    assert vocab["</s>"] == 0 and vocab["<unk>"] == 1 and vocab["<pad>"] == len(vocab) - 1
    assert build_marian_dir is not None


@pytest.mark.slow
def test_attn_export_of_an_imported_model(pair, marian_dir, tmp_path) -> None:  # noqa: F811
    """`attn export` of an imported directory carries its tokenizer files; its CTranslate2
    model translates as ct2-transformers-converter's (beam 4), and its ONNX graphs decode
    greedily as attn's search does."""
    import ctranslate2
    from ctranslate2.converters import TransformersConverter

    from attn.model.export import export_model
    from attn.model.export.onnx_run import OnnxSeq2Seq
    from attn.model.importers import import_model

    _, tokenizer, model = pair
    imported = tmp_path / "imported"
    import_model(str(marian_dir), imported)
    export_model(imported, "ctranslate2", tmp_path / "ct2-attn")
    names = {p.name for p in (tmp_path / "ct2-attn").iterdir()}
    assert {"source.spm", "target.spm", "vocab.json", "model.bin"} <= names
    TransformersConverter(str(marian_dir)).convert(str(tmp_path / "ct2"))
    sentences = demo_sentences(20)
    tokens = [tokenizer.convert_ids_to_tokens(tokenizer(s).input_ids) for s in sentences]
    kwargs = {"beam_size": 4, "max_decoding_length": CAP}
    ours = ctranslate2.Translator(str(tmp_path / "ct2-attn")).translate_batch(
        [t[:-1] for t in tokens], **kwargs
    )
    theirs = ctranslate2.Translator(str(tmp_path / "ct2")).translate_batch(tokens, **kwargs)
    assert [r.hypotheses[0] for r in ours] == [r.hypotheses[0] for r in theirs]

    export_model(imported, "onnx", tmp_path / "onnx")
    runner = OnnxSeq2Seq(tmp_path / "onnx")
    src_ids, src_mask = runner.encode_texts(sentences)
    options = GenerationOptions(beam=1, max_length=CAP)
    src, mask = torch.from_numpy(src_ids), torch.from_numpy(src_mask)
    expected = [h[0].tokens for h in generate(model, src, mask, options)]
    got = runner.greedy_ids(src_ids, src_mask)
    # The ONNX runner caps by attn's relative rule; compare what ends before either cap.
    ended = [i for i, ids in enumerate(expected) if len(ids) < min(CAP, 10)]
    assert ended and [got[i] for i in ended] == [expected[i] for i in ended]
