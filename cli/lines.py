"""What `attn translate`, `attn summarize` and `attn sentiment` share: inputs, outputs, errors.

Inputs are FILE arguments or stdin (none given, or `-`); plain lines, or JSON Lines with
`--field`. Results are written as they come (the library yields a chunk's results once the
chunk is done), UTF-8, one line per input line, flushed, so a pipe sees output before a big
file is read to its end. A closed pipe (`| head -1`) ends the command quietly; Ctrl-C exits
130; library errors become a one-line `Error: ...`.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any, Protocol, TypeVar

import typer

from attn.cli.common import allow_quick_exit, err_console, fail, reported_errors, stderr_is_terminal

if TYPE_CHECKING:
    from attn.model.inference.results import Generation

# 128 + SIGPIPE: what a shell reports for a command whose reader went away.
EXIT_BROKEN_PIPE = 141


class Format(str, Enum):
    text = "text"
    jsonl = "jsonl"
    tsv = "tsv"


class Errors(str, Enum):
    strict = "strict"
    replace = "replace"


FilesArg = Annotated[
    list[str] | None,
    typer.Argument(
        help="Input files (one text per line); none or '-' reads stdin.", show_default=False
    ),
]
OutputOpt = Annotated[
    Path | None,
    typer.Option("--output", "-o", help="Write to this file instead of stdout.", dir_okay=False),
]
OutputDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--output-dir",
        help="Write one output file per input file into this directory (same file names).",
        file_okay=False,
    ),
]
ModelOpt = Annotated[
    Path | None,
    typer.Option(
        "--model", "-m", help="Model directory. Default: the one `attn train TASK` wrote."
    ),
]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")]
ThreadsOpt = Annotated[
    int | None, typer.Option(help="CPU threads for torch (default: torch's choice).", min=1)
]
WorkersOpt = Annotated[
    int | None,
    typer.Option(
        help="Processes working side by side on the CPU, sharing --threads. "
        "Default: one per thread for inputs over 64 lines.",
        min=1,
        show_default=False,
    ),
]
Int8Opt = Annotated[
    bool,
    typer.Option(
        "--int8", help="Run the linear layers in int8 (CPU): faster, nearly the same output."
    ),
]
BatchSizeOpt = Annotated[
    int | None,
    typer.Option(help="Texts per batch (default: 32, sentiment 64; 8 times that on a GPU).", min=1),
]
BatchTokensOpt = Annotated[
    int | None,
    typer.Option(
        help="Batch by source pieces instead (padding included); overrides --batch-size.", min=1
    ),
]
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="Output format.")]
FieldOpt = Annotated[
    str | None,
    typer.Option(
        help="Read JSON Lines and take the text from this field (guessed for *.jsonl files)."
    ),
]
ErrorsOpt = Annotated[
    Errors,
    typer.Option("--errors", help="Invalid UTF-8 in the input: stop (strict) or replace it."),
]
MaxLengthOpt = Annotated[
    int | None,
    typer.Option(
        help="Cap on output pieces. Default: relative to the source length (see --help text).",
        min=1,
    ),
]
BeamOpt = Annotated[int, typer.Option(help="Beam size; 1 = greedy search.", min=1)]


class MaxInput(str, Enum):
    whole = "whole"
    cut = "cut"


MaxInputOpt = Annotated[
    MaxInput,
    typer.Option(
        "--max-input",
        help="A line longer than the model's max_length: whole = take all of it (summarize: "
        "in parts, then the parts' summaries; sentiment: in overlapping windows, their "
        "probabilities averaged); cut = cut it as the model was trained.",
    ),
]
LengthPenaltyOpt = Annotated[
    float,
    typer.Option(
        help="Alpha of the GNMT length penalty: score = logprob / ((5+len)/6)^alpha; 0 = none.",
        min=0.0,
    ),
]
NBestOpt = Annotated[
    int, typer.Option(help="Output this many hypotheses with their scores (<= --beam).", min=1)
]


class HasTruncated(Protocol):
    truncated: bool


R = TypeVar("R", bound=HasTruncated)
ProgressCallback = Callable[[int, int], None]


@dataclass
class IOOptions:
    """The input/output options of an inference command."""

    files: Sequence[str]
    output: Path | None
    output_dir: Path | None
    field: str | None
    errors: Errors
    # Fields tried, in order, when a *.jsonl file is read without --field.
    guess_fields: Sequence[str] = ()


def run(
    io: IOOptions,
    load: Callable[[], Any],
    infer: Callable[[Any, Iterable[str], int, ProgressCallback], Iterator[R]],
    render: Callable[[R], str],
) -> None:
    """Run a loaded pipeline over the inputs and write rendered results.

    Args:
        io: where inputs come from and outputs go.
        load: loads the pipeline (called once, after the options are checked).
        infer: (pipeline, texts, chunk_size, progress) -> results in input order.
        render: one result -> one output line (no line break).
    """
    jobs = _plan(io)
    with reported_errors():
        try:
            with interrupt_noted():
                pipeline = load()
            _write_results(pipeline, jobs, io, infer, render)
            allow_quick_exit()  # every output is flushed and closed
        except BrokenPipeError:
            _exit_quietly_on_broken_pipe()


def _write_results(
    pipeline: Any,
    jobs: list[tuple[list[str], Path | None]],
    io: IOOptions,
    infer: Callable[[Any, Iterable[str], int, ProgressCallback], Iterator[R]],
    render: Callable[[R], str],
) -> None:
    """Each job's inputs through the pipeline into its output, one flushed line per result."""
    # Read a terminal line by line, so each typed line is answered at once.
    interactive = sys.stdin.isatty() and any(f == "-" for inputs, _ in jobs for f in inputs)
    chunk_size = 1 if interactive else 1000
    warned = False
    with _progress() as progress:
        for inputs, target in jobs:
            where = (
                f"{inputs[0] if inputs[0] != '-' else '<stdin>'}:" if len(inputs) == 1 else "line "
            )
            lineno = 0
            split_further: list[int] = []  # lines longer than max_length, taken in parts
            texts = (t for f in inputs for t in _texts(f, io.field, io.errors, io.guess_fields))
            with (
                _output(target) as out,
                closing(infer(pipeline, texts, chunk_size, progress)) as results,
            ):
                for result in results:
                    lineno += 1
                    if not getattr(result, "constraints_met", True):
                        err_console.print(
                            f"Warning: {where}{lineno}: a constraint could not be met "
                            "(too long for the output?); translated without its constraints",
                            soft_wrap=True,
                            markup=False,
                        )
                    if result.truncated and not warned:
                        warned = True
                        err_console.print(
                            "Warning: some inputs are longer than the model's max_length "
                            f"({pipeline.config.max_length} pieces) and were truncated",
                            soft_wrap=True,
                        )
                    if getattr(result, "split_further", False):
                        split_further.append(lineno)
                    out.write(render(result).encode() + b"\n")
                    out.flush()
            if split_further:
                _warn_split_further(where, split_further, pipeline)


