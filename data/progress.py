"""Progress of a long stage (reading or encoding a corpus) as events: how far, how fast, ETA.

Library code never prints: a stage reports `{"event": "prepare", ...}` dicts through a
callback, at most every `every` seconds and once when it ends; the CLI renders them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

Event = dict[str, Any]


class StageProgress:
    """Counts the items of one stage and emits throttled progress events.

    Event fields: stage (what is done), unit (what is counted), done, total (None when
    unknown), rate (items per second), eta (seconds, None when unknown), elapsed, final
    (True on the stage's last event).
    """

    def __init__(
        self,
        emit: Callable[[Event], None],
        stage: str,
        unit: str,
        total: int | None = None,
        every: float = 2.0,
    ) -> None:
        self.emit, self.stage, self.unit, self.total, self.every = emit, stage, unit, total, every
        self.started = self.last = time.monotonic()
        self.done = 0

    def update(self, done: int, fraction: float | None = None) -> None:
        """`done` items so far; `fraction` of the work done when `total` is unknown."""
        self.done = done
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self.emit(self._event(now, fraction, final=False))

    def finish(self, done: int | None = None) -> float:
        """The stage's last event; returns the seconds it took."""
        if done is not None:
            self.done = done
        now = time.monotonic()
        self.emit(self._event(now, 1.0, final=True))
        return now - self.started

    def _event(self, now: float, fraction: float | None, final: bool) -> Event:
        elapsed = now - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        if self.total:
            fraction = self.done / self.total
        eta = None
        if fraction and not final:
            eta = max(0.0, elapsed * (1 - fraction) / fraction)
        return {
            "event": "prepare",
            "stage": self.stage,
            "unit": self.unit,
            "done": self.done,
            "total": self.total,
            "rate": rate,
            "eta": 0.0 if final else eta,
            "elapsed": elapsed,
            "final": final,
        }
