"""Incremental decoding (attn.model.decoding.incremental): its steps equal the general decoder
(`Transformer.decode` on the whole prefix), also after beam reordering and sentences leaving;
int8 steps stay close to float32."""

from __future__ import annotations

import pytest
import torch

from attn.model.decoding import incremental
from attn.model.decoding.incremental import FEW_POSITIONS, FEW_ROWS, StepWeights
from attn.model.device import packed_linear, row_bucket
from attn.model.nn.config import ModelConfig
from attn.model.nn.transformer import Transformer

PAD, BOS, EOS = 0, 2, 3


def _model(activation: str = "relu") -> Transformer:
    torch.manual_seed(0)
    config = ModelConfig(
        task="translate",
        vocab_size=40,
        d_model=64,
        n_heads=4,
        n_encoder_layers=2,
        n_decoder_layers=2,
        d_ff=96,
        dropout=0.0,
        max_length=32,
        activation=activation,
    )
    return Transformer(config).eval()


def _batch(b: int, s: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    """Random sources with EOS and some padding. Shape: (b, s) twice."""
    g = torch.Generator().manual_seed(b)
    src = torch.randint(4, 40, (b, s), generator=g)
    lengths = torch.randint(1, s, (b,), generator=g)
    lengths[0] = s - 1  # one row without padding
    for i, n in enumerate(lengths.tolist()):
        src[i, n] = EOS
        src[i, n + 1 :] = PAD
    return src, src != PAD


@pytest.mark.parametrize("beams", [1, 3])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
# The padded softmax at both widths a CPU may get (set here, whatever this CPU's); a source
# shorter than the width (padded) and a longer one; steps over at most FEW_POSITIONS
# positions, fewer than the width, and more.
@pytest.mark.parametrize("width", [8, 16])
@pytest.mark.parametrize("longer", [False, True])
# Products through oneDNN with prepacked weights (what CPU inference uses), or plain ones.
@pytest.mark.parametrize("pack", [False, True])
@torch.inference_mode()
def test_steps_equal_decoding_the_whole_prefix(beams, activation, width, longer, pack, monkeypatch):
    monkeypatch.setattr(incremental, "SOFTMAX_WIDTH", width)
    source, steps = (width + 2, width + 4) if longer else (7, 6)
    assert FEW_POSITIONS < 6
    model = _model(activation)
    src, mask = _batch(4, source)
    memory = model.encode(src, mask)
    rows = src.size(0) * beams
    tgt = torch.randint(4, 40, (rows, steps), generator=torch.Generator().manual_seed(1))
    tgt[:, 0] = BOS
    state = StepWeights(model, pack=pack).start(memory, mask, beams, width=steps)
    full_memory, full_mask = memory.repeat_interleave(beams, 0), mask.repeat_interleave(beams, 0)
    for t in range(steps):
        states = state.step(tgt[:, t], t)  # (R, d)
        expected = model.decode(tgt[:, : t + 1], full_memory, full_mask, hidden=True)[:, -1]
        torch.testing.assert_close(states, expected, atol=1e-5, rtol=1e-5)


@torch.inference_mode()
def test_reordered_rows_and_leaving_sentences_continue_their_own_prefixes():
    model = _model()
    beams = 2
    src, mask = _batch(3)
    memory = model.encode(src, mask)
    tgt = torch.randint(4, 40, (6, 5), generator=torch.Generator().manual_seed(2))
    tgt[:, 0] = BOS
    state = StepWeights(model).start(memory, mask, beams, width=8)
    for t in range(3):
        state.step(tgt[:, t], t)
    # Beam reordering: row i continues row parent[i] (within its sentence).
    parent = torch.tensor([1, 1, 2, 3, 5, 4])
    tgt = tgt[parent]
    state.reorder(parent, 3)
    state.step(tgt[:, 3], 3)
    # Sentence 1 leaves: its rows 2 and 3 go, the others keep their places.
    keep, rows = torch.tensor([0, 2]), torch.tensor([0, 1, 4, 5])
    tgt = tgt[rows]
    state.reorder(rows, 4)
    state.keep_sentences(keep)
    states = state.step(tgt[:, 4], 4)
    expected = model.decode(
        tgt[:, :5],
        memory[keep].repeat_interleave(beams, 0),
        mask[keep].repeat_interleave(beams, 0),
        hidden=True,
    )[:, -1]
    torch.testing.assert_close(states, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("sentences", [2, FEW_ROWS])  # fewer rows than FEW_ROWS, and as many
@torch.inference_mode()
def test_int8_steps_stay_close_to_float32(sentences):
    model = _model()
    src, mask = _batch(sentences)
    memory = model.encode(src, mask)
    tgt = torch.randint(4, 40, (sentences, 4), generator=torch.Generator().manual_seed(3))
    exact = StepWeights(model).start(memory, mask, 1, width=4)
    low = StepWeights(model, "int8").start(memory, mask, 1, width=4)
    for t in range(4):
        a, b = exact.step(tgt[:, t], t), low.step(tgt[:, t], t)
        assert b.dtype == torch.float32
        # Final layer-normed states: unit scale, so an absolute tolerance.
        torch.testing.assert_close(b, a, atol=0.15, rtol=0.0)
        # int8 really ran, but on fewer than FEW_ROWS rows (here also the 14 of the memory)
        # the layers run float32.
        assert torch.equal(a, b) == (sentences < FEW_ROWS)


@torch.inference_mode()
def test_packed_output_projection_equals_the_models():
    # The whole-vocabulary projection, tied to the embeddings, with a logits bias.
    model = _model()
    model.logits_bias = torch.randn(40)
    states = torch.randn(5, 64)
    packed = StepWeights(model, pack=True).output
    if not torch.backends.mkldnn.is_available():
        assert packed is None
        return
    assert packed is not None
    torch.testing.assert_close(packed(states), model.project(states), atol=1e-5, rtol=1e-5)
    assert StepWeights(model).output is None  # unpacked: the model's own projection


@torch.inference_mode()
def test_packed_products_round_rows_up_to_few_shapes_and_answer_each_row():
    # oneDNN caches a kernel per shape: row counts are rounded up (padded), the padding is
    # dropped from the answer, and no row's result depends on its batch's size.
    rows = (1, 7, 100, 127, 128, 255, 256, 1000)
    assert [row_bucket(r) for r in rows] == [8, 8, 8, 8, 16, 16, 32, 64]
    assert all(-r % row_bucket(r) <= r // 8 for r in range(64, 5000))  # at most 12.5% more
    torch.manual_seed(0)
    weight, bias = torch.randn(48, 64), torch.randn(48)
    linear = packed_linear(weight, bias)
    if linear is None:
        pytest.skip("this torch build has no oneDNN linear kernels")
    x = torch.randn(300, 64)
    for n in (1, 5, 13, 130, 300):
        y = linear(x[:n])
        assert y.shape == (n, 48)
        torch.testing.assert_close(y, torch.nn.functional.linear(x[:n], weight, bias))
        torch.testing.assert_close(y, linear(x)[:n], atol=1e-5, rtol=1e-5)


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="unknown precision 'float16'"):
        StepWeights(_model(), "float16")


@pytest.mark.parametrize(
    "capability, width", [("AVX512", 16), ("AVX2", 8), ("DEFAULT", 0), ("SVE256", 0)]
)
def test_softmax_padding_follows_the_cpu_vector_width(capability, width, monkeypatch):
    # Padding 9-15 scores to 16 is slower with AVX2, whose softmax is vectorized by 8; where
    # nothing was measured, nothing is padded.
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    assert incremental.softmax_width() == width
