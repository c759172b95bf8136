"""Shared CLI plumbing: the stderr console, one-line errors and option types."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

err_console = Console(stderr=True, highlight=False)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print `Error: message` on stderr and exit with `code`."""
    err_console.print(f"[bold red]Error:[/] {escape(message)}", soft_wrap=True)
    raise typer.Exit(code)


# 128 + SIGINT: what a shell reports for a command stopped with Ctrl-C.
EXIT_INTERRUPTED = 130


@contextmanager
def reported_errors() -> Iterator[None]:
    """Turn what a user can cause into a one-line error: Ctrl-C exits 130; OS errors (with the
    file name) and ValueErrors (DataError, ModelError, ConfigError, TokenizerError, bad
    devices: their message already says what is wrong) exit 1."""
    try:
        yield
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        fail(f"{where}{e.strerror or e}")
    except ValueError as e:
        fail(str(e))


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty()
