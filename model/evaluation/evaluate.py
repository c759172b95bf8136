"""Evaluation: score a model, or outputs already written, against references.

The library behind `attn evaluate`. Reading a test split, decoding it with the inference
pipeline and scoring are separate steps, so the CLI can score files without loading a model
(and without importing torch). The scores come from `attn.model.evaluation.metrics`, the module that
training validates with: the same BLEU, ROUGE and accuracy, here on a whole split.

References are held as reference *sets*: `references[k][i]` is the k-th reference of
example i, the layout sacrebleu uses, so that DialogSum's three summaries per dialogue are
three line-aligned files.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from attn.data import jsonlines
from attn.data.checksum import sha256_file
from attn.model.decoding.defaults import decoding_defaults
from attn.model.evaluation.metrics import (
    classification_scores,
    confusion_matrix,
    rouge_scores,
    sacrebleu_scores,
)
from attn.model.storage.layout import ModelDir

# Files read as a split (source and references together) rather than as plain lines.
_SPLIT_SUFFIXES = (".jsonl", ".tsv", ".csv")

# Called after each batch with the sentences done in it and the pieces generated for them.
ProgressCallback = Callable[[int, int], None]


@dataclass
class TestSet:
    """What a model is evaluated on.

    Attributes:
        sources: the inputs, one per example.
        references: one or more reference sets, each line-aligned with `sources` (sentiment:
            one set of label names).
        files: the files read, for the record.
    """

    sources: list[str]
    references: list[list[str]]
    files: list[Path]


@dataclass
class Evaluation:
    """Scores of a system output against references.

    Attributes:
        task: translate, summarize or sentiment.
        n: examples scored.
        scores: metric name -> score in percent (bleu, chrf; rouge1, rouge2, rougeL;
            accuracy, macro_f1).
        signatures: translate: the sacrebleu signature of each metric; {} otherwise.
        labels: sentiment: the confusion matrix's labels; None otherwise.
        confusion: sentiment: `confusion[i][j]` examples of label i predicted as label j.
    """

    task: str
    n: int
    scores: dict[str, float]
    signatures: dict[str, str] = field(default_factory=dict)
    labels: list[str] | None = None
    confusion: list[list[int]] | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: task, n, scores, and signatures or the confusion matrix."""
        out: dict[str, Any] = {"task": self.task, "n": self.n, "scores": self.scores}
        if self.signatures:
            out["signatures"] = self.signatures
        if self.confusion is not None:
            out["confusion"] = {"labels": self.labels, "matrix": self.confusion}
        return out


@dataclass
class ModelEvaluation:
    """What `evaluate_model` found.

    Attributes:
        evaluation: the scores.
        facts: what was evaluated, as logged beside the scores: "model" (its directory),
            "data" (the files read), "split" (a data directory's), the decoding settings
            (not for sentiment) and "truncated" (inputs longer than the model's max_length,
            cut).
        max_length: the model's longest input, in pieces.
    """

    evaluation: Evaluation
    facts: dict[str, Any]
    max_length: int


def check_aligned(counts: Sequence[tuple[str, int]]) -> None:
    """Refuse files whose line counts differ.

    Args:
        counts: (file name, lines) of files that must pair line by line.

    Raises:
        ValueError: naming every file and its count.
    """
    if len({n for _, n in counts}) > 1:
        listed = ", ".join(f"{name} {n} line{'' if n == 1 else 's'}" for name, n in counts)
        raise ValueError(f"line counts differ: {listed}; the files must pair line by line")


def score(
    task: str,
    hypotheses: Sequence[str],
    references: Sequence[Sequence[str]],
    *,
    labels: Sequence[str] = (),
) -> Evaluation:
    """Score outputs against one or more reference sets.

    Args:
        task: translate (corpus BLEU and chrF, sacrebleu, detokenized), summarize (ROUGE-1/2/L
            F1 with stemming; several references: the best per example) or sentiment
            (accuracy, macro-F1 and the confusion matrix over label names).
        hypotheses: outputs (sentiment: predicted label names).
        references: reference sets, each line-aligned with `hypotheses`.
        labels: sentiment: labels to list first in the confusion matrix (the model's).

    Raises:
        ValueError: an unknown task, no references, sets of another length than
            `hypotheses`, or several reference sets for sentiment.
    """
    if not references:
        raise ValueError("no references to score against")
    for refs in references:
        if len(refs) != len(hypotheses):
            raise ValueError(f"got {len(hypotheses)} outputs for {len(refs)} references")
    n = len(hypotheses)
    if task == "translate":
        scores, signatures = sacrebleu_scores(hypotheses, references)
        return Evaluation(task, n, scores, signatures)
    if task == "summarize":
        return Evaluation(task, n, rouge_scores(hypotheses, *references))
    if task == "sentiment":
        if len(references) > 1:
            raise ValueError("sentiment takes one set of gold labels, not several")
        gold = references[0]
        order, matrix = confusion_matrix(hypotheses, gold, labels)
        return Evaluation(task, n, classification_scores(hypotheses, gold), {}, order, matrix)
    raise ValueError(f"unknown task {task!r}; choose translate, summarize or sentiment")


