"""`attn summarize`: summarize documents, one per line, with a trained model."""

from __future__ import annotations

from typing import Annotated

import typer

from attn.cli.lines import (
    BatchSizeOpt,
    BatchTokensOpt,
    BeamOpt,
    DeviceOpt,
    Errors,
    ErrorsOpt,
    FieldOpt,
    FilesArg,
    Format,
    FormatOpt,
    Int8Opt,
    IOOptions,
    LengthPenaltyOpt,
    MaxLengthOpt,
    ModelOpt,
    NBestOpt,
    OutputDirOpt,
    OutputOpt,
    ThreadsOpt,
    WorkersOpt,
    check_n_best,
    render_generation,
    run,
    worker_processes,
)


def summarize(
    files: FilesArg = None,
    output: OutputOpt = None,
    output_dir: OutputDirOpt = None,
    model: ModelOpt = None,
    beam: BeamOpt = 4,
    length_penalty: LengthPenaltyOpt = 0.6,
    n_best: NBestOpt = 1,
    no_repeat_ngram: Annotated[
        int, typer.Option(help="Forbid repeating any n-gram of this size; 0 = off.", min=0)
    ] = 6,
    max_length: MaxLengthOpt = None,
    fmt: FormatOpt = Format.text,
    field: FieldOpt = None,
    batch_size: BatchSizeOpt = None,
    batch_tokens: BatchTokensOpt = None,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    workers: WorkersOpt = None,
    int8: Int8Opt = False,
    errors: ErrorsOpt = Errors.strict,
) -> None:
    """Summarize documents: one summary per input line, in order (an empty line stays empty).

    Reads FILES or stdin; JSON Lines files take the text from --field (guessed: dialogue,
    document, text, ...). Beam search, no repeated 6-piece n-grams by default; a summary has at
    most source pieces + 10 pieces unless --max-length says otherwise.

    Example: attn summarize dialogues.jsonl --format jsonl
    """
    check_n_best(n_best, beam)

    def load():
        from attn.model.inference.pipeline import Summarizer

        return Summarizer.load(model, device=device, threads=threads, int8=int8)

    def infer(summarizer, texts, chunk_size, progress):
        return summarizer.summarize(
            texts,
            beam=beam,
            n_best=n_best,
            length_penalty=length_penalty,
            no_repeat_ngram=no_repeat_ngram,
            max_length=max_length,
            batch_size=batch_size,
            batch_tokens=batch_tokens,
            chunk_size=chunk_size,
            progress=progress,
            workers=worker_processes(workers, chunk_size),
        )

    from attn.data.tasks import SRC_FIELDS

    run(
        IOOptions(files or [], output, output_dir, field, errors, guess_fields=SRC_FIELDS),
        load,
        infer,
        lambda result: render_generation(result, fmt, n_best),
    )


def register(app: typer.Typer) -> None:
    app.command("summarize")(summarize)
