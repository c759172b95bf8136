"""`attn evaluate TASK`: score a model on a test split, or score outputs already written."""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from attn.cli.common import err_console, reported_errors
from attn.cli.lines import (
    BatchSizeOpt,
    DeviceOpt,
    ModelOpt,
    ThreadsOpt,
    _progress,
    same_file,
)
from attn.data.task_files import Task

if TYPE_CHECKING:
    from attn.model.evaluation.evaluate import Evaluation


# Display names of the metrics, in table order.
_NAMES = {
    "bleu": "BLEU",
    "chrf": "chrF",
    "rouge1": "ROUGE-1 F1",
    "rouge2": "ROUGE-2 F1",
    "rougeL": "ROUGE-L F1",
    "accuracy": "accuracy",
    "macro_f1": "macro-F1",
}


class Format(str, Enum):
    table = "table"
    json = "json"


# Over 80 lines: two thirds are the command's option table (Typer reads it from the
# signature); the body checks usage and calls the library.
def evaluate(
    task: Annotated[Task, typer.Argument(help="translate, summarize or sentiment.")],
    model: ModelOpt = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="A data directory (see --split), a .jsonl/.tsv/.csv split file, or a plain "
            "source file with --ref.",
        ),
    ] = None,
    ref: Annotated[
        list[Path] | None,
        typer.Option(
            "--ref",
            help="Reference file, line-aligned (repeat for several references; sentiment: "
            "labels, or a .tsv/.csv/.jsonl split).",
        ),
    ] = None,
    hyp: Annotated[
        Path | None,
        typer.Option(
            "--hyp", help="Score this output file against --ref instead of running a model."
        ),
    ] = None,
    split: Annotated[
        str | None,
        typer.Option(help="Split of a --data directory: val, dev, test2016, ... Default: val/dev."),
    ] = None,
    src: Annotated[
        str | None, typer.Option(help="Source language of a --data directory (translate).")
    ] = None,
    tgt: Annotated[
        str | None, typer.Option(help="Target language of a --data directory (translate).")
    ] = None,
    beam: Annotated[
        int | None,
        typer.Option(
            help="Beam size; 1 = greedy search. Default: as translate or summarize does (4).",
            min=1,
            show_default=False,
        ),
    ] = None,
    length_penalty: Annotated[
        float | None,
        typer.Option(
            help="Alpha of the GNMT length penalty; 0 = none. "
            "Default: as translate or summarize does.",
            min=0.0,
            show_default=False,
        ),
    ] = None,
    no_repeat_ngram: Annotated[
        int | None,
        typer.Option(
            help="Forbid repeating any n-gram of this many pieces; 0 = off. "
            "Default: as translate (0) or summarize (6) does.",
            min=0,
            show_default=False,
        ),
    ] = None,
    shortlist: Annotated[
        bool,
        typer.Option(
            help="Translate: decode over the model's lexical shortlist, as translate does; "
            "--no-shortlist: over the whole vocabulary.",
        ),
    ] = True,
    to: Annotated[
        str | None,
        typer.Option(
            help="Translate: the target language of a model that translates into several "
            "(fra for its token >>fra<<).",
            show_default=False,
        ),
    ] = None,
    batch_size: BatchSizeOpt = None,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.table,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Also save the model's outputs here.", dir_okay=False),
    ] = None,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
) -> None:
    """Score a model on a test split: BLEU/chrF, ROUGE, or accuracy/macro-F1.

    Runs the model on --data (beam search, as translate does), scores its outputs and
    appends the scores to the model's metrics.jsonl.

    With --hyp, scores an output file against --ref; no model is needed.

    Example: attn evaluate translate -m models/en-de --data DIR --split test2016

    Example: attn evaluate summarize --hyp out.txt --ref ref1.txt --ref ref2.txt
    """
    refs = ref or []
    if hyp is not None:
        if model is not None or data is not None:
            raise typer.BadParameter("score a --hyp file or run a model on --data, not both")
        if not refs:
            raise typer.BadParameter("--hyp needs at least one --ref", param_hint="--ref")
        if output is not None:
            raise typer.BadParameter("saves a model's outputs; --hyp has none", param_hint="-o")
    elif data is None:
        raise typer.BadParameter(
            "give the test data (e.g. --data DIR --split test2016, or --data test.en "
            "--ref test.de), or --hyp with --ref",
            param_hint="--data",
        )
    if output is not None and any(same_file(output, p) for p in [data, *refs]):
        raise typer.BadParameter(f"{output} is also an input", param_hint="--output")
    with reported_errors():
        if hyp is not None:
            result = _score_files(task.value, hyp, refs)
        else:
            result = _run_model(
                task.value,
                model,
                data,
                refs,
                split=split,
                src=src,
                tgt=tgt,
                beam=beam,
                length_penalty=length_penalty,
                no_repeat_ngram=no_repeat_ngram,
                shortlist=shortlist,
                to=to,
                batch_size=batch_size,
                output=output,
                device=device,
                threads=threads,
            )
    evaluation, facts = result
    if fmt is Format.json:
        sys.stdout.write(json.dumps({**evaluation.to_dict(), **facts}, ensure_ascii=False) + "\n")
    else:
        _print_table(evaluation, facts)