# How each task takes a line longer than the model (`split_further`), for the warning.
_SPLIT_HOW = {
    "summarize": "summarized in parts, then the parts' summaries (--max-input cut cuts instead)",
    "sentiment": "classified in overlapping windows (--max-input cut cuts instead)",
}


def _warn_split_further(where: str, lines: list[int], pipeline: Any) -> None:
    """Name the lines that were taken in parts instead of cut, and how many."""
    shown = ", ".join(map(str, lines[:20])) + (
        f" and {len(lines) - 20} more" if len(lines) > 20 else ""
    )
    max_length = pipeline.config.max_length
    how = _SPLIT_HOW.get(pipeline.config.task)
    if how is None:
        what = (
            f"a sentence longer than the model's max_length ({max_length} pieces) was split "
            "further at punctuation or spaces, not cut"
        )
    else:
        count = f"{len(lines)} line{'s' if len(lines) > 1 else ''}"
        what = f"{count} longer than the model's max_length ({max_length} pieces), {how}"
    err_console.print(f"Warning: {where}{shown}: {what}", soft_wrap=True, markup=False)


@contextmanager
def interrupt_noted() -> Iterator[None]:
    """Make a Ctrl-C during the block (the model load) count, once the block ends.

    Importing torch (numpy, during the model load) catches a KeyboardInterrupt raised in
    the middle of its imports and goes on, so a Ctrl-C in the first half second would be
    lost and the command would run to the end; and one raised inside Python code that
    torch's C++ calls during those imports aborts the process (pybind11 cannot pass it
    on). So the handler only notes the signal, and a noted signal raises when the block
    ends: at most the load's second or two later.
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # started in the background
    ):
        yield
        return
    noted: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        noted.append(signum)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if noted:
        raise KeyboardInterrupt


def _plan(io: IOOptions) -> list[tuple[list[str], Path | None]]:
    """Pair inputs with outputs: (input files, output file or None for stdout).

    Raises:
        typer.BadParameter: conflicting or impossible output options (usage error, exit 2).
    """
    files = list(io.files) or ["-"]
    for f in files:
        if f != "-" and not Path(f).is_file():
            fail(f"{f}: {'is a directory' if Path(f).is_dir() else 'no such file'}")
    if io.output_dir is None:
        if io.output is not None and any(same_file(io.output, f) for f in files):
            raise typer.BadParameter(f"{io.output} is also an input", param_hint="--output")
        return [(files, io.output)]
    if io.output is not None:
        raise typer.BadParameter("give --output or --output-dir, not both", param_hint="--output")
    if "-" in files:
        raise typer.BadParameter("needs input files, not stdin", param_hint="--output-dir")
    names = [Path(f).name for f in files]
    if len(set(names)) != len(names):
        raise typer.BadParameter(
            "two inputs have the same file name; their outputs would collide",
            param_hint="--output-dir",
        )
    targets = [io.output_dir / name for name in names]
    for f, target in zip(files, targets, strict=True):
        if same_file(target, f):
            raise typer.BadParameter(f"would overwrite the input {f}", param_hint="--output-dir")
    try:
        io.output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        fail(f"cannot create {io.output_dir}: {e.strerror}")
    return [([f], target) for f, target in zip(files, targets, strict=True)]


def same_file(a: Path, b: str | Path | None) -> bool:
    """Whether `a` and `b` are one existing file (None and "-", stdin, are none)."""
    if b is None or str(b) == "-" or not a.exists() or not Path(b).exists():
        return False
    return a.resolve() == Path(b).resolve()


def _texts(path: str, field: str | None, errors: Errors, guess: Sequence[str]) -> Iterator[str]:
    """The texts of one input: its lines, or one JSON field per line.

    An empty line gives "" (and so an empty output line), also in JSON Lines.

    Raises:
        DataError: unreadable file, invalid UTF-8 (strict), invalid JSON, a missing field.
    """
    from attn.data import DataError, read_lines

    lines = read_lines(path, errors=errors.value, hint="use --errors replace to substitute it")
    if field is None and not path.endswith(".jsonl"):
        yield from lines
        return
    name = "<stdin>" if path == "-" else path
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            yield ""
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(name, f"invalid JSON ({e.msg})", lineno) from None
        if not isinstance(record, dict):
            raise DataError(name, f"expected a JSON object, found {type(record).__name__}", lineno)
        if field is None:
            field = next((f for f in guess if f in record), None)
            if field is None:
                raise DataError(
                    name,
                    f"no text field among {', '.join(record)}; name it with --field",
                    lineno,
                )
        value = record.get(field)
        if not isinstance(value, str):
            what = "missing" if field not in record else f"a {type(value).__name__}, not a string"
            raise DataError(name, f'field "{field}" is {what}', lineno)
        yield _directed(value, record, name, lineno)


def _directed(text: str, record: dict[str, Any], name: str, lineno: int) -> str:
    """The text of a JSON Lines record, with its "constraints" (a list of strings that its
    translation must hold) and "prefix" (the text its translation starts with), if any."""
    if "constraints" not in record and "prefix" not in record:
        return text
    from attn.data import DataError
    from attn.data.glossary import GuidedText

    constraints = record.get("constraints") or []
    if not isinstance(constraints, list) or not all(
        isinstance(c, str) and c.strip() for c in constraints
    ):
        raise DataError(name, '"constraints" must be a list of non-empty strings', lineno)
    prefix = record.get("prefix") or ""
    if not isinstance(prefix, str):
        raise DataError(name, '"prefix" must be a string', lineno)
    return GuidedText(text, constraints, prefix)


@contextmanager
def _output(target: Path | None) -> Iterator[IO[bytes]]:
    """stdout's byte stream (so output is UTF-8 whatever the locale), or a new file."""
    if target is None:
        yield sys.stdout.buffer
        return
    with open(target, "wb") as f:
        yield f


