"""Early stopping: the best validation score so far, and when to give up on improving it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass
class EarlyStopping:
    """Tracks the best value of the task's primary metric (higher is better); stop after
    `patience` validations in a row without a new best (never when `patience` is None)."""

    patience: int | None
    best_value: float | None = None
    best_step: int | None = None
    bad_validations: int = 0

    def update(self, value: float, step: int) -> bool:
        """Record the validation of `step`; returns whether it is a new best."""
        improved = self.best_value is None or value > self.best_value
        if improved:
            self.best_value, self.best_step, self.bad_validations = value, step, 0
        else:
            self.bad_validations += 1
        return improved

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.bad_validations >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {
            "best_value": self.best_value,
            "best_step": self.best_step,
            "bad_validations": self.bad_validations,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best_value = state["best_value"]
        self.best_step = state["best_step"]
        self.bad_validations = state["bad_validations"]