def _score_files(task: str, hyp: Path, refs: list[Path]) -> tuple[Evaluation, dict[str, Any]]:
    from attn.model.evaluation.evaluate import (
        check_aligned,
        read_hypotheses,
        read_references,
        score,
    )

    hypotheses = read_hypotheses(task, hyp)
    references = read_references(task, refs)
    check_aligned(
        [(str(hyp), len(hypotheses))]
        + [(str(p), len(r)) for p, r in zip(refs, references, strict=True)]
    )
    evaluation = score(task, hypotheses, references)
    return evaluation, {"hyp": str(hyp), "refs": [str(p) for p in refs]}


def _run_model(
    task: str, model: Path | None, data: Path, refs: list[Path], **options: Any
) -> tuple[Evaluation, dict[str, Any]]:
    from attn.model.device import apply_process_settings
    from attn.model.evaluation.evaluate import evaluate_model

    apply_process_settings(options.get("device", "auto"), options.get("threads"))
    with _progress() as progress:
        result = evaluate_model(task, model, data, refs, progress=progress, **options)
    truncated = result.facts["truncated"]
    if truncated:
        err_console.print(
            f"Warning: {truncated} of {result.evaluation.n} inputs are longer than the model's "
            f"max_length ({result.max_length} pieces) and were truncated",
            soft_wrap=True,
        )
    return result.evaluation, result.facts


def _print_table(evaluation: Evaluation, facts: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(highlight=False)
    sources = facts.get("data") or [facts["hyp"], *facts["refs"]]
    what = "examples" if evaluation.task == "sentiment" else "sentences"
    names = ", ".join(Path(s).name for s in sources)
    # markup=False and Text: file names and labels are never read as rich markup.
    console.print(f"{evaluation.task}: {evaluation.n} {what} ({names})", markup=False)
    table = Table()
    table.add_column("metric")
    table.add_column("score", justify="right")
    for name, value in evaluation.scores.items():
        table.add_row(_NAMES.get(name, name), f"{value:.2f}")
    console.print(table, markup=False)
    for name, signature in evaluation.signatures.items():
        console.print(f"{_NAMES.get(name, name)} signature: {signature}", markup=False)
    if evaluation.confusion is not None and evaluation.labels is not None:
        console.print("Confusion matrix (rows: gold label, columns: predicted):")
        matrix = Table()
        matrix.add_column("gold")
        for label in evaluation.labels:
            matrix.add_column(Text(label), justify="right")
        for label, row in zip(evaluation.labels, evaluation.confusion, strict=True):
            matrix.add_row(Text(label), *(str(n) for n in row))
        console.print(matrix, markup=False)


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)
