"""What a run does when something goes wrong after training began.

An exception in a step, a validation or a checkpoint write stops the run with
`TrainingFailed`, after the Trainer saved `last/` from the last consistent state it has (the
weights and optimizer of the last completed update); the traceback goes to `train.log` in
the model directory. Out-of-memory batches are split, then skipped; non-finite updates are
skipped; a run that keeps hitting either stops the same way, with advice.
"""

from __future__ import annotations

import datetime
import gc
import sys
import tempfile
import traceback
from pathlib import Path

import torch

from attn.model.storage.layout import ModelDir

# An out-of-memory batch is split in halves at most this many times (down to 1/8) before
# the step is skipped.
OOM_SPLITS = 3
# Steps in a row that run out of memory (split or skipped), or whose loss or gradients are
# not finite, before the run stops.
OOM_STREAK = 5
NONFINITE_STREAK = 10


class TrainingFailed(Exception):
    """Training stopped on a fault after it began.

    Attributes:
        reason: what went wrong, one line.
        step: the updates done when it happened.
        saved_step: the step `last/` holds (what --resume continues from), None if none.
        advice: what to change before resuming ("" when resuming as is is the advice).
        log: the file holding the traceback, once written (None for a stop the run chose).
    """

    def __init__(self, reason: str, step: int, saved_step: int | None, advice: str = "") -> None:
        super().__init__(reason)
        self.reason, self.step, self.saved_step, self.advice = reason, step, saved_step, advice
        self.log: Path | None = None


class StopRun(Exception):
    """Raised inside the loop when a fault repeats too often to go on: the run saves `last/`
    and stops with `reason` and `advice`."""

    def __init__(self, reason: str, advice: str) -> None:
        super().__init__(reason)
        self.reason, self.advice = reason, advice


def one_line(error: BaseException) -> str:
    """`Type: message`, the message's first line only (`file: reason` for an OS error)."""
    if isinstance(error, OSError) and error.strerror:
        return f"{error.filename}: {error.strerror}" if error.filename else error.strerror
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def is_out_of_memory(error: BaseException) -> bool:
    """A CUDA (or MPS) allocation failure, or a MemoryError on the CPU."""
    if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
        return True
    # MPS reports it as a plain RuntimeError.
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def free_memory(device: torch.device) -> None:
    """Give back what an out-of-memory batch left allocated."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def write_log(model_dir: Path, error: BaseException) -> Path | None:
    """Append `error`'s traceback, the time and the command line to `model_dir/train.log`
    (a temporary file when the directory cannot be written); None if neither can."""
    stamp = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    text = (
        f"--- {stamp}: {' '.join(sys.argv)}\n"
        + "".join(traceback.format_exception(type(error), error, error.__traceback__))
        + "\n"
    )
    log = ModelDir(model_dir).train_log
    for path in (log, Path(tempfile.gettempdir()) / f"attn-{log.name}"):
        try:
            with path.open("a", encoding="utf-8") as f:
                f.write(text)
            return path
        except OSError:
            continue
    return None
