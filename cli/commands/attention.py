"""`attn attention`: show the attention weights a trained model used on a text."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from attn.cli.common import fail
from attn.data.task_files import Task

if TYPE_CHECKING:
    from attn.model.inference.attention_maps import AttentionMap, AttentionMaps


class Kind(str, Enum):
    encoder = "encoder"
    decoder = "decoder"
    cross = "cross"
    all = "all"


class Format(str, Enum):
    table = "table"
    json = "json"


def attention(
    text: Annotated[str, typer.Argument(help="The text to run the model on.", show_default=False)],
    model: Annotated[
        Path | None,
        typer.Option("-m", "--model", help="Model directory. Default: the task's default model."),
    ] = None,
    task: Annotated[
        Task | None,
        typer.Option(help="The task (default: the model's, or translate without -m)."),
    ] = None,
    kind: Annotated[
        Kind,
        typer.Option(
            help="encoder self-, decoder masked self- or decoder-to-encoder cross-attention."
        ),
    ] = Kind.all,
    layer: Annotated[
        int | None, typer.Option(help="Only this layer (0 = first). Default: every layer.")
    ] = None,
    head: Annotated[
        int | None, typer.Option(help="Only this head (0 = first). Default: mean over heads.")
    ] = None,
    heads: Annotated[bool, typer.Option("--heads", help="One map per head.")] = False,
    values: Annotated[
        bool, typer.Option("--values", help="Print weight x 100 in shaded cells too.")
    ] = False,
    output_format: Annotated[
        Format | None,
        typer.Option(
            "--format",
            help="table (shaded, for the terminal) or json (tokens and matrices). "
            "Default: table, or nothing when --png/--out-dir is given.",
        ),
    ] = None,
    png: Annotated[
        Path | None, typer.Option("--png", help="Write all chosen maps into one PNG image.")
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out-dir", help="Write one PNG per map into this directory.")
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    beam: Annotated[
        int,
        typer.Option(
            min=1, max=16, help="Beam size of the output shown (1 = greedy), as attn translate's."
        ),
    ] = 4,
    to: Annotated[
        str | None,
        typer.Option(
            help="Target language of a model that translates into several (fra for its "
            "token >>fra<<).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Show the attention weights a model used on a text.

    Three kinds: encoder self-attention, decoder masked self-attention (no looking ahead)
    and decoder-to-encoder cross-attention, as shaded tables, images or JSON.
    Sequence-to-sequence models first generate their output, the one `attn translate` or
    `attn summarize` gives with the same --beam; the weights shown are those of one forward
    pass over the text and that output. Layers and heads count from 0.

    Example: attn attention "the cat sat on the mat" --layer 1 --heads
    """
    from attn.cli.common import err_console

    if not text.strip():
        fail("TEXT is empty; give the sentence to look at, e.g. attn attention 'the cat sat'")
    if head is not None and heads:
        fail("--head and --heads exclude each other: pick one head, or all of them")
    maps, max_length = _run(text, model, task, device, to, beam)
    try:
        chosen = maps.choose(kind.value, layer, head, heads)
    except ValueError as e:
        fail(str(e))
    if maps.truncated:
        err_console.print(
            f"attention: the text is longer than the model's {max_length} "
            "pieces; only its beginning was used",
            soft_wrap=True,
            markup=False,
        )
    _write_images(maps, chosen, f"{text} \u2192 {maps.output}", png, out_dir)
    if output_format is None and (png is not None or out_dir is not None):
        return
    if output_format is Format.json:
        import sys

        from attn.data import jsonlines

        sys.stdout.write(jsonlines.dumps(maps.to_dict(chosen)) + "\n")
        return
    _print_tables(maps, chosen, values)


def _run(
    text: str, model: Path | None, task: Task | None, device: str, to: str | None, beam: int
) -> tuple[AttentionMaps, int]:
    """Load the model and record its attention on `text` (a sequence-to-sequence model's on
    the output its pipeline gives with `beam`, as `POST /attention` does); returns the maps
    and max_length."""
    from attn.data.home import default_model_dir
    from attn.model.device import resolve_device
    from attn.model.inference.attention_maps import attention_maps
    from attn.model.inference.pipeline import load_pipeline
    from attn.model.storage.checkpoint import ModelError, load_model, read_model_config

    try:
        task_name = None if task is None else task.value
        model_dir = model or default_model_dir(task_name or "translate")
        task_name = task_name or read_model_config(model_dir)[0].task
        if task_name != "sentiment":
            # Loaded as `attn translate` loads it, so the output is the one it gives.
            pipeline = load_pipeline(task_name, model_dir, device=device)
            maps = pipeline.attention_maps(text, beam=beam, to=to)
            return maps, pipeline.config.max_length
        loaded = load_model(model_dir, task=task_name, device=resolve_device(device))
        return attention_maps(loaded, text, to), loaded.config.max_length
    except ModelError as e:
        hint = "" if model else "; train one with `attn train` or pass -m DIR"
        fail(f"{e}{hint}")
    except ValueError as e:
        fail(str(e))


def _write_images(
    maps: AttentionMaps,
    chosen: list[AttentionMap],
    title: str,
    png: Path | None,
    out_dir: Path | None,
) -> None:
    from attn.cli import render
    from attn.cli.common import err_console
    from attn.model.inference.attention_maps import AXES

    try:
        if png is not None:
            render.save_png(chosen, png, maps.n_heads, AXES, title)
            err_console.print(f"wrote {png}", soft_wrap=True, markup=False)
        if out_dir is not None:
            written = render.save_pngs(chosen, out_dir, maps.n_heads, AXES, title)
            err_console.print(
                f"wrote {len(written)} images to {out_dir}", soft_wrap=True, markup=False
            )
    except OSError as e:
        fail(f"cannot write {e.filename or png or out_dir}: {e.strerror or e}")


def _print_tables(maps: AttentionMaps, chosen: list[AttentionMap], values: bool) -> None:
    """Shaded tables on stdout; a note on stderr where the terminal cut columns."""
    from rich.console import Console

    from attn.cli import render
    from attn.cli.common import err_console
    from attn.model.inference.attention_maps import format_alignment

    console = Console(highlight=False, markup=False)
    if maps.task == "sentiment":
        console.print(f"label: {maps.output} ({maps.probability:.2f})", soft_wrap=True)
    else:
        console.print(f"output: {maps.output}", soft_wrap=True)
        console.print(f"alignment: {format_alignment(maps.alignment())}", soft_wrap=True)
    render.render_scale(console)
    cut = set()
    for m in chosen:
        console.print()
        shown = render.render_map(console, m, maps.n_heads, values=values)
        if shown is not None:
            cut.add((shown, len(m.columns)))
    for shown, total in sorted(cut):
        err_console.print(
            f"attention: the terminal fits {shown} of {total} columns; the rest are cut "
            "(widen the terminal, or use --png or --format json)",
            soft_wrap=True,
            markup=False,
        )


def register(app: typer.Typer) -> None:
    app.command("attention")(attention)
