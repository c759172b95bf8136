"""Validation: the loss on the whole validation set, the task's metrics on a sample of it.

Metrics (attn.model.evaluation.metrics): BLEU and chrF for translation, ROUGE for
summarization (greedy decoding), accuracy and macro-F1 for sentiment.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from attn.model.evaluation.metrics import task_scores
from attn.model.nn.config import ModelConfig
from attn.model.nn.transformer import Transformer
from attn.model.training.corpus import Split, token_batches
from attn.model.training.objective import ignored_target
from attn.model.training.precision import Precision

# Validation decodes at most this many examples (the loss uses the whole validation set).
VAL_SAMPLE = 500


class Validator:
    """Scores a model on the validation split.

    Args:
        config: the model's config; tokenizer: decodes the greedy outputs.
        split: the encoded validation examples; examples: the same as text (`.tgt`: the
            reference or label).
        batch_tokens: padded tokens per batch.
    """

    def __init__(
        self,
        config: ModelConfig,
        tokenizer: Any,
        split: Split,
        examples: Sequence[Any],
        batch_tokens: int,
        precision: Precision,
        device: torch.device,
    ) -> None:
        self.config, self.tokenizer, self.split, self.examples = config, tokenizer, split, examples
        self.batch_tokens, self.precision, self.device = batch_tokens, precision, device

    @torch.no_grad()
    def scores(self, model: Transformer, limit: int | None = None) -> dict[str, float]:
        """The validation loss (no label smoothing) and the task's metrics, in percent;
        `limit`: of the first that many examples only (the pre-flight check)."""
        task = self.config.task
        model.eval()
        total, count = 0.0, 0
        predictions: list[int] = []
        order: list[int] = []
        n = len(self.split.lengths) if limit is None else min(limit, len(self.split.lengths))
        for index in token_batches(self.split.lengths[:n], self.batch_tokens, None):
            src, tgt_in, target, _, n_tgt = self.split.batch(index, self.config, self.device)
            with self.precision.autocast():
                if task == "sentiment":
                    logits = model.classify(src, src != self.config.pad_id)
                    predictions += logits.argmax(-1).tolist()
                    order += index.tolist()
                else:
                    logits = model(src, tgt_in).flatten(0, 1)
                    target = target.flatten()
            total += F.cross_entropy(
                logits.float(), target, ignore_index=ignored_target(self.config), reduction="sum"
            ).item()
            count += n_tgt
        scores = {"val_loss": total / max(1, count)}
        if task == "sentiment":
            predicted = [""] * len(order)
            for i, p in zip(order, predictions, strict=True):
                predicted[i] = self.config.labels[p]
            gold = [ex.tgt for ex in self.examples[:n]]
            scores.update(task_scores(task, predicted, gold))
        else:
            sample = list(range(min(VAL_SAMPLE, n)))
            hyps = self._greedy(model, sample)
            scores.update(task_scores(task, hyps, [self.examples[i].tgt for i in sample]))
        return scores

    def _greedy(self, model: Transformer, sample: list[int]) -> list[str]:
        from attn.model.decoding.search import GenerationOptions, generate

        options = GenerationOptions(beam=1)
        outputs: list[str] = [""] * len(sample)
        src_seqs, pad = self.split.src, self.config.pad_id
        lengths = [src_seqs.lengths[i] for i in sample]
        for batch in token_batches(lengths, self.batch_tokens, None):
            index = [sample[b] for b in batch]
            src = src_seqs.batch(index, pad).to(self.device)
            with self.precision.autocast():
                hyps = generate(model, src, src != pad, options)
            texts = self.tokenizer.decode([h[0].tokens for h in hyps])
            for b, text in zip(batch, texts, strict=True):
                outputs[b] = text
        return outputs
