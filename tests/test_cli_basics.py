"""The CLI skeleton: help, version, info; in-process and through the installed script."""

from __future__ import annotations

import subprocess
import sys

from helpers import ATTN
from typer.testing import CliRunner

from attn import __version__
from attn.cli.main import app

runner = CliRunner()


def test_help_lists_every_command():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in (
        "train",
        "translate",
        "summarize",
        "sentiment",
        "evaluate",
        "attention",
        "info",
    ):
        assert command in result.output


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


def test_python_dash_m_attn_info(tmp_path):
    env = {"ATTN_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-m", "attn", "info"], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert f"attn             {__version__}" in out.stdout
    assert out.stderr == ""


def test_help_does_not_import_torch():
    code = (
        "import sys\n"
        "from attn.cli.main import app\n"
        "from typer.testing import CliRunner\n"
        "CliRunner().invoke(app, ['--help'])\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr
