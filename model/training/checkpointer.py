"""Checkpoints: every write of a run into the model directory but metrics.jsonl, and resuming.

Three kinds: the best weights (`model.safetensors`, with `config.json` pointing at them),
`last/` (weights and trainer state, to resume; `attn.model.training.state` writes it), and with
`keep_checkpoints` the weights of each validation in `checkpoints/` (for `attn average`).
Every file is written atomically, in an order that keeps the model directory loadable:
tokenizer, best weights and `last/` before `config.json` points at them.

The trainer state (`trainer_state.pt`) holds the state dicts of the run's parts (the loop's
progress, early stopping: flat keys such as "step" and "best_value"), the optimizer and
gradient scaler, the batch seed and world size, and every rank's random generators.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch

from attn.atomic import remove_stale_temp_files
from attn.model.storage.checkpoint import save_model_config, save_weights
from attn.model.storage.layout import WEIGHTS
from attn.model.training.average import save_step_checkpoint
from attn.model.training.distributed import Dist
from attn.model.training.early_stopping import EarlyStopping
from attn.model.training.ema import NoAverage, WeightAverage
from attn.model.training.optimizer import rescale_ngram_lr
from attn.model.training.settings import TrainError, TrainSettings
from attn.model.training.state import load_last, rng_state, save_last, set_rng_state


class Stateful(Protocol):
    """A part of the run whose state resumes: its keys go into the trainer state."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