@contextmanager
def _progress() -> Iterator[ProgressCallback]:
    """A progress callback: a live sentences/s and tokens/s line when stderr is a terminal."""
    if not stderr_is_terminal():
        yield lambda sentences, pieces: None
        return
    import time

    from rich.progress import Progress, SpinnerColumn, TextColumn

    start = time.perf_counter()
    done = {"sentences": 0, "pieces": 0}
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), console=err_console, transient=True
    ) as bar:
        task = bar.add_task("starting")

        def update(sentences: int, pieces: int) -> None:
            done["sentences"] += sentences
            done["pieces"] += pieces
            elapsed = max(time.perf_counter() - start, 1e-9)
            rate = f"{done['sentences'] / elapsed:.1f} sentences/s"
            if done["pieces"]:
                rate += f", {done['pieces'] / elapsed:.0f} tokens/s"
            bar.update(task, description=f"{done['sentences']} sentences ({rate})")

        yield update


def _exit_quietly_on_broken_pipe() -> None:
    # Python would flush stdout again at exit and fail on the closed pipe: point stdout at
    # /dev/null first, so the exit is quiet.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    raise typer.Exit(EXIT_BROKEN_PIPE)


def worker_processes(workers: int | None, chunk_size: int) -> int | None:
    """The workers for a run: one for a terminal read line by line (each line is answered
    at once), else `workers` (None = the library's automatic choice)."""
    return 1 if chunk_size == 1 else workers


