"""Task metrics: BLEU/chrF (translate), ROUGE (summarize), accuracy/macro-F1 and the
confusion matrix (sentiment).

Every score is in percent (0-100), the way sacrebleu reports BLEU. Each task has one
primary metric, the one that picks the best checkpoint during training.
"""

from __future__ import annotations

from collections.abc import Sequence

# The metric that decides which checkpoint is "best"; higher is better for all three.
PRIMARY_METRIC = {"translate": "bleu", "summarize": "rougeL", "sentiment": "accuracy"}


def translation_scores(hypotheses: Sequence[str], *references: Sequence[str]) -> dict[str, float]:
    """Corpus BLEU and chrF (sacrebleu defaults: 13a tokenization) against one or more
    reference sets, each line-aligned with `hypotheses`."""
    return sacrebleu_scores(hypotheses, references)[0]


def sacrebleu_scores(
    hypotheses: Sequence[str], references: Sequence[Sequence[str]]
) -> tuple[dict[str, float], dict[str, str]]:
    """Corpus BLEU and chrF, and the sacrebleu signature of each, which a reader needs to
    compare scores (e.g. `nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0`).

    Args:
        hypotheses: detokenized system outputs.
        references: one or more reference sets, each line-aligned with `hypotheses`.
    """
    from sacrebleu.metrics import BLEU, CHRF

    hyps = list(hypotheses)
    refs = [list(r) for r in references]
    scores, signatures = {}, {}
    for name, metric in (("bleu", BLEU()), ("chrf", CHRF())):
        scores[name] = metric.corpus_score(hyps, refs).score
        signatures[name] = str(metric.get_signature())
    return scores, signatures


def rouge_scores(hypotheses: Sequence[str], *references: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F1 with stemming (rouge-score) against one or more reference sets.

    With several references, each example counts its best reference, per metric (rouge-score's
    `score_multi`: the highest F1 of the example), then the examples are averaged.
    """
    from rouge_score import rouge_scorer

    names = ("rouge1", "rouge2", "rougeL")
    scorer = rouge_scorer.RougeScorer(list(names), use_stemmer=True)
    totals = dict.fromkeys(names, 0.0)
    for hyp, *refs in zip(hypotheses, *references, strict=True):
        scores = scorer.score_multi(refs, hyp)
        for name in names:
            totals[name] += scores[name].fmeasure
    n = max(1, len(hypotheses))
    return {name: 100.0 * total / n for name, total in totals.items()}


def classification_scores(predicted: Sequence[str], gold: Sequence[str]) -> dict[str, float]:
    """Accuracy and macro-F1 over the labels that occur in either list."""
    if len(predicted) != len(gold):
        raise ValueError(f"got {len(predicted)} predictions for {len(gold)} labels")
    n = max(1, len(gold))
    accuracy = sum(p == g for p, g in zip(predicted, gold, strict=True)) / n
    f1s = []
    for label in sorted(set(predicted) | set(gold)):
        tp = sum(p == label and g == label for p, g in zip(predicted, gold, strict=True))
        fp = sum(p == label and g != label for p, g in zip(predicted, gold, strict=True))
        fn = sum(p != label and g == label for p, g in zip(predicted, gold, strict=True))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return {"accuracy": 100.0 * accuracy, "macro_f1": 100.0 * sum(f1s) / max(1, len(f1s))}


def confusion_matrix(
    predicted: Sequence[str], gold: Sequence[str], labels: Sequence[str] = ()
) -> tuple[list[str], list[list[int]]]:
    """Counts of (gold, predicted) label pairs: `matrix[i][j]` examples of label i predicted
    as label j.

    Returns:
        (labels, matrix): `labels` in the given order (e.g. the model's), then any other
        label found in either list, sorted; `matrix` is len(labels) x len(labels).
    """
    if len(predicted) != len(gold):
        raise ValueError(f"got {len(predicted)} predictions for {len(gold)} labels")
    order = list(labels) + sorted((set(predicted) | set(gold)) - set(labels))
    index = {label: i for i, label in enumerate(order)}
    matrix = [[0] * len(order) for _ in order]
    for p, g in zip(predicted, gold, strict=True):
        matrix[index[g]][index[p]] += 1
    return order, matrix


def task_scores(
    task: str, hypotheses: Sequence[str], references: Sequence[str]
) -> dict[str, float]:
    """The metrics of `task` for system outputs (texts or label names) against references.

    Raises:
        ValueError: unknown task, or the two lists differ in length.
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"got {len(hypotheses)} outputs for {len(references)} references")
    if task == "translate":
        return translation_scores(hypotheses, references)
    if task == "summarize":
        return rouge_scores(hypotheses, references)
    if task == "sentiment":
        return classification_scores(hypotheses, references)
    raise ValueError(f"unknown task {task!r}; choose one of {', '.join(PRIMARY_METRIC)}")
