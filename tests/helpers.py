"""Helpers shared by several test modules: the installed `attn` script, the check that an
optional extra is installed, slices of the demo corpora, fast training options, the weights
of last/, the `attn train` CLI in-process, and a child-process hook for Ctrl-C tests.

Test modules import it as `from helpers import ...`; `pythonpath = ["tests"]` in
pyproject.toml's [tool.pytest.ini_options] makes that work under `pytest` and
`python -m pytest` alike, whatever the import mode.
"""

from __future__ import annotations

import importlib.util
import signal
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from attn.data import demo_dir

# The console script of the environment running the tests, so a subprocess runs what a
# user runs (and never another installation found on PATH).
BIN = Path(sys.executable).parent
ATTN = str(BIN / "attn")


def require_extra(extra: str, *modules: str) -> None:
    """Fail (never skip) the calling test when a module of an optional extra is missing: CI
    installs every extra, and a skip would hide that a feature went untested."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        pytest.fail(
            f"these tests need {', '.join(missing)} (the `{extra}` extra): "
            f"pip install -e '.[{extra}]'",
            pytrace=False,
        )


def train_cli(*args: str):
    """`attn train ARGS` in-process; the typer result (exit_code, output)."""
    from attn.cli.main import app

    return CliRunner().invoke(app, ["train", *args])


def quick(data: Path, **extra) -> dict:
    """`attn.model.training.train.train` options for a fast run on a data slice: the tiny
    preset, 20 steps, no validation before the end; `extra` overrides or adds."""
    return {
        "data": str(data),
        "preset": "tiny",
        "vocab_size": 400,
        "batch_tokens": 512,
        "warmup": 10,
        "max_steps": 20,
        "val_every": 1000,
        **extra,
    }


def last_weights(model_dir: Path) -> dict:
    """The weights in `model_dir/last/` (what --resume continues from), by name."""
    from safetensors.torch import load_file

    return load_file(str(model_dir / "last" / "model.safetensors"))


def slice_translate(tmp_path: Path, n_train: int = 300, n_val: int = 16) -> Path:
    """The first lines of the demo en->de corpus, as a data directory."""
    out = tmp_path / "mt"
    out.mkdir()
    demo = demo_dir("translate")
    for split, n in (("train", n_train), ("val", n_val)):
        for lang in ("en", "de"):
            lines = (demo / f"{split}.{lang}").read_text(encoding="utf-8").splitlines()[:n]
            (out / f"{split}.{lang}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def slice_sentiment(tmp_path: Path, n_train: int = 400, n_val: int = 40) -> Path:
    """The first rows of the demo sentiment tables, as a data directory."""
    out = tmp_path / "sst"
    out.mkdir()
    demo = demo_dir("sentiment")
    for split, n in (("train", n_train), ("val", n_val)):
        lines = (demo / f"{split}.tsv").read_text(encoding="utf-8").splitlines()[: n + 1]
        (out / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def sigint_default() -> None:
    """In the child: default Ctrl-C handling, even when the test runner was started with
    SIGINT ignored (as a shell does for a background job), which Python would inherit."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
