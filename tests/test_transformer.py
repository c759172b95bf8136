"""The transformer as a whole: masking, padding, caching, learning, config."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
import torch.nn.functional as F

from attn.model.nn.config import ConfigError, ModelConfig, load_config, preset, save_config
from attn.model.nn.model import Classifier, build_model
from attn.model.nn.transformer import Transformer

PAD, BOS, EOS = 0, 2, 3
V = 24


def _model(seed=0, **overrides) -> Transformer | Classifier:
    torch.manual_seed(seed)
    fields = {**preset("tiny"), "vocab_size": V, "dropout": 0.0, "max_length": 64}
    return build_model(ModelConfig(**{**fields, **overrides})).eval()


def _ids(*rows):
    return torch.tensor(rows)


def test_presets_have_the_documented_sizes():
    assert (preset("tiny")["d_model"], preset("tiny")["n_encoder_layers"]) == (128, 2)
    small = preset("small")
    assert (small["d_model"], small["n_encoder_layers"], small["n_heads"], small["d_ff"]) == (
        256,
        3,
        4,
        1024,
    )
    base = preset("base")
    assert (base["d_model"], base["n_decoder_layers"], base["n_heads"], base["d_ff"]) == (
        512,
        6,
        8,
        2048,
    )


def test_changing_a_future_target_token_never_changes_earlier_outputs():
    model = _model()
    src = _ids([5, 6, 7, 8, EOS])
    tgt = _ids([BOS, 9, 10, 11, 12, 13])
    base = model(src, tgt)
    for t in range(1, tgt.size(1)):
        changed = tgt.clone()
        changed[0, t:] = torch.randint(4, V, (tgt.size(1) - t,), generator=torch.Generator())
        changed[0, t] = 4 if tgt[0, t] != 4 else 5
        out = model(src, changed)
        torch.testing.assert_close(out[:, :t], base[:, :t], atol=1e-5, rtol=1e-5)
        assert not torch.allclose(out[:, t], base[:, t])


def test_padding_does_not_change_real_token_outputs():
    model = _model()
    src_a, tgt_a = [5, 6, 7, EOS], [BOS, 8, 9]
    src_b, tgt_b = [10, 11, 12, 13, 14, 15, 16, EOS], [BOS, 17, 18, 19, 20, 21]
    alone = model(_ids(src_a), _ids(tgt_a))
    batch = model(_ids(src_a + [PAD] * 4, src_b), _ids(tgt_a + [PAD] * 3, tgt_b))  # (2, 6, V)
    torch.testing.assert_close(batch[0, :3], alone[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batch[1:], model(_ids(src_b), _ids(tgt_b)), atol=1e-5, rtol=1e-5)


def test_padding_does_not_change_classifier_output():
    model = _model(task="sentiment", labels=("neg", "pos"), n_decoder_layers=0)
    src = _ids([5, 6, 7, EOS])
    padded = _ids([5, 6, 7, EOS, PAD, PAD, PAD])
    alone = model.classify(src, src != PAD)
    with_pad = model.classify(padded, padded != PAD)
    torch.testing.assert_close(alone, with_pad, atol=1e-5, rtol=1e-5)
    assert alone.shape == (1, 2)


@pytest.mark.parametrize("pooling", ["mean", "max", "mean+max"])
def test_pooling_reads_only_real_pieces(pooling):
    model = _model(task="sentiment", labels=("neg", "pos"), n_decoder_layers=0, pooling=pooling)
    src = _ids([5, 6, 7, EOS, PAD, PAD], [8, 9, 10, 11, 12, EOS])  # (2, 6)
    mask = src != PAD
    memory = model.encode(src, mask)  # (2, 6, d)
    real = memory[0, :4]  # (4, d): the first row without its padding
    parts = {"mean": [real.mean(0)], "max": [real.amax(0)]}
    parts["mean+max"] = parts["mean"] + parts["max"]
    expected = model.classifier(torch.cat(parts[pooling]))  # (2,)
    logits = model.classify(src, mask)  # (2, 2)
    torch.testing.assert_close(logits[0], expected, atol=1e-5, rtol=1e-5)
    alone = model.classify(src[:1, :4], mask[:1, :4])
    torch.testing.assert_close(logits[:1], alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("order", "scale"), [(2, "none"), (3, "none"), (3, "ratio")])
def test_bag_of_ngrams_counts_each_distinct_piece_and_run_once(order, scale):
    buckets = 4 * V
    model = _model(
        task="sentiment",
        labels=("neg", "pos"),
        n_decoder_layers=0,
        ngram_buckets=buckets,
        ngram_order=order,
        ngram_scale=scale,
    )
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        model.ngrams.weight.copy_(torch.randn(buckets, 2, generator=generator))
        if scale == "ratio":
            model.ngrams.ratios.copy_(torch.randn(buckets, 2, generator=generator))
    # The classifier's weight: with ratios, the weight scaled by them.
    weight = model.ngrams.weight * (1 if scale == "none" else model.ngrams.ratios)
    rows = [[5, 6, 5, 6, 7, EOS], [8, 9, EOS]]
    src = _ids(rows[0], rows[1] + [PAD] * 3)  # (2, 6)
    mask = src != PAD
    for row, logits in zip(rows, model.ngrams(src, mask), strict=True):
        pairs = {(a * 1_000_003 + b) % (buckets - V) + V for a, b in itertools.pairwise(row)}
        triples = {
            ((a * 1_000_003 + b) * 1_000_003 + c) % (buckets - V) + V
            for a, b, c in zip(row, row[1:], row[2:], strict=False)
        }
        # [5, 6, 5, 6, 7] repeats the piece 5 and the pair (5, 6): 4 pieces, 4 pairs, 4 triples
        features = set(row) | pairs | (triples if order == 3 else set())
        if row is rows[0]:
            assert len(features) == 4 * order
        expected = weight[sorted(features)].sum(0) / len(features) ** 0.5
        torch.testing.assert_close(logits, expected)
    # The answer is the mean of the two classifiers' log-probabilities.
    logits, bag = model.class_logits(src, mask)
    combined = model.classify(src, mask)
    torch.testing.assert_close(combined, (logits.log_softmax(-1) + bag.log_softmax(-1)) / 2)
    torch.testing.assert_close(combined[1:], model.classify(src[1:, :3], mask[1:, :3]))


def test_the_ratios_of_a_bag_of_ngrams_are_the_log_count_ratios_of_each_class():
    buckets = 4 * V
    model = _model(
        task="sentiment", labels=("neg", "pos"), n_decoder_layers=0, ngram_buckets=buckets
    )
    bag = model.ngrams
    assert bag.ratios is not None and not bag.ratios.any()  # the default scale: "ratio"
    # Piece 5 in both negative inputs (twice in one: counted once), 6 in the positive one.
    src = _ids([5, 5, 7, EOS], [5, 8, EOS, PAD], [6, 7, EOS, PAD])  # (3, 4)
    labels = torch.tensor([0, 0, 1])
    halves = [(src[:2], labels[:2]), (src[2:], labels[2:])]  # batches add up
    bag.fit_ratios((s, s != PAD, y) for s, y in halves)
    # The ratio of piece 5 by hand, from the number of distinct features of each class.
    _, weights = bag.features(src, src != PAD)
    per_class = [int((weights[labels == c] > 0).sum()) for c in (0, 1)]
    neg = (2 + 1) / (per_class[0] + buckets)  # smoothing 1 in every bucket
    pos = (0 + 1) / (per_class[1] + buckets)
    assert bag.ratios[5, 0].item() == pytest.approx(math.log(neg / pos), rel=1e-5)
    assert bag.ratios[5, 1].item() == pytest.approx(math.log(pos / neg), rel=1e-5)
    assert bag.ratios[6, 1] > 0 > bag.ratios[6, 0]  # only in the positive input
    assert bag.ratios[9].tolist() == [0.0, 0.0]  # never seen: no weight at all
    # The bag reads the ratios: a positive-only piece leans positive once it has a weight.
    with torch.no_grad():
        bag.weight.fill_(1.0)
    scores = bag(_ids([6, EOS]), _ids([6, EOS]) != PAD)
    assert scores[0, 1] > scores[0, 0]


def test_a_config_written_before_the_ratio_scale_keeps_the_bag_unscaled():
    legacy = ModelConfig(task="sentiment", labels=("a", "b"), ngram_buckets=1 << 16).to_dict()
    del legacy["ngram_scale"]
    config = ModelConfig.from_dict(legacy)
    assert config.ngram_scale == "none"
    assert "ngrams.ratios" not in build_model(config).state_dict()
    assert ModelConfig(task="sentiment", labels=("a", "b")).ngram_scale == "ratio"


def test_attention_records_cover_every_layer_and_kind():
    model = _model()
    src, tgt = _ids([5, 6, 7, EOS]), _ids([BOS, 8, 9])
    records: list = []
    mask = src != PAD
    memory = model.encode(src, mask, attn=records)
    logits = model.decode(tgt, memory, mask, attn=records)
    torch.testing.assert_close(logits, model(src, tgt), atol=1e-5, rtol=1e-5)
    kinds = [(r.kind, r.layer, tuple(r.weights.shape)) for r in records]
    assert kinds == [
        ("encoder", 0, (1, 4, 4, 4)),
        ("encoder", 1, (1, 4, 4, 4)),
        ("decoder", 0, (1, 4, 3, 3)),
        ("cross", 0, (1, 4, 3, 4)),
        ("decoder", 1, (1, 4, 3, 3)),
        ("cross", 1, (1, 4, 3, 4)),
    ]


def _greedy(model: Transformer, src: torch.Tensor, max_len: int) -> list[list[int]]:
    """Plain greedy decoding by full recomputation: the simplest correct decoder."""
    mask = src != PAD
    memory = model.encode(src, mask)
    out = torch.full((src.size(0), 1), BOS)
    for _ in range(max_len):
        nxt = model.decode(out, memory, mask)[:, -1].argmax(-1, keepdim=True)
        out = torch.cat([out, nxt], dim=1)
    result = []
    for row in out[:, 1:].tolist():
        result.append(row[: row.index(EOS)] if EOS in row else row)
    return result


@pytest.mark.slow
def test_tiny_model_overfits_a_reverse_task_and_greedy_reproduces_it():
    torch.manual_seed(0)
    model = _model(d_model=64, d_ff=128, n_heads=4).train()
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(3, 8, (16,), generator=g)
    seqs = [torch.randint(4, V, (int(n),), generator=g).tolist() for n in lengths]
    width = max(len(s) for s in seqs) + 1
    src = _ids(*[s + [EOS] + [PAD] * (width - len(s) - 1) for s in seqs])
    targets = [s[::-1] for s in seqs]
    tgt_in = _ids(*[[BOS, *t] + [PAD] * (width - len(t) - 1) for t in targets])
    tgt_out = _ids(*[[*t, EOS] + [PAD] * (width - len(t) - 1) for t in targets])

    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(300):
        loss = F.cross_entropy(model(src, tgt_in).transpose(1, 2), tgt_out, ignore_index=PAD)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05
    model.eval()
    with torch.inference_mode():
        assert _greedy(model, src, width + 2) == targets


def test_untrained_model_does_not_reverse():
    """The bar above is not met by chance: random weights get the reverse task wrong."""
    model = _model(d_model=64, d_ff=128)
    src = _ids([5, 6, 7, 8, EOS])
    with torch.inference_mode():
        assert _greedy(model, src, 6) != [[8, 7, 6, 5]]


def test_config_json_round_trip(tmp_path):
    config = ModelConfig(task="sentiment", vocab_size=500, labels=("negative", "positive"))
    path = tmp_path / "config.json"
    save_config(config, path, train={"lr": 1e-3})
    loaded, extra = load_config(path)
    assert loaded == config
    assert extra["train"] == {"lr": 1e-3}
    assert extra["format_version"] == 1
    data = json.loads(path.read_text())
    assert data["model"]["labels"] == ["negative", "positive"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"d_model": 10, "n_heads": 3}, "d_model must be divisible by n_heads, got 10 and 3"),
        ({"d_model": 10**9}, "d_model must be between 8 and 8192, got 1000000000"),
        ({"max_length": 10**8}, "max_length must be between 8 and 16384"),
        ({"d_model": "256"}, "d_model must be an integer, got '256'"),
        ({"dropout": 1.5}, r"dropout must be a number in \[0, 1\)"),
        ({"task": "poetry"}, "task must be one of translate, summarize, sentiment"),
        ({"task": "sentiment", "labels": ("only",)}, "at least 2 labels"),
        ({"pooling": "sum"}, "pooling must be one of mean, max, mean\\+max"),
        ({"keep": "tail"}, "keep must be one of head, head\\+tail"),
        ({"ngram_buckets": 1000}, "ngram_buckets must be 0 or at least twice vocab_size"),
        ({"ngram_buckets": 1 << 20}, "ngram_buckets is for sentiment models, not translate"),
        ({"ngram_order": 4}, "ngram_order must be"),
    ],
)
def test_config_rejects_bad_values(changes, message):
    with pytest.raises(ConfigError, match=message):
        ModelConfig(**changes)


def test_config_from_newer_attn_is_refused(tmp_path):
    path = tmp_path / "config.json"
    save_config(ModelConfig(), path)
    data = json.loads(path.read_text())
    data["format_version"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="newer attn"):
        load_config(path)


def test_unknown_config_field_is_refused():
    with pytest.raises(ConfigError, match="unknown config field"):
        ModelConfig.from_dict({"d_model": 128, "n_hedas": 4})


def test_column_major_linear_weights_change_no_output():
    from attn.model.device import column_major_linears

    model = _model()
    src, tgt = _ids([5, 6, 7, EOS], [8, 9, EOS, PAD]), _ids([BOS, 5, 6], [BOS, 8, PAD])
    with torch.no_grad():
        before = model(src, tgt)
        column_major_linears(model)
        after = model(src, tgt)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(m.weight.t().is_contiguous() for m in linears)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)


def test_classifier_weights_keep_the_names_saved_models_use():
    """Sentiment models saved before the head moved out of transformer.py load: the same names."""
    model = _model(task="sentiment", labels=("neg", "pos"), n_encoder_layers=1, ngram_buckets=4 * V)
    names = {name.split(".")[0] for name in model.state_dict()}
    assert names == {"embed", "encoder", "encoder_norm", "classifier", "ngrams"}
    assert "encoder.0.self_attn.q_proj.weight" in model.state_dict()
    assert isinstance(_model(), Transformer)
