"""The command behind `attn translate` and `attn summarize`: one command, built per task.

The two commands differ only in data: their name, help text, a few defaults and the
options only translation has (`--shortlist`, `--align`). A `Seq2SeqCommand` holds that
data; `seq2seq_command` builds the Typer command from it, and `cli/commands/translate.py`
and `cli/commands/summarize.py` each register one.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any

import typer

from attn.cli.documents import InputFormatOpt, run_documents
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
    MaxInput,
    MaxInputOpt,
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
from attn.model.decoding.defaults import decoding_defaults

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

SampleOpt = Annotated[
    bool,
    typer.Option(
        "--sample",
        help="Draw each piece from the model's distribution instead of searching "
        "(--n-best N: N samples); not with --beam.",
    ),
]
TemperatureOpt = Annotated[
    float | None,
    typer.Option(help="With --sample: divide the logits by this; 0 = greedy. Default 1."),
]
TopKOpt = Annotated[
    int | None,
    typer.Option(help="With --sample: only the K most probable pieces; 1 = greedy. Default: all."),
]
TopPOpt = Annotated[
    float | None,
    typer.Option(
        help="With --sample: only the fewest most probable pieces whose probabilities "
        "reach P, in (0, 1]. Default 1."
    ),
]
SeedOpt = Annotated[
    int | None,
    typer.Option(
        help="With --sample: the same seed gives the same samples for the same input. Default 0."
    ),
]

GlossaryOpt = Annotated[
    Path | None,
    typer.Option(
        help="TSV file of source term<TAB>target term pairs: wherever a source term occurs "
        "in a line (as words), its target term appears in the translation.",
        dir_okay=False,
        show_default=False,
    ),
]
GlossaryIgnoreCaseOpt = Annotated[
    bool,
    typer.Option("--glossary-ignore-case", help="Match --glossary source terms in any case."),
]
PrefixOpt = Annotated[
    str | None,
    typer.Option(
        help="Every translation starts with this text, which the model continues "
        '(a JSON Lines "prefix" field overrides it per line).',
        show_default=False,
    ),
]

ToOpt = Annotated[
    str | None,
    typer.Option(
        "--to",
        help="The target language of a model that translates into several (an imported "
        "multilingual OPUS-MT model): e.g. fra puts its token >>fra<< before each line.",
        show_default=False,
    ),
]


class Split(str, Enum):
    sentences = "sentences"
    none = "none"


SplitOpt = Annotated[
    Split,
    typer.Option(
        "--split",
        help="sentences: split each line into sentences, translate them and join them back "
        "on one line (a sentence too long for the model is split further, never cut); "
        "none: each line is one input of the model.",
    ),
]

# Options that only some of the commands offer (see `Seq2SeqCommand.extras`).
EXTRAS = (
    "shortlist",
    "align",
    "input_format",
    "split",
    "glossary",
    "glossary_ignore_case",
    "prefix",
    "max_input",
    "to",
)


@dataclass(frozen=True)
class Seq2SeqCommand:
    """What sets one sequence-to-sequence command apart.

    Attributes:
        task: the command's name, and the task of the models it runs.
        help: the command's help text, written as a docstring would be.
        extras: the options of `EXTRAS` this command offers; without one, it is off
            (`--shortlist` stays on: only translation models have a shortlist).
    """

    task: str
    help: str
    extras: tuple[str, ...] = ()


# The option table that translate and summarize share (Typer signature); `_Job` runs it.
def seq2seq_command(spec: Seq2SeqCommand) -> Callable[..., None]:
    """The Typer command function of `spec`: its signature (the options Typer reads)
    holds the command's defaults and leaves out the extras it does not offer."""

    def command(
        ctx: typer.Context,
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
        sample: SampleOpt = False,
        temperature: TemperatureOpt = None,
        top_k: TopKOpt = None,
        top_p: TopPOpt = None,
        seed: SeedOpt = None,
        input_format: InputFormatOpt = None,
        split: SplitOpt = Split.sentences,
        glossary: GlossaryOpt = None,
        glossary_ignore_case: GlossaryIgnoreCaseOpt = False,
        prefix: PrefixOpt = None,
        max_input: MaxInputOpt = MaxInput.whole,
        to: ToOpt = None,
    ) -> None:
        args = SimpleNamespace(**locals())
        check_options(ctx, args)
        job = _Job(spec, args)
        if "input_format" in spec.extras and job.run_documents():
            return
        job.run_lines()

    # The defaults of beam, length_penalty and no_repeat_ngram: the task's own.
    defaults = asdict(decoding_defaults(spec.task))
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


def sampling_values(args: SimpleNamespace) -> dict[str, Any]:
    """The sampling options of the command line, by name (None where not given)."""
    return {
        "temperature": args.temperature,
        "top_k": args.top_k,
        "top_p": args.top_p,
        "seed": args.seed,
    }


def check_options(ctx: typer.Context, args: SimpleNamespace) -> None:
    """Refuse option combinations that do not go together (usage errors, exit 2)."""
    beam_given = getattr(ctx.get_parameter_source("beam"), "name", "") == "COMMANDLINE"
    check_sampling(
        args.sample, args.beam if beam_given else None, args.n_best, sampling_values(args)
    )
    if not args.sample:
        check_n_best(args.n_best, args.beam)
    check_terms(args.glossary, args.glossary_ignore_case, args.prefix, args.sample, args.beam)