def read_references(task: str, paths: Sequence[str | Path]) -> list[list[str]]:
    """Reference sets from files: plain lines, or the targets (labels) of a split file.

    A `.jsonl`, `.tsv` or `.csv` file is read as a split (`attn.data.task_files.load_split`), so a
    sentiment `dev.tsv` serves as gold labels and a summarization `.jsonl` as summaries.

    Raises:
        DataError: unreadable or malformed files.
    """
    from attn.data import read_lines
    from attn.data.task_files import load_split

    sets = []
    for path in paths:
        if Path(path).suffix in _SPLIT_SUFFIXES:
            sets.append([ex.tgt for ex in load_split(task, path)[0]])
        else:
            sets.append(list(read_lines(path)))
    return sets


def read_hypotheses(task: str, path: str | Path) -> list[str]:
    """System outputs, one per line. Sentiment: the label is the first tab-separated field,
    so `attn sentiment`'s text output (`label<TAB>probability`) is read as it is.

    Raises:
        DataError: unreadable file or invalid UTF-8.
    """
    from attn.data import read_lines

    lines = read_lines(path)
    if task == "sentiment":
        return [line.split("\t", 1)[0].strip() for line in lines]
    return list(lines)


def load_test_set(
    task: str,
    data: str | Path,
    *,
    references: Sequence[str | Path] = (),
    split: str | None = None,
    src: str | None = None,
    tgt: str | None = None,
) -> TestSet:
    """Read the examples to evaluate a model on.

    Args:
        task: translate, summarize or sentiment.
        data: a data directory (the split named by `split`, default val, else dev); a
            `.jsonl` (any task) or `.tsv`/`.csv` (sentiment) file holding sources and
            references; or a plain source file, one input per line, with `references`.
        references: reference files for a plain source file (one or more).
        split: the split of a data directory.
        src, tgt: translation languages of a data directory (guessed when None).

    Raises:
        ValueError: references missing or given where the data holds its own, `split`
            without a directory, line counts that differ.
        DataError: unreadable or malformed files, or no such split.
    """
    from attn.data import read_lines
    from attn.data.task_files import load_split

    path = Path(data)
    check_test_args(path, references, split)
    if holds_references(path):
        examples, files = load_split(task, path, split=split, src=src, tgt=tgt)
        return TestSet([ex.src for ex in examples], [[ex.tgt for ex in examples]], files)
    sources = list(read_lines(path))
    ref_sets = read_references(task, references)
    check_aligned(
        [(str(path), len(sources))]
        + [(str(p), len(r)) for p, r in zip(references, ref_sets, strict=True)]
    )
    return TestSet(sources, ref_sets, [path, *(Path(p) for p in references)])


def holds_references(data: str | Path) -> bool:
    """Whether test data holds its references: a directory or a split file (not plain lines)."""
    return Path(data).is_dir() or Path(data).suffix in _SPLIT_SUFFIXES


def check_test_args(data: str | Path, references: Sequence[str | Path], split: str | None) -> None:
    """Refuse test data given the wrong way, before a model is loaded for it.

    Raises:
        ValueError: `split` without a directory, references beside data that holds its
            own, or a plain source file without references.
    """
    path = Path(data)
    if split is not None and not path.is_dir():
        raise ValueError(f"--split names a split of a data directory, and {path} is not one")
    if holds_references(path) and references:
        raise ValueError(
            f"{path} holds its own references; give --ref with a plain source file instead"
        )
    if not holds_references(path) and not references:
        raise ValueError(
            f"give the references of {path} with --ref (e.g. --data test.en --ref test.de)"
        )


def predict(
    pipeline: Any,
    sources: Sequence[str],
    *,
    beam: int | None = None,
    length_penalty: float | None = None,
    no_repeat_ngram: int | None = None,
    batch_size: int | None = None,
    progress: ProgressCallback | None = None,
    shortlist: bool = True,
    to: str | None = None,
) -> tuple[list[str], int]:
    """Run a loaded pipeline over the sources.

    Args:
        pipeline: a `Translator`, `Summarizer` or `SentimentClassifier`.
        beam, length_penalty, no_repeat_ngram: the search (ignored for sentiment); None =
            the task's default (`attn.model.decoding.defaults`).
        shortlist: decode over the model's lexical shortlist (translation models have one).
        to: the target language of a model that translates into several.
        batch_size: texts per batch; None = the pipeline's default.
        progress: called after each batch with (sentences, output pieces).

    Returns:
        (outputs, truncated): one output text or label name per source, and how many
        sources were longer than the model's max_length and cut.
    """
    if pipeline.task == "sentiment":
        # Cut as the model was trained, as summaries are below (whole inputs: bench/long_inputs.py).
        results = list(
            pipeline.classify(sources, batch_size=batch_size, progress=progress, max_input="cut")
        )
        outputs = [r.label or "" for r in results]
    else:
        results = list(
            pipeline.generate(
                sources,
                beam=beam,
                length_penalty=length_penalty,
                no_repeat_ngram=no_repeat_ngram,
                batch_size=batch_size,
                progress=progress,
                shortlist=shortlist,
                **({"to": to} if to else {}),
            )
        )
        outputs = [r.text for r in results]
    return outputs, sum(r.truncated for r in results)


