"""What a run does when something goes wrong after training began.

An exception in a step, a validation or a checkpoint write stops the run with
`TrainingFailed`, after `Faults.failure` saved `last/` from the last consistent state there
is (the weights and optimizer of the last completed update); the traceback goes to
`train.log` in the model directory. Out-of-memory batches are split, then skipped; non-finite
updates are skipped; a run that keeps hitting either stops the same way, with advice.
`Faults` is that policy: the Trainer runs each step through it and tells it where a fault
would land (a phase, inside an update or not).
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import torch

from attn.model.storage.layout import ModelDir
from attn.model.training.state import rng_state

if TYPE_CHECKING:
    from attn.model.training.checkpointer import Checkpointer
    from attn.model.training.distributed import Dist
    from attn.model.training.loop import Progress
    from attn.model.training.settings import TrainSettings

T = TypeVar("T")

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


class Faults:
    """The fault policy of one run: out-of-memory batches split, then skipped; non-finite
    updates skipped; the counters of both (in `progress`, saved with the trainer state) and
    the stop after too many in a row; and `last/` saved on a failure.

    Warnings go to `warn` (rank 0 only). Under DDP an out-of-memory error is not survived:
    the ranks would disagree on the step.
    """

    def __init__(
        self,
        *,
        progress: Progress,
        settings: TrainSettings,
        optimizer: torch.optim.Optimizer,
        checkpointer: Checkpointer,
        dist: Dist,
        device: torch.device,
        warn: Callable[[str], None],
    ) -> None:
        self.progress, self.settings, self.optimizer = progress, settings, optimizer
        self.checkpointer, self.dist, self.device, self._warn = checkpointer, dist, device, warn
        self.oom_streak = self.nonfinite_streak = 0
        # Where a fault would land: the phase ("training", "validating", "saving"), inside a
        # step (its random generators are `step_rng`), inside the update of the weights.
        self.phase = "training"
        self.in_step = self.in_update = False
        self.step_rng = rng_state()

    @contextlib.contextmanager
    def doing(self, phase: str) -> Iterator[None]:
        """`phase` is what a fault inside the block interrupted (it stays so on an exception)."""
        self.phase = phase
        yield
        self.phase = "training"

    def step(self, group: list[list[int]], update: Callable[[list[list[int]]], T]) -> T | None:
        """`update(group)`; out of memory: again over the batches split in halves, at most
        OOM_SPLITS times, then None (the step skipped).

        Raises:
            StopRun: OOM_STREAK steps in a row ran out of memory.
        """
        self.step_rng, self.in_step = rng_state(), True
        parts, splits, fits = group, 0, True
        while True:
            try:
                result = update(parts)
                break
            except Exception as e:
                if not is_out_of_memory(e) or self.dist.enabled:
                    raise
            # Out of memory (outside the except: its traceback no longer holds the batch).
            self.optimizer.zero_grad(set_to_none=True)
            free_memory(self.device)
            halves = [half for index in parts for half in _halves(index)]
            if splits == OOM_SPLITS or len(halves) == len(parts):
                result, fits = None, False
                break
            parts, splits = halves, splits + 1
        self.in_step = False
        self._count_oom(splits, fits, sum(len(index) for index in group), len(parts))
        return result

    def _count_oom(self, splits: int, fits: bool, examples: int, pieces: int) -> None:
        """Warn about a step that ran out of memory; stop after OOM_STREAK in a row."""
        p = self.progress
        if not splits and fits:
            self.oom_streak = 0
            return
        self.oom_streak += 1
        if self.oom_streak >= OOM_STREAK:
            batch_tokens = self.settings.batch_tokens
            raise StopRun(
                f"out of memory on {OOM_STREAK} steps in a row",
                f"lower --batch-tokens (now {batch_tokens}, e.g. --batch-tokens "
                f"{max(1, batch_tokens // 2)})",
            )
        if fits:
            p.oom_split += 1
            self._warn(
                f"out of memory on a batch of {examples} examples at step {p.step + 1}: "
                f"trained it in {pieces} pieces"
            )
        else:
            p.oom_skipped += 1
            self._warn(
                f"out of memory on a batch of {examples} examples after step {p.step}, even "
                f"split in {pieces}: skipped it ({p.oom_skipped} skipped so far)"
            )

    def finite(
        self, loss: torch.Tensor, norm: torch.Tensor, scaler: torch.amp.GradScaler | None
    ) -> bool:
        """Whether to apply an update of summed loss `loss` and gradient norm `norm` (one host
        sync); a finite one ends a streak of non-finite ones.

        With a gradient scaler, infinite gradients are its overflows: it skips those updates
        itself (and lowers its scale). A non-finite loss is a fault either way. Under DDP the
        decision goes by the all-reduced norm alone, the same on every rank (a rank's own
        loss is not).
        """
        if self.dist.enabled:
            finite = torch.isfinite(norm) | (scaler is not None)
        elif scaler is not None:
            finite = torch.isfinite(loss)
        else:
            finite = torch.isfinite(loss) & torch.isfinite(norm)
        if bool(finite):
            self.nonfinite_streak = 0
            return True
        return False

    def skipped_nonfinite(self) -> None:
        """Count an update skipped for a non-finite loss or gradient, and warn.

        Raises:
            StopRun: NONFINITE_STREAK in a row.
        """
        p = self.progress
        p.nonfinite_skipped += 1
        self.nonfinite_streak += 1
        if self.nonfinite_streak >= NONFINITE_STREAK:
            raise StopRun(
                f"the loss or the gradients were not finite on {NONFINITE_STREAK} steps in "
                f"a row after step {p.step}",
                f"lower --lr (now {self.settings.lr:g}) or check the training data",
            )
        self._warn(
            f"the loss or the gradients are not finite after step {p.step}: skipped the "
            f"update ({p.nonfinite_skipped} skipped so far)"
        )

    def failure(self, error: Exception) -> TrainingFailed:
        """Save `last/` from the last consistent state, if there is one, and describe the
        fault. Runs on the rank that failed only: no collective calls."""
        p = self.progress
        if isinstance(error, TrainingFailed):
            return error
        # Inside a step the weights and optimizer are still those of the last update (until
        # the update itself begins); the random generators go back to the step's start.
        consistent = not self.in_update
        if consistent and self.dist.main:
            rngs = [self.step_rng if self.in_step else rng_state()]
            if self.dist.enabled:  # the other ranks' generators are out of reach
                rngs = None
            with contextlib.suppress(Exception):
                self.checkpointer.save_last(rngs)
        saved = self.checkpointer.last_step
        if isinstance(error, StopRun):
            return TrainingFailed(error.reason, p.step, saved, error.advice)
        return TrainingFailed(
            f"{self.phase} failed at step {p.step}: {one_line(error)}", p.step, saved
        )


def _halves(index: list[int]) -> list[list[int]]:
    """A batch's examples in two batches (one, if it has a single example)."""
    middle = (len(index) + 1) // 2
    return [index[:middle], index[middle:]] if len(index) > 1 else [index]
