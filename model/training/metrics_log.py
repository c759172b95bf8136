"""`metrics.jsonl`, one JSON line per validation, and `training.png`, the curves drawn from it.

`attn evaluate` appends lines of its own (marked "evaluate", without a step).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from attn.atomic import atomic_write, atomic_write_bytes
from attn.data import jsonlines
from attn.model.storage.layout import METRICS, PLOT


class MetricsLog:
    """The validation log of one model directory."""

    def __init__(self, model_dir: Path) -> None:
        self.path = Path(model_dir) / METRICS

    def append(self, record: dict[str, Any]) -> None:
        jsonlines.append(self.path, record)

    def drop_after(self, step: int) -> None:
        """Drop validations logged after `step` (the checkpoint a run resumes from): they
        will be redone."""
        raw = self.path.read_bytes() if self.path.is_file() else b""
        records = read_metrics(self.path.parent)
        kept = [r for r in records if r.get("step", 0) <= step]
        # A line cut short by a kill goes too: the next record would be appended onto it.
        if len(kept) != raw.count(b"\n") or (raw and not raw.endswith(b"\n")):
            atomic_write_bytes(self.path, jsonlines.text(kept).encode("utf-8"))


def read_metrics(model_dir: str | Path) -> list[dict[str, Any]]:
    """The validations logged in `metrics.jsonl` (a line cut short by a kill is skipped)."""
    path = Path(model_dir) / METRICS
    if not path.is_file():
        return []
    return [r for _, r in jsonlines.read(path, skip_bad=True) if isinstance(r, dict)]


def write_plot(model_dir: str | Path) -> Path | None:
    """Draw `training.png` from `metrics.jsonl`: losses and the task metrics per step."""
    # `attn evaluate` appends its own lines (no step): they are not part of the curves.
    records = [r for r in read_metrics(model_dir) if not r.get("evaluate")]
    if not records:
        return None
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    steps = [r["step"] for r in records]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for key in ("train_loss", "val_loss"):
        points = [
            (s, r[key]) for s, r in zip(steps, records, strict=True) if r.get(key) is not None
        ]
        if points:
            left.plot(*zip(*points, strict=True), marker="o", label=key.replace("_", " "))
    left.set_xlabel("step")
    left.set_ylabel("loss (per target piece)")
    left.legend()
    skip = {"step", "epoch", "time", "train_loss", "val_loss", "lr"}
    for key in sorted({k for r in records for k in r} - skip):
        points = [(s, r[key]) for s, r in zip(steps, records, strict=True) if key in r]
        right.plot(*zip(*points, strict=True), marker="o", label=key)
    right.set_xlabel("step")
    right.set_ylabel("score (%)")
    right.legend()
    fig.tight_layout()
    path = Path(model_dir) / PLOT
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
    return path
