"""Fine-tuning (`--init DIR`): the trained model a new run starts from.

The new run takes the init model's tokenizer, config and weights (an imported OPUS-MT model's
too: its tokenizer, vocabulary and architecture); the user's `--set`
overrides may change only what leaves the weights' shapes alone (dropout, say).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from attn.model.nn.config import ConfigError, ModelConfig
from attn.model.storage.checkpoint import (
    ModelError,
    check_weights,
    copy_tokenizer,
    load_weights,
    read_model_config,
)
from attn.model.storage.layout import WEIGHTS
from attn.model.training.settings import TrainError


@dataclass(frozen=True)
class InitModel:
    """A checked --init model: its directory, config and config.json's other sections."""

    dir: Path
    config: ModelConfig
    meta: dict[str, Any]

    @classmethod
    def check(cls, init: Path, model_dir: Path, task: str) -> InitModel:
        """The model in `init`, whose weights fit its config, to fine-tune into `model_dir`.

        Raises:
            TrainError: `init` is `model_dir`, holds no readable model, or one of another task.
        """
        if init.resolve() == model_dir.resolve():
            raise TrainError(
                f"--init {init} is the model directory itself; "
                "write the fine-tuned model to another --model-dir"
            )
        try:
            config, meta = read_model_config(init)
        except ValueError as e:
            raise TrainError(f"--init: {e}") from None
        if config.task != task:
            raise TrainError(f"--init {init} holds a {config.task} model, not a {task} model")
        try:
            check_weights(config, init / WEIGHTS)
        except ValueError as e:
            raise TrainError(f"cannot start from {init}: {e}") from None
        return cls(init, config, meta)

    def copy_tokenizer(self, model_dir: Path, emit: Callable[[dict[str, Any]], None]) -> None:
        """Write the init model's tokenizer into `model_dir` (the new model's): its one
        SentencePiece model, or an imported model's source and target models and vocabulary."""
        emit({"event": "stage", "message": f"starting from the model in {self.dir}"})
        try:
            copy_tokenizer(self.dir, model_dir)
        except ModelError as e:
            raise TrainError(f"cannot start from {self.dir}: {e}") from None

    def model_config(self, overrides: Mapping[str, Any], labels: list[str] | None) -> ModelConfig:
        """The init model's config under `overrides`, checked against its weights (an
        override may not change their shapes) and the data's `labels`."""
        try:
            config = dataclasses.replace(self.config, **overrides)
        except (ConfigError, TypeError) as e:
            raise TrainError(f"bad model config: {e}") from None
        try:
            check_weights(config, self.dir / WEIGHTS)
        except ValueError:
            raise TrainError(
                f"--set {', '.join(self._reshaping(overrides))} would change the shapes of the "
                "--init model's weights; fine-tuning can change only settings such as dropout"
            ) from None
        if tuple(labels or ()) != config.labels:
            raise TrainError(
                f"--init {self.dir} classifies into labels {', '.join(config.labels)}; "
                f"this data has {', '.join(labels or ())}"
            )
        return config

    def load_weights(self, model: torch.nn.Module, device: torch.device) -> None:
        load_weights(model, self.dir / WEIGHTS, device)

    def _reshaping(self, overrides: Mapping[str, Any]) -> list[str]:
        """The overrides that, each on its own, do not fit the init model's weights."""
        keys = []
        for key, value in sorted(overrides.items()):
            try:
                check_weights(dataclasses.replace(self.config, **{key: value}), self.dir / WEIGHTS)
            except ValueError:
                keys.append(key)
        return keys
