"""`attn translate` on documents: subtitles, Markdown and HTML written back in their format.

A file is a document when `--input-format` or its extension says so (see
`attn.data.documents.detect_format`); then every input is read and parsed before the model
loads (a malformed file fails with nothing written), each is translated in one call, and
its translation is written whole: to stdout, to `-o FILE`, or into `--output-dir`, each
file written atomically. On a terminal, stderr shows each file's progress: parts (cues,
paragraphs, text nodes) done of all.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from attn.cli.common import allow_quick_exit, err_console, reported_errors, stderr_is_terminal
from attn.cli.lines import Format, interrupt_noted, same_file

if TYPE_CHECKING:
    from attn.data.documents import Document

# Called with (units done, units in all) as a document is translated.
Progress = Callable[[int, int], None]


class InputFormat(str, Enum):
    text = "text"
    srt = "srt"
    vtt = "vtt"
    markdown = "markdown"
    html = "html"


InputFormatOpt = Annotated[
    InputFormat | None,
    typer.Option(
        "--input-format",
        help="Read the inputs as this format and write the translation in it (structure "
        "kept). Default: by extension (.srt, .vtt, .md, .html/.htm), else text.",
        show_default=False,
    ),
]


def run_documents(
    files: Sequence[str],
    output: Path | None,
    output_dir: Path | None,
    input_format: InputFormat | None,
    load: Callable[[], Any],
    translate: Callable[[Any, Document, Progress | None], str],
    *,
    fmt: Format,
    n_best: int,
    field: str | None,
    align: bool,
) -> bool:
    """Translate the inputs as documents if any is one; False (nothing done) when all are
    plain text, which the line-by-line path handles.

    Args:
        load: loads the pipeline (once every input is parsed).
        translate: (pipeline, document, progress) -> the translated document's text;
            `progress` (None off a terminal) takes (units done, units in all).

    Raises:
        typer.BadParameter: an option documents do not take (usage error, exit 2).
    """
    from attn.data.documents import detect_format

    files = list(files) or ["-"]
    explicit = input_format.value if input_format is not None else None
    formats = [detect_format(f, explicit) for f in files]
    if all(f == "text" for f in formats):
        return False
    for given, flag in ((fmt is not Format.text, "--format"), (n_best > 1, "--n-best")):
        if given:
            raise typer.BadParameter("a document is written in its own format", param_hint=flag)
    for given, flag in ((field is not None, "--field"), (align, "--align")):
        if given:
            raise typer.BadParameter("does not apply to documents", param_hint=flag)
    targets = _targets(files, output, output_dir)
    with reported_errors():
        from attn.data.documents import load as load_document

        documents = [load_document(f, f_fmt) for f, f_fmt in zip(files, formats, strict=True)]
        with interrupt_noted():
            pipeline = load()
        with _progress_bar() as track:
            for name, document, target in zip(files, documents, targets, strict=True):
                progress = track(name) if track is not None else None
                data = translate(pipeline, document, progress).encode()
                _write(data, target)
        allow_quick_exit()
    return True


def _write(data: bytes, target: Path | None) -> None:
    if target is None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        from attn.atomic import atomic_write_bytes

        atomic_write_bytes(target, data)


@contextmanager
def _progress_bar() -> Iterator[Callable[[str], Progress] | None]:
    """On a terminal, for each input's name a callback that shows its progress on stderr
    (a bar, parts done of all, time left); None elsewhere."""
    if not stderr_is_terminal():
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
    from rich.progress import Progress as Bar

    with Bar(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("parts"),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    ) as bar:

        def track(name: str) -> Progress:
            task = bar.add_task("<stdin>" if name == "-" else Path(name).name, total=None)
            return lambda done, total: bar.update(task, completed=done, total=total)

        yield track


def _targets(files: list[str], output: Path | None, output_dir: Path | None) -> list[Path | None]:
    """Where each document's translation goes (None: stdout)."""
    if output is not None and output_dir is not None:
        raise typer.BadParameter("give --output or --output-dir, not both", param_hint="--output")
    if output_dir is None:
        if output is not None and len(files) > 1:
            raise typer.BadParameter(
                "one document per --output; use --output-dir for several", param_hint="--output"
            )
        if output is not None and same_file(output, files[0]):
            raise typer.BadParameter(f"{output} is also an input", param_hint="--output")
        return [output] * len(files)
    if "-" in files:
        raise typer.BadParameter("needs input files, not stdin", param_hint="--output-dir")
    targets: list[Path | None] = [output_dir / Path(f).name for f in files]
    if len({str(t) for t in targets}) != len(targets):
        raise typer.BadParameter(
            "two inputs have the same file name; their outputs would collide",
            param_hint="--output-dir",
        )
    for f, target in zip(files, targets, strict=True):
        if same_file(Path(str(target)), f):
            raise typer.BadParameter(f"would overwrite the input {f}", param_hint="--output-dir")
    output_dir.mkdir(parents=True, exist_ok=True)
    return targets
