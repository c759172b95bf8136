"""The exponential moving average of the weights (`--ema DECAY`).

After every update, each parameter's average moves toward it: `avg += (1 - d) * (w - avg)`,
with `d = min(DECAY, (1 + n) / (10 + n))` after `n` updates, so that the first updates are
not held back by the random initial weights. Validation scores the averaged weights, and
they are what the model directory keeps as its best; training goes on with the raw ones.
On a short budget the average of the last few hundred updates is a better model than the
last of them (the same reason `attn average` helps), at the cost of one fused lerp per step.

The averages resume: they are part of the trainer state (`state_dict`, key "ema").
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn


class WeightAverage:
    """The moving average of `model`'s parameters (buffers are not averaged)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be between 0 and 1, got {decay}")
        self.decay = decay
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.shadow = [p.detach().clone() for p in self.params]
        self.updates = 0

    def rate(self) -> float:
        """The weight of the newest parameters in the next update: 1 - the decay used."""
        n = self.updates
        return 1.0 - min(self.decay, (1 + n) / (10 + n))

    @torch.no_grad()
    def update(self) -> None:
        """Move the averages toward the current parameters (after an optimizer step)."""
        torch._foreach_lerp_(self.shadow, [p.detach() for p in self.params], self.rate())
        self.updates += 1

    @contextlib.contextmanager
    @torch.no_grad()
    def applied(self) -> Iterator[None]:
        """Inside: the model holds the averaged weights; after: its own again."""
        saved = [p.detach().clone() for p in self.params]
        for p, avg in zip(self.params, self.shadow, strict=True):
            p.copy_(avg)
        try:
            yield
        finally:
            for p, own in zip(self.params, saved, strict=True):
                p.copy_(own)

    def state_dict(self) -> dict[str, Any]:
        return {"ema": {"updates": self.updates, "shadow": [t.cpu() for t in self.shadow]}}

    @torch.no_grad()
    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the averages; a state saved without them (a run begun without `--ema`)
        starts them from the current weights."""
        saved = state.get("ema")
        if not saved:
            self.shadow = [p.detach().clone() for p in self.params]
            self.updates = 0
            return
        for avg, value in zip(self.shadow, saved["shadow"], strict=True):
            avg.copy_(value)
        self.updates = int(saved["updates"])


class NoAverage:
    """`--ema 0`: the model's own weights are validated and kept."""

    def update(self) -> None:
        pass

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        yield

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pass


def weight_average(model: nn.Module, decay: float) -> WeightAverage | NoAverage:
    """The average for `--ema decay` (0: none)."""
    return WeightAverage(model, decay) if decay else NoAverage()
