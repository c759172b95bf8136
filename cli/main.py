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
        import_model,
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
    import_model.register(app)
    serve.register(app)
    app.add_typer(data.app, name="data")


_register()


def main() -> None:
    """Run the CLI; a usage error (unknown option, bad value, missing argument) is one
    `Error:` line on stderr naming the help to read, exit status 2."""
    import sys

    from rich.markup import escape

    from attn.cli.common import err_console

    # Click's exception classes, by way of the one Typer exports (Typer may vendor Click).
    usage_error, click_exception = (
        next(c for c in typer.BadParameter.__mro__ if c.__name__ == name)
        for name in ("UsageError", "ClickException")
    )
    try:
        code = app(standalone_mode=False)
    except click_exception as e:
        hint = ""
        if isinstance(e, usage_error) and e.ctx is not None:
            hint = f" (see: {e.ctx.command_path} --help)"
        message = " ".join(e.format_message().split())  # one line, whatever Click wrapped
        if message:  # (a group called without a command has printed its help instead)
            err_console.print(f"[bold red]Error:[/] {escape(message)}{hint}", soft_wrap=True)
        sys.exit(e.exit_code)
    except typer.Abort:
        sys.exit(130)  # Ctrl-C or end of input at a prompt
    sys.exit(code or 0)
