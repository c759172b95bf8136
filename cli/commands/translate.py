"""`attn translate`: translate lines of text with a trained model."""

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


def translate(
    files: FilesArg = None,
    output: OutputOpt = None,
    output_dir: OutputDirOpt = None,
    model: ModelOpt = None,
    beam: BeamOpt = 4,
    length_penalty: LengthPenaltyOpt = 0.6,
    n_best: NBestOpt = 1,
    no_repeat_ngram: Annotated[
        int, typer.Option(help="Forbid repeating any n-gram of this size; 0 = off.", min=0)
    ] = 0,
    max_length: MaxLengthOpt = None,
    fmt: FormatOpt = Format.text,
    field: FieldOpt = None,
    batch_size: BatchSizeOpt = None,
    batch_tokens: BatchTokensOpt = None,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    workers: WorkersOpt = None,
    int8: Int8Opt = False,
    shortlist: Annotated[
        bool,
        typer.Option(
            help="Decode over the target pieces the model's lexical shortlist allows for "
            "the input (faster); --no-shortlist: over the whole vocabulary.",
        ),
    ] = True,
    errors: ErrorsOpt = Errors.strict,
    align: Annotated[
        bool,
        typer.Option(
            "--align",
            help="Add word alignments from cross-attention: s-t pairs (0-based source-output "
            'word indices) as a last column, or "alignment" in jsonl.',
        ),
    ] = False,
) -> None:
    """Translate text: one line out per line in, in order (an empty line stays empty).

    Reads FILES or stdin. Beam search by default; an output has at most
    1.5 x source pieces + 10 pieces unless --max-length says otherwise.

    Example: echo "A man rides a bike." | attn translate -m models/en-de
    """
    check_n_best(n_best, beam)

    def load():
        from attn.model.inference.pipeline import Translator

        return Translator.load(model, device=device, threads=threads, int8=int8)

    def infer(translator, texts, chunk_size, progress):
        results = translator.translate(
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
            shortlist=shortlist,
        )
        if not align:
            return results
        from dataclasses import replace

        from attn.model.inference.attention_maps import align_text

        return (
            replace(r, alignment=align_text(translator.loaded, r.source, r.text)) for r in results
        )

    from attn.data.tasks import SRC_FIELDS

    run(
        IOOptions(files or [], output, output_dir, field, errors, guess_fields=SRC_FIELDS),
        load,
        infer,
        lambda result: render_generation(result, fmt, n_best),
    )


def register(app: typer.Typer) -> None:
    app.command("translate")(translate)
