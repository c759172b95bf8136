"""The command behind `attn translate` and `attn summarize`: one command, built per task.

The two commands differ only in data: their name, help text, a few defaults and the
options only translation has (`--shortlist`, `--align`). A `Seq2SeqCommand` holds that
data; `seq2seq_command` builds the Typer command from it, and `cli/commands/translate.py`
and `cli/commands/summarize.py` each register one.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

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

NoRepeatNgramOpt = Annotated[
    int, typer.Option(help="Forbid repeating any n-gram of this size; 0 = off.", min=0)
]
ShortlistOpt = Annotated[
    bool,
    typer.Option(
        help="Decode over the target pieces the model's lexical shortlist allows for "
        "the input (faster); --no-shortlist: over the whole vocabulary.",
    ),
]
AlignOpt = Annotated[
    bool,
    typer.Option(
        "--align",
        help="Add word alignments from cross-attention: s-t pairs (0-based source-output "
        'word indices) as a last column, or "alignment" in jsonl.',
    ),
]

# Options that only some of the commands offer (see `Seq2SeqCommand.extras`).
EXTRAS = ("shortlist", "align")


@dataclass(frozen=True)
class Seq2SeqCommand:
    """What sets one sequence-to-sequence command apart.

    Attributes:
        task: the command's name, and the task of the models it runs.
        help: the command's help text, written as a docstring would be.
        beam, length_penalty, no_repeat_ngram: the defaults of those options.
        extras: the options of `EXTRAS` this command offers; without one, it is off
            (`--shortlist` stays on: only translation models have a shortlist).
    """

    task: str
    help: str
    beam: int = 4
    length_penalty: float = 0.6
    no_repeat_ngram: int = 0
    extras: tuple[str, ...] = ()


# Over 80 lines: the option table that translate and summarize share (Typer signature).
def seq2seq_command(spec: Seq2SeqCommand) -> Callable[..., None]:
    """The Typer command function of `spec`: its signature (the options Typer reads)
    holds the command's defaults and leaves out the extras it does not offer."""

    def command(
        *,
        files: FilesArg = None,
        output: OutputOpt = None,
        output_dir: OutputDirOpt = None,
        model: ModelOpt = None,
        beam: BeamOpt,
        length_penalty: LengthPenaltyOpt,
        n_best: NBestOpt = 1,
        no_repeat_ngram: NoRepeatNgramOpt,
        max_length: MaxLengthOpt = None,
        fmt: FormatOpt = Format.text,
        field: FieldOpt = None,
        batch_size: BatchSizeOpt = None,
        batch_tokens: BatchTokensOpt = None,
        device: DeviceOpt = "auto",
        threads: ThreadsOpt = None,
        workers: WorkersOpt = None,
        int8: Int8Opt = False,
        shortlist: ShortlistOpt = True,
        errors: ErrorsOpt = Errors.strict,
        align: AlignOpt = False,
    ) -> None:
        check_n_best(n_best, beam)

        def load() -> Any:
            from attn.model.device import apply_process_settings
            from attn.model.inference.pipeline import load_pipeline

            apply_process_settings(device, threads)
            return load_pipeline(spec.task, model, device=device, int8=int8)

        def infer(pipeline, texts, chunk_size, progress):
            results = pipeline.generate(
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
                replace(r, alignment=align_text(pipeline.loaded, r.source, r.text)) for r in results
            )

        from attn.data.task_files import SRC_FIELDS

        run(
            IOOptions(files or [], output, output_dir, field, errors, guess_fields=SRC_FIELDS),
            load,
            infer,
            lambda result: render_generation(result, fmt, n_best),
        )

    defaults = {
        "beam": spec.beam,
        "length_penalty": spec.length_penalty,
        "no_repeat_ngram": spec.no_repeat_ngram,
    }
    signature = inspect.signature(command, eval_str=True)
    command.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[
            p.replace(default=defaults.get(p.name, p.default))
            for p in signature.parameters.values()
            if p.name not in EXTRAS or p.name in spec.extras
        ]
    )
    command.__doc__ = spec.help
    command.__name__ = command.__qualname__ = spec.task
    return command


def register(app: typer.Typer, spec: Seq2SeqCommand) -> None:
    app.command(spec.task)(seq2seq_command(spec))
