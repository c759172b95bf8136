"""Shared CLI plumbing: the stderr console, one-line errors and option types."""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
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


class _WarningLines(logging.Handler):
    """Library warnings (an untrained model, the tokenizer shrinking its vocabulary) as
    `Warning:` lines on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        err_console.print(f"[yellow]Warning:[/] {escape(record.getMessage())}", soft_wrap=True)


def show_library_warnings() -> None:
    """Print the `attn` loggers' warnings as `Warning:` lines (once per process)."""
    attn_logger = logging.getLogger("attn")
    if not any(isinstance(h, _WarningLines) for h in attn_logger.handlers):
        attn_logger.addHandler(_WarningLines(logging.WARNING))


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


# Set by a command once everything it writes is written and closed (see `end_process`).
_quick_exit_allowed = False


def allow_quick_exit() -> None:
    """Let this process end without the interpreter's teardown (`end_process`): for a command
    whose outputs are all flushed and closed, and that leaves nothing to garbage-collect that
    matters."""
    global _quick_exit_allowed
    _quick_exit_allowed = True


def end_process(code: object) -> NoReturn:
    """Exit with `code` (a `SystemExit` code). After `allow_quick_exit`, as Python would up to
    its teardown (non-daemon threads joined, atexit handlers run, stdout and stderr flushed),
    then at once: with torch and a model loaded, freeing every module, tensor and object one
    by one takes about 0.3 s, a fifteenth of translating a 1,000-line file."""
    if not _quick_exit_allowed or not isinstance(code, int | None):
        sys.exit(code)
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (BrokenPipeError, ValueError):  # a reader gone, or a stream closed: as Python
        sys.exit(code)
    os._exit(code or 0)
