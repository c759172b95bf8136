"""The learning-rate schedule: linear warmup, then inverse square root decay.

It needs no total step count, so a run stopped by `--time-budget` or Ctrl-C and later
resumed follows the same curve as one uninterrupted run.
"""

from __future__ import annotations

import math


def lr_at(step: int, peak: float, warmup: int) -> float:
    """Learning rate of update `step` (1-based).

    Linear warmup to `peak` over `warmup` steps, then peak * sqrt(warmup / step).
    """
    if warmup == 0:
        return peak
    return peak * min(step / warmup, math.sqrt(warmup / step))
