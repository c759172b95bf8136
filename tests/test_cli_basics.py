"""The CLI skeleton: help, version, info; in-process and through the installed script."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import typer.main
from helpers import ATTN
from typer.testing import CliRunner

from attn import __version__
from attn.cli.main import app

runner = CliRunner()


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """The app and every command and group it registers, by argument path: (), ("train",),
    ("data",), ("data", "fetch"), ...; read from the app, so a new command is covered
    without an edit here."""
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


TREE = dict(_commands(typer.main.get_command(app)))
COMMANDS = [path for path in TREE if path]
GROUPS = [path for path, command in TREE.items() if hasattr(command, "commands")]


def test_the_command_list_is_read_from_the_app():
    # Guards the walk above: it must find the commands and the `data` group's commands.
    assert {("train",), ("serve",), ("average",), ("data",), ("data", "fetch")} <= set(COMMANDS)
    assert {(), ("data",)} <= set(GROUPS)


@pytest.mark.parametrize("path", GROUPS, ids=" ".join)
def test_help_lists_every_command(path):
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    for name, command in TREE[path].commands.items():
        assert re.search(rf"^\W*{re.escape(name)}\s", result.output, re.M), result.output
        assert command.help or command.short_help, f"attn {' '.join(path)} {name} has no help"


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_every_command_has_help_and_refuses_an_unknown_option(path):
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert f"Usage: attn {' '.join(path)} " in result.output
    result = runner.invoke(app, [*path, "--no-such-option"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    # One line says what is wrong, whatever frame the terminal gives it.
    (error,) = [line for line in result.output.splitlines() if "No such option" in line]
    assert "No such option: --no-such-option" in error
    assert f"Try 'attn {' '.join(path)} --help' for help." in result.output


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"attn {__version__}\n"


def test_info_reports_versions_devices_and_home(tmp_path, monkeypatch):
    import torch

    monkeypatch.setenv("ATTN_HOME", str(tmp_path))
    result = runner.invoke(app, ["info"])
    assert result.exit_code == 0, result.output
    assert f"torch            {torch.__version__}" in result.output
    assert "cuda" in result.output
    assert f"home             {tmp_path}" in result.output
    assert f"{tmp_path / 'models' / 'translate'} (none yet)" in result.output


def test_unknown_command_is_a_usage_error():
    result = runner.invoke(app, ["fly"])
    assert result.exit_code == 2


def test_installed_script_help_and_version():
    out = subprocess.run([ATTN, "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    assert "translate" in out.stdout
    out = subprocess.run([ATTN, "--version"], capture_output=True, text=True, timeout=60)
    assert (out.returncode, out.stdout) == (0, f"attn {__version__}\n")


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["translate", "--no-such-option"], "Error: No such option: --no-such-option"),
        (["translate", "--beam", "x"], "Error: Invalid value for '--beam': "),
        (["fly"], "Error: No such command 'fly'."),
        (["train"], "Error: Missing argument 'task'."),
    ],
)
def test_usage_errors_of_the_installed_script_are_one_line(args, line):
    out = subprocess.run([ATTN, *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stdout == ""
    (error,) = out.stderr.splitlines()
    assert error.startswith(line), error
    command = "attn" if args == ["fly"] else f"attn {args[0]}"
    assert error.endswith(f"(see: {command} --help)"), error


def test_python_dash_m_attn_info(tmp_path):
    env = {"ATTN_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-m", "attn", "info"], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert f"attn             {__version__}" in out.stdout
    assert out.stderr == ""


def test_help_does_not_import_torch():
    # Of the app and of every command: `--help` stays fast.
    code = (
        "import sys\n"
        "from attn.cli.main import app\n"
        "from typer.testing import CliRunner\n"
        f"for path in {[(), *COMMANDS]!r}:\n"
        "    CliRunner().invoke(app, [*path, '--help'])\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


def test_option_checks_before_the_model_load_do_not_import_torch():
    # A Ctrl-C is handled only from the model load on (cli/lines.py); an import of torch
    # before it could be interrupted half-way and end in a traceback.
    code = (
        "import sys\n"
        "from attn.cli.seq2seq import check_sampling\n"
        "check_sampling(True, None, 2, {'temperature': 0.7, 'top_k': 5, 'top_p': 0.9, "
        "'seed': 1})\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


def test_a_ctrl_c_wrapped_by_another_error_counts_as_ctrl_c():
    # Python reports an exception raised while a class is built (a dataclass field's
    # __set_name__, inside an import) as a RuntimeError caused by it.
    from attn.__main__ import _interrupted

    def build() -> None:
        class Field:
            def __set_name__(self, owner, name):
                raise KeyboardInterrupt

        class Owner:
            field = Field()

    with pytest.raises(RuntimeError) as caught:
        build()
    assert _interrupted(caught.value)
    assert not _interrupted(RuntimeError("something else"))
    try:
        raise ValueError("outer") from KeyError("inner")
    except ValueError as e:
        assert not _interrupted(e)


@pytest.mark.parametrize("allowed", [True, False])
def test_a_quick_exit_ends_like_python_does(tmp_path, allowed):
    # What a normal exit does before the interpreter's teardown still happens when a command
    # allowed skipping that teardown: non-daemon threads finish, atexit handlers run, buffered
    # output is written, and the exit status is the command's.
    code = (
        "import atexit, sys, threading, time\n"
        "from pathlib import Path\n"
        "from attn.cli.common import allow_quick_exit, end_process\n"
        "out = Path(sys.argv[1])\n"
        "atexit.register(lambda: (out / 'atexit').write_text('ran'))\n"
        "def late():\n"
        "    time.sleep(0.3)\n"
        "    (out / 'thread').write_text('ran')\n"
        "threading.Thread(target=late).start()\n"
        "sys.stdout.write('buffered, not flushed')\n"
        f"if {allowed}:\n"
        "    allow_quick_exit()\n"
        "try:\n"
        "    sys.exit(3)\n"
        "except SystemExit as done:\n"
        "    end_process(done.code)\n"
        "print('not reached')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 3, out.stderr
    assert out.stdout == "buffered, not flushed"
    assert (tmp_path / "atexit").read_text() == "ran"
    assert (tmp_path / "thread").read_text() == "ran"