def check_n_best(n_best: int, beam: int) -> None:
    """Refuse more hypotheses than the beam holds (a usage error, exit 2)."""
    if n_best > beam:
        raise typer.BadParameter(f"{n_best} is more than --beam {beam}", param_hint="--n-best")


def render_generation(result: Generation, fmt: Format, n_best: int) -> str:
    """One output line for a translation or summary.

    text: the output; with n_best > 1, each hypothesis and its score, tab-separated.
    tsv: source, then output and score for each hypothesis.
    jsonl: source, output, score, logprob; and n_best (a list of those) when n_best > 1.
    An empty input gives an empty line (text), empty fields (tsv) or a null score (jsonl).
    With an alignment (--align): a last column of "s-t" word pairs (text, tsv), or
    "alignment": [[s, t], ...] (jsonl).
    """
    hyps = result.n_best[:n_best]
    if fmt is Format.jsonl:
        return json_line(result.record(n_best))
    pairs = [f"{one_line(h.text, tabs=True)}\t{score_text(h.score)}" for h in hyps]
    if fmt is Format.tsv:
        line = "\t".join([one_line(result.source, tabs=True), *(pairs or ["\t"])])
    else:
        line = "\t".join(pairs) if n_best > 1 else one_line(result.text)
    if result.alignment is None:
        return line
    from attn.model.inference.attention_maps import format_alignment

    return f"{line}\t{format_alignment(result.alignment)}"


def one_line(text: str, *, tabs: bool = False) -> str:
    """`text` safe for a line-based output: line breaks (and, for TSV, tabs) become spaces.

    A lone `\r` goes too, though only `\n` ends a line for attn: an output line then reads
    as one line in any program, and a `\r` at its end cannot join the `\n` into a CRLF.
    """
    text = text.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    return text.replace("\t", " ") if tabs else text


def json_line(record: dict[str, Any]) -> str:
    """`record` as one `--format jsonl` line (see `attn.data.jsonlines`)."""
    from attn.data import jsonlines

    return jsonlines.dumps(record)


def score_text(score: float | None) -> str:
    return "" if score is None else f"{score:.4f}"
