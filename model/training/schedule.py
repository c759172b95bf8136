"""The learning-rate schedule: linear warmup, then a decay.

"inverse-sqrt" (the default) needs no total step count, so a run stopped by `--time-budget`
or Ctrl-C and later resumed follows the same curve as one uninterrupted run. "linear" decays
to zero at the end of the run, whichever of `--max-steps`, `--epochs` or `--time-budget`
ends it first: a short run then ends on small steps, which anneal the weights (as averaging
does) instead of stopping at a large rate.
"""

from __future__ import annotations

import math
from typing import Any

DECAYS = ("inverse-sqrt", "linear")


def lr_at(
    step: int, peak: float, warmup: int, decay: str = "inverse-sqrt", done: float = 0.0
) -> float:
    """Learning rate of update `step` (1-based), `done` the fraction of the run behind it.

    Linear warmup to `peak` over `warmup` steps, then peak * sqrt(warmup / step)
    ("inverse-sqrt"), or peak * (1 - done) ("linear").
    """
    if decay == "linear":
        rise = min(1.0, step / warmup) if warmup else 1.0
        return peak * rise * max(0.0, 1.0 - done)
    if warmup == 0:
        return peak
    return peak * min(step / warmup, math.sqrt(warmup / step))


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
