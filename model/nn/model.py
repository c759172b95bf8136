"""The network of each task (`build_model`), and the sentiment head on the encoder.

Sentiment uses the encoder with a classification head (`Classifier`): the encoder output
pooled over the real pieces, then a linear layer. Beside it, a model may have a bag of
n-grams (`NgramBag`), a linear classifier over the pieces of the input and runs of them;
the answer is then the mean of the two classifiers' log-probabilities.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attn.model.nn.config import ModelConfig
from attn.model.nn.dropout import Dropout
from attn.model.nn.transformer import AttentionRecord, Encoder, Transformer

# Multiplier of the hash of a run of pieces in the bag of n-grams (a prime). A triple's hash
# reaches vocab_size * it**2, below 2**63 for any vocabulary ModelConfig allows (<= 1M).
_RUN_HASH = 1_000_003


def build_model(config: ModelConfig) -> Transformer | Classifier:
    """The network of `config.task`, freshly initialized: the encoder-decoder `Transformer`
    to translate or summarize, the `Classifier` for sentiment."""
    return Classifier(config) if config.task == "sentiment" else Transformer(config)


def masked_pool(memory: Tensor, mask: Tensor, pooling: str) -> Tensor:
    """One vector per input from the encoder output at its real pieces: their "mean", their
    "max", or both concatenated ("mean+max").

    Shape: memory (B, S, d), mask (B, S) True = real piece -> (B, d), or (B, 2d) for both.
    """
    pooled = []
    if pooling in ("mean", "mean+max"):
        m = mask.unsqueeze(-1).to(memory.dtype)  # (B, S, 1)
        pooled.append((memory * m).sum(1) / m.sum(1).clamp(min=1.0))  # (B, d)
    if pooling in ("max", "mean+max"):
        masked = memory.masked_fill(~mask.unsqueeze(-1), -torch.inf)  # (B, S, d)
        pooled.append(masked.amax(1).clamp(min=torch.finfo(memory.dtype).min))
    return torch.cat(pooled, -1)


class NgramBag(nn.EmbeddingBag):
    """A linear classifier over the set of pieces and runs of adjacent pieces (pairs, and
    with `order` 3 triples) of each input.

    A piece is its own bucket; a run hashes into the buckets above the vocabulary. Each
    distinct feature counts once, weighted 1 / sqrt(number of features), so long and short
    inputs score on one scale. The weight, (buckets, n_classes), is the classifier.

    With `scale` "ratio", the classifier's weight is `weight * ratios`: per feature and class,
    the log-count ratio of the feature between the training inputs of that class and the
    rest (`fit_ratios`, before training), as NBSVM scales its features (Wang and Manning
    2012). A feature that tells the classes apart then learns fast, and one the training
    data never showed stays at 0.

    Args:
        vocab_size: pieces in the vocabulary (the first buckets).
        buckets: all buckets (config.ngram_buckets, at least twice vocab_size).
        order: the longest run: 2 or 3.
        n_classes: classes scored.
        scale: "ratio" or "none" (config.ngram_scale).

    Shape: src, src_mask (B, S) -> (B, n_classes).
    """

    def __init__(
        self, vocab_size: int, buckets: int, order: int, n_classes: int, scale: str = "none"
    ) -> None:
        super().__init__(buckets, n_classes, mode="sum")
        self.vocab_size = vocab_size
        self.order = order
        self.ratios: Tensor | None
        if scale == "ratio":
            self.register_buffer("ratios", torch.zeros(buckets, n_classes))
        else:
            self.ratios = None

    def forward(self, src: Tensor, src_mask: Tensor) -> Tensor:  # type: ignore[override]
        features, weights = self.features(src, src_mask)
        if self.ratios is None:
            return super().forward(features, per_sample_weights=weights)  # (B, C)
        # Only the rows of the features present: (B, F, C) rather than all the buckets.
        scaled = F.embedding(features, self.weight) * F.embedding(features, self.ratios)
        return (scaled * weights.unsqueeze(-1)).sum(1)  # (B, C)

    @torch.no_grad()
    def class_counts(self, batches: Iterable[tuple[Tensor, Tensor, Tensor]]) -> Tensor:
        """How many inputs of each class hold each feature (a feature counts once an input).

        Shape: each batch: src, src_mask (B, S) and labels (B,) class ids -> (buckets, C)
        float64.
        """
        counts = torch.zeros(self.weight.shape, dtype=torch.float64, device=self.weight.device)
        for src, src_mask, labels in batches:
            features, weights = self.features(src, src_mask)  # (B, F)
            rows = labels.unsqueeze(1).expand_as(features)  # (B, F)
            counts.index_put_((features, rows), (weights > 0).to(counts.dtype), accumulate=True)
        return counts

    @torch.no_grad()
    def fit_ratios(
        self, batches: Iterable[tuple[Tensor, Tensor, Tensor]], smoothing: float = 1.0
    ) -> None:
        """Count `ratios` from labelled inputs: for each class c and feature, log(p_c / |p_c|)
        - log(q_c / |q_c|), where p_c counts the inputs of class c holding the feature and
        q_c those of the other classes, each plus `smoothing`; 0 for features never seen.

        Shape: each batch: src, src_mask (B, S) and labels (B,) class ids.
        """
        assert self.ratios is not None, "fit_ratios needs scale='ratio'"
        counts = self.class_counts(batches)  # (buckets, C)
        rest = counts.sum(1, keepdim=True) - counts  # (buckets, C)
        own, other = counts + smoothing, rest + smoothing
        ratios = (own / own.sum(0)).log() - (other / other.sum(0)).log()
        self.ratios.copy_(ratios * (counts.sum(1, keepdim=True) > 0))

    def features(self, src: Tensor, src_mask: Tensor) -> tuple[Tensor, Tensor]:
        """The buckets of each input's features and their weights: 1 / sqrt(number of
        distinct features) on the first of each distinct feature, 0 on repeats and padding.

        Shape: src, src_mask (B, S) -> (B, F) bucket ids and (B, F) weights.
        """
        span = self.num_embeddings - self.vocab_size
        features = [src.masked_fill(~src_mask, 0)]
        hashed, valid = src, src_mask  # (B, S - n + 1) at n = 1
        for n in range(2, self.order + 1):
            hashed = hashed[:, :-1] * _RUN_HASH + src[:, n - 1 :]  # (B, S - n + 1)
            valid = valid[:, :-1] & src_mask[:, n - 1 :]
            runs = (hashed % span + self.vocab_size).masked_fill(~valid, 0)
            features.append(runs)
        features = torch.cat(features, dim=1)  # (B, F)
        features = features.sort(dim=1).values  # 0 (padding) marks no feature
        fresh = torch.ones_like(features, dtype=torch.bool)
        fresh[:, 1:] = features[:, 1:] != features[:, :-1]  # first of equal features
        weights = (fresh & (features != 0)).to(self.weight.dtype)  # (B, F)
        return features, weights / weights.sum(1, keepdim=True).clamp(min=1.0).sqrt()


class Classifier(Encoder):
    """The transformer's encoder (no decoder) with a classification head: masked pooling
    (`config.pooling`), dropout, linear; with `config.ngram_buckets`, an `NgramBag` beside it.

    Args:
        config: the architecture; `config.labels` are the classes.

    Shape:
        src: (B, S) piece ids, padded with `config.pad_id`; src_mask: (B, S) True = real piece.
        returns: (B, n_classes) scores; softmax gives the probabilities.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        c = config
        pooled = c.d_model * (2 if c.pooling == "mean+max" else 1)
        self.dropout = Dropout(c.dropout)
        self.classifier = nn.Linear(pooled, c.n_classes)
        self.ngrams = (
            NgramBag(c.vocab_size, c.ngram_buckets, c.ngram_order, c.n_classes, c.ngram_scale)
            if c.ngram_buckets
            else None
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.ngrams is not None:
            nn.init.zeros_(
                self.ngrams.weight
            )  # every class equally likely until features say otherwise

    def classify(
        self, src: Tensor, src_mask: Tensor, attn: list[AttentionRecord] | None = None
    ) -> Tensor:
        """Class scores: the transformer's logits, or with an n-gram bag the mean of its
        log-probabilities and those of the bag (softmax gives probabilities either way).

        Args:
            attn: as for `encode`.

        Shape: src, src_mask (B, S) -> (B, n_classes).
        """
        logits, bag = self.class_logits(src, src_mask, attn)
        if bag is None:
            return logits
        return (logits.log_softmax(-1) + bag.log_softmax(-1)) / 2

    def class_logits(
        self, src: Tensor, src_mask: Tensor, attn: list[AttentionRecord] | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """The two classifiers apart (training gives each its own loss): the logits of the
        pooled encoder output, and those of the bag of n-grams (None without one).

        Shape: src, src_mask (B, S) -> (B, n_classes) each.
        """
        bag = None if self.ngrams is None else self.ngrams(src, src_mask)
        return self.encoder_logits(src, src_mask, attn), bag

    def encoder_logits(
        self, src: Tensor, src_mask: Tensor, attn: list[AttentionRecord] | None = None
    ) -> Tensor:
        """The logits of the pooled encoder output alone, without the bag.

        Shape: src, src_mask (B, S) -> (B, n_classes).
        """
        memory = self.encode(src, src_mask, attn)  # (B, S, d_model)
        pooled = masked_pool(memory, src_mask, self.config.pooling)  # (B, d_model or 2 d_model)
        return self.classifier(self.dropout(pooled))
