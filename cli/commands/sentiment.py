"""`attn sentiment`: label each line of text with its sentiment and the label's probability."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from attn.cli.lines import (
    BatchSizeOpt,
    BatchTokensOpt,
    DeviceOpt,
    Errors,
    ErrorsOpt,
    FieldOpt,
    FilesArg,
    Format,
    FormatOpt,
    Int8Opt,
    IOOptions,
    MaxInput,
    MaxInputOpt,
    ModelOpt,
    OutputDirOpt,
    OutputOpt,
    ThreadsOpt,
    WorkersOpt,
    json_line,
    one_line,
    run,
    score_text,
    worker_processes,
)

if TYPE_CHECKING:
    from attn.model.inference.results import Classification


def sentiment(
    files: FilesArg = None,
    output: OutputOpt = None,
    output_dir: OutputDirOpt = None,
    model: ModelOpt = None,
    probs: Annotated[
        bool, typer.Option("--probs", help="Also print every label's probability.")
    ] = False,
    fmt: FormatOpt = Format.text,
    field: FieldOpt = None,
    batch_size: BatchSizeOpt = None,
    batch_tokens: BatchTokensOpt = None,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    workers: WorkersOpt = None,
    int8: Int8Opt = False,
    errors: ErrorsOpt = Errors.strict,
    max_input: MaxInputOpt = MaxInput.whole,
) -> None:
    """Classify sentiment: one line out per line in, `label<TAB>probability` (text format).

    Labels are the names the model was trained with (e.g. negative, positive). --probs adds
    `name=probability` for every label (text), one column per label in the model's label
    order (tsv) or a "probs" object (jsonl). An empty line stays empty.

    Example: attn sentiment reviews.txt --format tsv
    """

    def load():
        from attn.model.device import apply_process_settings
        from attn.model.inference.pipeline import SentimentClassifier

        apply_process_settings(device, threads)
        return SentimentClassifier.load(model, device=device, int8=int8)

    def infer(classifier, texts, chunk_size, progress):
        return classifier.classify(
            texts,
            batch_size=batch_size,
            batch_tokens=batch_tokens,
            chunk_size=chunk_size,
            progress=progress,
            workers=worker_processes(workers, chunk_size),
            max_input=max_input.value,
        )

    from attn.data.readers import TEXT_FIELDS

    run(
        IOOptions(files or [], output, output_dir, field, errors, guess_fields=TEXT_FIELDS),
        load,
        infer,
        lambda result: render(result, fmt, probs),
    )


def render(result: Classification, fmt: Format, probs: bool) -> str:
    """One output line: text `label<TAB>prob`, tsv `source<TAB>label<TAB>prob`, or JSON."""
    if fmt is Format.jsonl:
        return json_line(result.record(probs))
    if fmt is Format.tsv:
        columns = [one_line(result.source, tabs=True), result.label or "", score_text(result.prob)]
        if probs:
            columns += [score_text(p) for p in result.probs.values()]
        return "\t".join(columns)
    if result.label is None:
        return ""
    columns = [one_line(result.label), score_text(result.prob)]
    if probs:
        columns += [f"{name}={score_text(p)}" for name, p in result.probs.items()]
    return "\t".join(columns)


def register(app: typer.Typer) -> None:
    app.command("sentiment")(sentiment)
