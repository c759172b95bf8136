"""Task metrics: BLEU/chrF (translate), ROUGE (summarize), accuracy/macro-F1 (sentiment).

Every score is in percent (0-100), the way sacrebleu reports BLEU. Each task has one
primary metric, the one that picks the best checkpoint during training.
"""

from __future__ import annotations

from collections.abc import Sequence

# The metric that decides which checkpoint is "best"; higher is better for all three.
PRIMARY_METRIC = {"translate": "bleu", "summarize": "rougeL", "sentiment": "accuracy"}


def translation_scores(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Corpus BLEU and chrF (sacrebleu defaults: 13a tokenization, one reference)."""
    import sacrebleu

    refs = [list(references)]
    return {
        "bleu": sacrebleu.corpus_bleu(list(hypotheses), refs).score,
        "chrf": sacrebleu.corpus_chrf(list(hypotheses), refs).score,
    }


def rouge_scores(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F1 with stemming (rouge-score), one reference per hypothesis."""
    from rouge_score import rouge_scorer

    names = ("rouge1", "rouge2", "rougeL")
    scorer = rouge_scorer.RougeScorer(list(names), use_stemmer=True)
    totals = dict.fromkeys(names, 0.0)
    for hyp, ref in zip(hypotheses, references, strict=True):
        scores = scorer.score(ref, hyp)
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
