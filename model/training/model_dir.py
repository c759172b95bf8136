"""Which model directory a run may use: the rules of --resume and --overwrite, and clearing a
directory for --overwrite."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attn.model.nn.config import ModelConfig, load_config
from attn.model.storage.checkpoint import check_weights
from attn.model.storage.layout import CONFIG, WEIGHTS, ModelDir
from attn.model.training.settings import TrainError
from attn.model.training.state import find_last


@dataclass(frozen=True)
class SavedRun:
    """The model a resumed run continues: its config and config.json's other sections."""

    config: ModelConfig
    meta: dict[str, Any]


def check_model_dir(
    model_dir: Path, task: str, *, resume: bool, overwrite: bool
) -> SavedRun | None:
    """The run saved in `model_dir` when resuming, else None once `model_dir` may be used.

    Raises:
        TrainError: both flags; a file in the way; nothing to resume or a model of another
            task; a model already there without --resume or --overwrite.
    """
    if resume and overwrite:
        raise TrainError("--resume and --overwrite exclude each other; pick one")
    config_path = model_dir / CONFIG
    if model_dir.exists() and not model_dir.is_dir():
        raise TrainError(f"{model_dir} is a file, not a model directory")
    if resume:
        if not config_path.is_file():
            raise TrainError(f"nothing to resume: {model_dir} holds no model (no {CONFIG})")
        config, meta = load_config(config_path)
        if config.task != task:
            raise TrainError(
                f"{model_dir} holds a {config.task} model; resume it with "
                f"`attn train {config.task} --resume`"
            )
        last = find_last(model_dir)
        if last is not None:
            # Before the model is built: a config edited to absurd sizes is not allocated.
            check_weights(config, last / WEIGHTS)
        return SavedRun(config, meta)
    if config_path.is_file() and not overwrite:
        held = _task_in(config_path)
        what = f"a {held} model" if held else "a model"
        hint = (
            "pass --resume to continue training it or --overwrite to replace it"
            if held == task
            else "pass --overwrite to replace it or choose another --model-dir"
        )
        raise TrainError(f"{model_dir} already holds {what}; {hint}")
    return None


def clear_model_dir(model_dir: Path) -> None:
    """--overwrite: what a previous run wrote goes, config.json first, so the directory never
    points at missing files; other files stay."""
    for path in ModelDir(model_dir).training_files():
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _task_in(config_path: Path) -> str | None:
    try:
        return json.loads(config_path.read_text(encoding="utf-8"))["model"]["task"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
