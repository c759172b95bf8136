"""The Typer application behind the `attn` script.

Nothing heavy is imported here: `attn --help` must stay fast, so torch and the
model code are imported inside the commands that need them.
"""

from __future__ import annotations

from typing import Annotated

import typer

from attn import __version__

app = typer.Typer(
    name="attn",
    help="Train and run small encoder-decoder transformers: translate, summarize, sentiment.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"attn {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """attn: a small-model text tool. Results go to stdout, progress and errors to stderr."""
    from attn.cli.common import show_library_warnings

    show_library_warnings()


def _register() -> None:
    from attn.cli.commands import (
        attention,
        average,
        data,
        evaluate,
        export,
        info,
        sentiment,
        serve,
        summarize,
        train,
        translate,
    )

    attention.register(app)
    info.register(app)
    train.register(app)
    translate.register(app)
    summarize.register(app)
    sentiment.register(app)
    evaluate.register(app)
    average.register(app)
    export.register(app)
    serve.register(app)
    app.add_typer(data.app, name="data")


_register()


def main() -> None:
    app()
