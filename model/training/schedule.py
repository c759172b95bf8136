"""The learning-rate schedule: linear warmup, then a decay.

"inverse-sqrt" (the default) needs no total step count, so a run stopped by `--time-budget`
or Ctrl-C and later resumed follows the same curve as one uninterrupted run. "linear" decays
to zero at the end of the run, whichever of `--max-steps`, `--epochs` or `--time-budget`
ends it first: a short run then ends on small steps, which anneal the weights (as averaging
does) instead of stopping at a large rate. "cooldown" follows inverse-sqrt for most of the
run and ramps down linearly to zero over its last fifth (`COOLDOWN`): the long stable part
of inverse-sqrt, and the annealed end of linear.
"""

from __future__ import annotations

import math
from typing import Any

DECAYS = ("inverse-sqrt", "linear", "cooldown")
# The fraction of a run at its end over which "cooldown" ramps the rate down to zero.
COOLDOWN = 0.2


def lr_at(
    step: int, peak: float, warmup: int, decay: str = "inverse-sqrt", done: float = 0.0
) -> float:
    """Learning rate of update `step` (1-based), `done` the fraction of the run behind it.

    Linear warmup to `peak` over `warmup` steps, then peak * sqrt(warmup / step)
    ("inverse-sqrt"), peak * (1 - done) ("linear"), or inverse-sqrt times
    min(1, (1 - done) / COOLDOWN) ("cooldown").
    """
    if decay == "linear":
        rise = min(1.0, step / warmup) if warmup else 1.0
        return peak * rise * max(0.0, 1.0 - done)
    rate = peak * min(step / warmup, math.sqrt(warmup / step)) if warmup else peak
    if decay == "cooldown":
        rate *= min(1.0, max(0.0, 1.0 - done) / COOLDOWN)
    return rate


def run_fraction(settings: Any, step: int, epoch: float, elapsed: float) -> float:
    """The fraction of a run (`TrainSettings`) behind it after `step` updates, `epoch`
    epochs and `elapsed` seconds: by the stop criterion nearest its end (0 with none)."""
    fractions = [0.0]
    if settings.max_steps is not None:
        fractions.append(step / settings.max_steps)
    if settings.epochs is not None:
        fractions.append(epoch / settings.epochs)
    if settings.time_budget is not None:
        fractions.append(elapsed / settings.time_budget)
    return min(1.0, max(fractions))