def log_evaluation(
    model_dir: str | Path,
    evaluation: Evaluation,
    files: Sequence[str | Path],
    *,
    seconds: float,
    **details: Any,
) -> dict[str, Any]:
    """Append one line to the model directory's `metrics.jsonl`, beside the validations.

    The line is `{"evaluate": true, "data": [file paths], "sha256": [one per file], "n",
    metrics..., **details, "time": seconds taken, "date": UTC ISO 8601}`; `"evaluate"` tells
    it from the training validations. One `write` call on a file opened for appending, so
    concurrent writers do not interleave within a line.

    Returns:
        the record written.
    """
    record: dict[str, Any] = {
        "evaluate": True,
        "task": evaluation.task,
        "data": [str(Path(f).resolve()) for f in files],
        "sha256": [sha256_file(f) for f in files],
        "n": evaluation.n,
        **{name: round(value, 4) for name, value in evaluation.scores.items()},
        **details,
    }
    if evaluation.signatures:
        record["signatures"] = evaluation.signatures
    if evaluation.confusion is not None:
        record["confusion"] = {"labels": evaluation.labels, "matrix": evaluation.confusion}
    record["time"] = round(seconds, 2)
    record["date"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    jsonlines.append(ModelDir(model_dir).metrics, record)
    return record


def evaluate_model(
    task: str,
    model_dir: str | Path | None,
    data: str | Path,
    references: Sequence[str | Path] = (),
    *,
    split: str | None = None,
    src: str | None = None,
    tgt: str | None = None,
    beam: int | None = None,
    length_penalty: float | None = None,
    no_repeat_ngram: int | None = None,
    shortlist: bool = True,
    to: str | None = None,
    batch_size: int | None = None,
    output: str | Path | None = None,
    device: str = "auto",
    threads: int | None = None,
    progress: ProgressCallback | None = None,
) -> ModelEvaluation:
    """Run a model on test data, score its outputs and log the scores in its metrics.jsonl.

    Args:
        task: translate, summarize or sentiment.
        model_dir: the model directory (None: the task's default model).
        data, references, split: the test data, as `load_test_set` reads it.
        src, tgt: translation languages of a data directory; None: the direction the model
            was trained in, else guessed.
        beam, length_penalty, no_repeat_ngram, shortlist, to: the search, as translate or
            summarize does it (ignored for sentiment; None: the task's default; `to`: a
            multilingual model's target language).
        batch_size: texts per batch; None = the pipeline's default.
        output: also write the outputs here, one per line.
        device, threads: as `load_pipeline` takes them.
        progress: called after each batch with (sentences, output pieces).

    Raises:
        ValueError: test data given the wrong way (see `load_test_set`), or a bad device.
        DataError: unreadable or malformed test data.
        ModelError: no model, a broken one, or one of another task.
    """
    from attn.model.inference.pipeline import load_pipeline

    start = time.monotonic()
    path = Path(data)
    check_test_args(path, references, split)
    pipeline = load_pipeline(task, model_dir, device=device, threads=threads)
    # A model trained on a directory knows its direction; src/tgt override it.
    trained = pipeline.loaded.meta.get("train", {})
    test = load_test_set(
        task,
        path,
        references=references,
        split=split,
        src=src or trained.get("src"),
        tgt=tgt or trained.get("tgt"),
    )
    chosen = decoding_defaults(task).given(beam, length_penalty, no_repeat_ngram)
    decoding: dict[str, Any] = {
        **asdict(chosen),
        **({"shortlist": shortlist} if task == "translate" else {}),
        **({"to": to} if to and task == "translate" else {}),
    }
    outputs, truncated = predict(
        pipeline, test.sources, batch_size=batch_size, progress=progress, **decoding
    )
    if output is not None:
        # One line per output for any reader: a \r would end a line in universal newlines.
        with open(output, "w", encoding="utf-8", newline="\n") as f:
            f.writelines(line.replace("\r", " ").replace("\n", " ") + "\n" for line in outputs)
    evaluation = score(task, outputs, test.references, labels=pipeline.config.labels or ())
    details: dict[str, Any] = {}
    if path.is_dir():
        # The split that was read, also when split was left to its default.
        details["split"] = split or test.files[0].name.split(".", 1)[0]
    if task != "sentiment":
        details.update(decoding)
    details["truncated"] = truncated
    log_evaluation(
        pipeline.loaded.path,
        evaluation,
        test.files,
        seconds=time.monotonic() - start,
        **details,
    )
    facts = {"model": str(pipeline.loaded.path), "data": [str(f) for f in test.files], **details}
    return ModelEvaluation(evaluation, facts, pipeline.config.max_length)