class Checkpointer:
    """Writes and restores the checkpoints of one run (writes happen on rank 0 only).

    Args:
        parts: the stateful parts of the run (progress, early stopping, the weight average).
        average: the weights that are validated and kept as the best and in `checkpoints/`
            (`--ema`; the trained weights themselves without it). `last/` holds the trained
            weights, and the average in the trainer state.
        stopping: the early stopping whose best score config.json records.
        data: the run's `prepare.DataInfo` (config.json records its files).
        metric: the task's primary metric.
        defaults: the defaults chosen for the data (`defaults.Chosen.to_dict`), if any.
    """

    def __init__(
        self,
        model_dir: Path,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler | None,
        settings: TrainSettings,
        dist: Dist,
        *,
        parts: Sequence[Stateful],
        stopping: EarlyStopping,
        average: WeightAverage | NoAverage,
        config: Any,
        data: Any,
        metric: str,
        defaults: Mapping[str, Any] | None = None,
    ) -> None:
        self.dir, self.model, self.optimizer, self.scaler = model_dir, model, optimizer, scaler
        self.settings, self.dist, self.parts, self.stopping = settings, dist, parts, stopping
        self.average = average
        self.config, self.data, self.metric = config, data, metric
        self.defaults = defaults
        # The steps whose checkpoints the best weights average (--average-last), if so.
        self.averaged: list[int] | None = None
        self.data_digests = data.train_digests if dist.main else []
        # The step `last/` holds, and when it was written (time.monotonic()).
        self.last_step: int | None = None
        self.last_saved_at = time.monotonic()

    def trainer_state(self, rngs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """What resuming needs; `rngs`: every rank's random generators, in rank order."""
        state: dict[str, Any] = {}
        for part in self.parts:
            state.update(part.state_dict())
        state.update(
            {
                "batch_seed": self.settings.seed,
                "world_size": self.dist.world,
                "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler else {},
                "rng_ranks": rngs or [rng_state()],
            }
        )
        return state

    def write_initial(self) -> None:
        """The first checkpoint: the directory is a loadable (untrained) model from here on."""
        save_weights(self.model, self.dir / WEIGHTS)
        self.save_last()
        self.write_config()

    def save_validation(self, improved: bool, step: int, rngs: list[dict[str, Any]]) -> None:
        """After the validation of `step`: the best weights (when `improved`), `last/`, and
        the step checkpoint."""
        with self.average.applied():
            if improved:
                save_weights(self.model, self.dir / WEIGHTS)
                self.write_config()
            if self.settings.kept_checkpoints:
                save_step_checkpoint(self.dir, self.model, step, self.settings.kept_checkpoints)
        self.save_last(rngs)

    def save_average(self, steps: list[int], value: float) -> None:
        """The model holds the average of the checkpoints of `steps`, which validated better
        than the best: it becomes the best weights, and config.json says what it is."""
        self.stopping.best_value, self.stopping.best_step = value, steps[-1]
        save_weights(self.model, self.dir / WEIGHTS)
        self.averaged = steps
        self.write_config()

    def save_last(self, rngs: list[dict[str, Any]] | None = None) -> None:
        """`last/` alone (Ctrl-C, --save-every, a fault); `rngs` as in `trainer_state`."""
        state = self.trainer_state(rngs)
        save_last(self.dir, self.model, state)
        self.last_step, self.last_saved_at = state["step"], time.monotonic()

    def restore(self, device: torch.device) -> None:
        """Load `last/` into the model, optimizer, scaler, the parts and this rank's random
        generators.

        Raises:
            attn.model.storage.checkpoint.ModelError: no readable checkpoint.
            TrainError: another seed than the saved run's.
        """
        if self.dist.main:
            remove_stale_temp_files(self.dir)  # left by a run killed inside a write
        state = load_last(self.dir, self.model, device)
        self.optimizer.load_state_dict(state["optimizer"])
        rescale_ngram_lr(self.optimizer, self.settings.lr)
        if self.scaler is not None and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        for part in self.parts:
            part.load_state_dict(state)
        self.last_step = state["step"]
        seed = self.settings.seed
        if state["batch_seed"] != seed:
            raise TrainError(f"seed is fixed when resuming (the run used {state['batch_seed']})")
        # "rng": the one state that checkpoints written before "rng_ranks" hold.
        ranks = state.get("rng_ranks") or [state["rng"]]
        if self.dist.world == state["world_size"] == len(ranks):
            set_rng_state(ranks[self.dist.rank])  # each rank's own dropout stream goes on
        else:
            # Another number of processes: fresh, seeded streams.
            torch.manual_seed(seed + self.dist.rank + state["step"])

    def data_changed(self, saved_meta: Mapping[str, Any]) -> bool:
        """Whether the training files, real or synthetic, differ from those the saved run
        (config.json) began on."""
        saved = saved_meta.get("data", {})
        old = [d.get("sha256") for d in saved.get("train", [])]
        if not old:
            return False
        if old != [d["sha256"] for d in self.data_digests]:
            return True
        # (Runs recorded before synthetic digests were: only their presence is known.)
        if "synthetic_sha256" not in saved and saved.get("synthetic"):
            return False
        new_synthetic = [d["sha256"] for d in self.data.synthetic_digests]
        return saved.get("synthetic_sha256", []) != new_synthetic

    def write_config(self) -> None:
        """config.json: the model config, the settings, the data and the best score so far."""
        stopping = self.stopping
        meta = {
            "train": self.settings.to_dict(),
            **({"defaults": dict(self.defaults)} if self.defaults else {}),
            "data": {
                "train": self.data_digests,
                "val": [str(Path(p).resolve()) for p in self.data.val_files],
                "val_from_train": self.data.val_from_train,
                # The training rows' lengths in pieces, and whether max_length was chosen.
                **(
                    {"lengths": self.data.counts["lengths"]}
                    if "lengths" in self.data.counts
                    else {}
                ),
                **(
                    {
                        "synthetic": [str(p) for p in self.data.synthetic_files],
                        "synthetic_sha256": [d["sha256"] for d in self.data.synthetic_digests],
                    }
                    if self.data.synthetic_files
                    else {}
                ),
            },
            # The source language chooses the sentence splitter's rules at inference.
            **_languages(self.config.task, [d["file"] for d in self.data_digests]),
            "best": {
                "step": stopping.best_step,
                "metric": self.metric,
                "value": stopping.best_value,
            },
            # The best weights are those of a validation; before the first, the initial ones.
            "untrained": stopping.best_step is None,
            **({"averaged": {"steps": self.averaged}} if self.averaged else {}),
        }
        save_model_config(self.dir, self.config, **meta)


def _languages(task: str, train_files: list[str]) -> dict[str, Any]:
    """{"languages": {"src": ..., "tgt": ...}} for a translation model trained on files named
    by language (train.en and train.de); {} otherwise."""
    suffixes = [Path(f).suffix[1:] for f in train_files[:2]]
    if task != "translate" or len(suffixes) != 2:
        return {}
    if any(not s.isalpha() or s.lower() in ("src", "tgt", "jsonl", "tsv", "txt") for s in suffixes):
        return {}
    return {"languages": {"src": suffixes[0], "tgt": suffixes[1]}}