class _Job:
    """One run of a sequence-to-sequence command: `args` holds its option values."""

    def __init__(self, spec: Seq2SeqCommand, args: SimpleNamespace) -> None:
        self.spec = spec
        self.args = args
        self.glossary: Any = None  # read by `load`, before the model loads

    def load(self) -> Any:
        from attn.model.device import apply_process_settings
        from attn.model.inference.pipeline import load_pipeline

        a = self.args
        if a.glossary is not None:
            from attn.data.glossary import Glossary

            self.glossary = Glossary.read(a.glossary, ignore_case=a.glossary_ignore_case)
        apply_process_settings(a.device, a.threads)
        pipeline = load_pipeline(self.spec.task, a.model, device=a.device, int8=a.int8)
        if "to" in self.spec.extras:
            pipeline.source_tokenizer(a.to)  # a multilingual model needs --to, others refuse it
        if self.glossary is not None:
            targets = [e.target for e in self.glossary.entries]
            tokenizer = pipeline.tokenizer.target
            ids, _ = tokenizer.encode(targets, add_eos=False) if targets else ([], [])
            self.glossary.check_lengths([len(i) for i in ids], pipeline.config.max_length)
        return pipeline

    def options(self) -> dict[str, Any]:
        """The search options of every input (`load` reads the glossary)."""
        a = self.args
        return {
            "beam": a.beam,
            "length_penalty": a.length_penalty,
            "no_repeat_ngram": a.no_repeat_ngram,
            "max_length": a.max_length,
            "batch_size": a.batch_size,
            "batch_tokens": a.batch_tokens,
            "shortlist": a.shortlist,
            "sample": a.sample,
            **sampling_values(a),
            **({"glossary": self.glossary} if self.glossary is not None else {}),
            **({"prefix": a.prefix} if a.prefix else {}),
            **({"to": a.to} if getattr(a, "to", None) else {}),
        }

    def infer(self, pipeline, texts, chunk_size, progress):
        a = self.args
        # Translation splits lines into sentences; summarization takes a long one in parts.
        generate = pipeline.generate
        if "split" in self.spec.extras:
            generate = functools.partial(pipeline.translate, split=a.split.value)
        if "max_input" in self.spec.extras:  # over-long documents: `Summarizer.summarize`
            generate = functools.partial(pipeline.summarize, max_input=a.max_input.value)
        return generate(
            texts,
            n_best=a.n_best,
            chunk_size=chunk_size,
            progress=progress,
            workers=worker_processes(a.workers, chunk_size),
            align=a.align,
            **self.options(),
        )

    def translate_document(self, pipeline, document, progress) -> str:
        from attn.model.inference.documents import translate_document

        return translate_document(
            pipeline,
            document,
            progress=progress,
            split=self.args.split.value,
            workers=self.args.workers,
            **self.options(),
        )

    def run_documents(self) -> bool:
        """Translate the input as documents (subtitles, Markdown, HTML) where its format
        says so; False where the input is lines."""
        a = self.args
        return run_documents(
            a.files or [],
            a.output,
            a.output_dir,
            a.input_format,
            self.load,
            self.translate_document,
            fmt=a.fmt,
            n_best=a.n_best,
            field=a.field,
            align=a.align,
        )

    def run_lines(self) -> None:
        from attn.data.task_files import SRC_FIELDS

        a = self.args
        run(
            IOOptions(
                a.files or [], a.output, a.output_dir, a.field, a.errors, guess_fields=SRC_FIELDS
            ),
            self.load,
            self.infer,
            lambda result: render_generation(result, a.fmt, a.n_best),
        )


def check_sampling(sample: bool, beam: int | None, n_best: int, options: dict[str, Any]) -> None:
    """Refuse sampling options without --sample, --sample with a --beam above 1 (`beam`:
    the one given on the command line, or None), and values out of range (usage errors,
    exit 2)."""
    from attn.model.decoding.sampling_options import sampling_options

    flag = {name: "--" + name.replace("_", "-") for name in options}
    if not sample:
        for name, value in options.items():
            if value is not None:
                raise typer.BadParameter("applies only with --sample", param_hint=flag[name])
        return
    if beam is not None and beam > 1:
        raise typer.BadParameter(
            f"--sample draws one piece at a time: drop --beam {beam}", param_hint="--beam"
        )
    try:
        sampling_options(True, n_best, **options)
    except ValueError as e:  # "top_p must be in (0, 1], got 0.0"
        name = str(e).split()[0]
        raise typer.BadParameter(str(e).split(" ", 1)[1], param_hint=flag.get(name)) from None


def check_terms(
    glossary: Path | None, ignore_case: bool, prefix: str | None, sample: bool, beam: int
) -> None:
    """Refuse --glossary and --prefix with --sample, --glossary with --beam 1, and
    --glossary-ignore-case without --glossary (usage errors, exit 2)."""
    if ignore_case and glossary is None:
        raise typer.BadParameter(
            "applies only with --glossary", param_hint="--glossary-ignore-case"
        )
    for name, value in (("--glossary", glossary), ("--prefix", prefix)):
        if value is not None and sample:
            raise typer.BadParameter("needs beam search: drop --sample", param_hint=name)
    if glossary is not None and beam < 2:
        raise typer.BadParameter(
            "constrained search needs a beam of at least 2, not --beam 1", param_hint="--glossary"
        )


def register(app: typer.Typer, spec: Seq2SeqCommand) -> None:
    app.command(spec.task)(seq2seq_command(spec))
