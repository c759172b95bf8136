"""Shared fixtures: models trained once per test session on the built-in demo corpora.

Each is trained through the installed `attn` script, as a user would, so every test that
uses one also proves that `attn train` works end to end. Training them takes minutes on two
CPU cores, so every test that uses one is marked slow: `pytest -m "not slow"` trains none.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from helpers import ATTN

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# Steps that take each task past its accuracy bar on the demo corpus (see test_train.py).
DEMO_STEPS = {"translate": 400, "summarize": 300, "sentiment": 300}


def _train(task: str, directory: Path) -> Path:
    model_dir = directory / task
    cmd = [
        ATTN,
        "train",
        task,
        "--model-dir",
        str(model_dir),
        "--preset",
        "tiny",
        "--max-steps",
        str(DEMO_STEPS[task]),
        "--seed",
        "0",
        # One intra-op thread: as fast as two at this size, and far faster on a busy machine.
        "--threads",
        "1",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stderr[-3000:]}")
    return model_dir


DEMO_MODELS = {f"{task}_model" for task in DEMO_STEPS}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark slow every test that needs a demo model (directly or through another fixture).

    A test that picks its model with `request.getfixturevalue` is marked in its module.
    """
    for item in items:
        if DEMO_MODELS & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _restore_threads():
    """`train(threads=1)` sets torch's global thread count; give the next test its own back."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def trained_models_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def translate_model(trained_models_dir) -> Path:
    """A tiny translation model trained on the demo en->de corpus."""
    return _train("translate", trained_models_dir)


@pytest.fixture(scope="session")
def summarize_model(trained_models_dir) -> Path:
    """A tiny summarization model trained on the demo reports."""
    return _train("summarize", trained_models_dir)


@pytest.fixture(scope="session")
def sentiment_model(trained_models_dir) -> Path:
    """A tiny sentiment model trained on the demo reviews."""
    return _train("sentiment", trained_models_dir)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real datasets beside the project; tests using them skip when absent, and fail
    when ATTN_REQUIRE_SHARED_DATA=1 (CI, where they are always there: a skip would hide)."""
    if not SHARED_DATA.is_dir():
        message = f"shared datasets not found at {SHARED_DATA}"
        if os.environ.get("ATTN_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(f"{message} (ATTN_REQUIRE_SHARED_DATA=1)")
        pytest.skip(message)
    return SHARED_DATA
