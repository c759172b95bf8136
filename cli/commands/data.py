"""`attn data list` and `attn data fetch`: the public datasets, downloaded and converted."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from attn.cli.common import err_console, fail, stderr_is_terminal

if TYPE_CHECKING:
    from attn.data.catalog import Dataset
    from attn.data.fetch import FetchEvent

app = typer.Typer(
    name="data",
    help="List and download public datasets (Multi30k, SST-2, IMDB, DialogSum).",
    no_args_is_help=True,
)


class ListFormat(str, Enum):
    table = "table"
    json = "json"


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    if n < 1000:
        return f"{n} B"
    value = n / 1000
    for unit in ("kB", "MB"):
        if value < 1000:
            return f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def _checksum_note(dataset: Dataset) -> str:
    return f"{dataset.verified_files} of {len(dataset.files)} files"


def _as_json(dataset: Dataset) -> dict:
    return {
        "name": dataset.name,
        "title": dataset.title,
        "task": dataset.task,
        "size": dataset.size,
        "license": dataset.license,
        "citation": dataset.citation,
        "homepage": dataset.homepage,
        "files": [
            {
                "name": f.name,
                "url": f.url,
                "sha256": f.sha256,
                "sha256_of": "gunzipped content" if f.gunzip else "file",
                "git_blob": f.git_blob,
            }
            for f in dataset.files
        ],
    }


@app.command("list")
def list_datasets(
    format: Annotated[
        ListFormat, typer.Option("--format", "-f", help="A table, or JSON with URLs and checksums.")
    ] = ListFormat.table,
) -> None:
    """Show the public datasets `attn data fetch` can download."""
    from attn.data.catalog import DATASETS

    datasets = list(DATASETS.values())
    if format is ListFormat.json:
        typer.echo(json.dumps([_as_json(d) for d in datasets], indent=2, ensure_ascii=False))
        return

    from rich.console import Console
    from rich.table import Table

    table = Table(title="Public datasets: attn data fetch NAME", title_justify="left")
    for column in ("name", "task", "download", "license", "verified", "cite"):
        table.add_column(column, justify="right" if column == "download" else "left")
    for d in datasets:
        table.add_row(
            d.name,
            d.task,
            f"~{_size(d.size)}",
            escape(d.license),
            _checksum_note(d),
            escape(d.citation),
        )
    console = Console(highlight=False)
    console.print(table)
    console.print(
        "Check each license before use; `--format json` shows URLs and checksums. "
        "'verified': the files checked against a pinned SHA-256 (or, where none is known, "
        "the Git blob id at a pinned commit); an unverified file's hash is printed when fetched.",
        soft_wrap=True,
    )


@contextmanager
def _progress_reporter() -> Iterator[Callable[[FetchEvent], None]]:
    """A progress callback: a rich bar on a terminal, else plain lines on stderr."""
    if not stderr_is_terminal():

        def plain(event: FetchEvent) -> None:
            if event.kind == "start":
                line = f"Downloading {event.name} from {event.message}"
            elif event.kind == "finish":
                line = f"  {event.name}: {_size(event.done)}"
            elif event.kind == "advance":
                return
            else:
                line = f"  {event.name}: {event.message}"
            err_console.print(line, markup=False, soft_wrap=True)

        yield plain
        return

    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err_console,
    ) as bar:
        tasks: dict[str, int] = {}

        def rich_bar(event: FetchEvent) -> None:
            if event.kind in ("start", "advance", "finish"):
                if event.name not in tasks:
                    tasks[event.name] = bar.add_task(escape(event.name), total=event.total)
                bar.update(tasks[event.name], completed=event.done, total=event.total)
            else:
                bar.console.print(f"  {event.name}: {event.message}", markup=False)

        yield rich_bar


@app.command("fetch")
def fetch_dataset(
    name: Annotated[str, typer.Argument(help="The dataset: see `attn data list`.")],
    directory: Annotated[
        Path | None,
        typer.Option(
            "--dir",
            "-d",
            help="Where the converted files go. Default: ATTN_HOME/data/NAME.",
            show_default=False,
        ),
    ] = None,
    mirror: Annotated[
        str | None,
        typer.Option(
            "--mirror",
            envvar="ATTN_MIRROR",
            help="Download from this base URL or local directory holding the same file "
            "names, instead of the canonical URLs.",
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Fetch again even if DIR already holds the dataset.")
    ] = False,
) -> None:
    """Download a public dataset, verify it and convert it for `attn train --data`.

    An interrupted download resumes on the next run. Prints the `attn train` command to use.
    """
    from attn.data.catalog import UnknownDatasetError, get_dataset
    from attn.data.fetch import FetchError, fetch
    from attn.data.home import fetched_data_dir

    try:
        dataset = get_dataset(name)
    except UnknownDatasetError as e:
        fail(str(e))
    directory = directory or fetched_data_dir(name)
    try:
        with _progress_reporter() as report:
            result = fetch(dataset, directory, mirror=mirror, progress=report, force=force)
    except FetchError as e:
        fail(str(e))
    except KeyboardInterrupt:
        fail("interrupted; run the same command again to resume the download", code=130)

    if result.already_present:
        err_console.print(
            f"{dataset.name} is already in {result.directory} (--force fetches it again)",
            markup=False,
            soft_wrap=True,
        )
    else:
        names = ", ".join(f.name for f in result.files)
        err_console.print(
            f"Saved {dataset.name} to {result.directory}: {names}", markup=False, soft_wrap=True
        )
        err_console.print(f"License: {dataset.license}. Cite: {dataset.citation}.", markup=False)
    err_console.print("Train on it with:", markup=False)
    typer.echo(dataset.train_command(result.directory))
