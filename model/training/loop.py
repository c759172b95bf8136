"""The training loop: get a batch, forward, backward, step, log; validate and checkpoint every
`val_every` steps, and `last/` every `save_every` seconds; stop on steps, epochs, time, early
stopping or Ctrl-C.

A step is one optimizer update over `accum` batches; the loss is normalised by the target
tokens of all of them, so accumulation does not change the gradient's scale.

Faults (attn.model.training.faults): a batch that runs out of memory is split, then skipped;
an update whose loss or gradients are not finite is skipped; any other exception, or a fault
that keeps repeating, saves `last/` from the last completed update and raises
`TrainingFailed`.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from attn.model.evaluation.metrics import PRIMARY_METRIC
from attn.model.nn.transformer import Transformer
from attn.model.training.average import average_last
from attn.model.training.checkpointer import Checkpointer
from attn.model.training.corpus import Split, epoch_batches
from attn.model.training.distributed import Dist
from attn.model.training.early_stopping import EarlyStopping
from attn.model.training.faults import Faults, StopRun
from attn.model.training.metrics_log import MetricsLog
from attn.model.training.optimizer import CLIP_NORM, set_lr
from attn.model.training.precision import Precision
from attn.model.training.schedule import lr_at, run_fraction
from attn.model.training.settings import TrainError, TrainSettings
from attn.model.training.state import rng_state
from attn.model.training.validation import Validator

Event = dict[str, Any]

# Training loss and throughput are reported (one host sync) every this many steps.
LOG_EVERY = 50
# Under DDP the ranks agree on stopping (Ctrl-C, time budget) every this many steps.
STOP_SYNC_EVERY = 10


@dataclass
class Progress:
    """How far the run is (saved in the trainer state): updates done, the epoch and the
    position in its batches, seconds of training, the step of the last validation; and the
    faults survived: steps whose batch was split or skipped for lack of memory, updates
    skipped for a non-finite loss or gradient."""

    step: int = 0
    epoch: int = 0
    position: int = 0
    elapsed: float = 0.0
    validated_step: int = -1
    oom_split: int = 0
    oom_skipped: int = 0
    nonfinite_skipped: int = 0

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for name in self.state_dict():
            if name in state:  # the fault counters are newer than some checkpoints
                setattr(self, name, state[name])


class _Meter:
    """Summed training loss and tokens since the last reset. The loss stays on the device, so
    that a step never waits for the GPU; it is read at log or validation time."""

    def __init__(self, device: torch.device) -> None:
        self.loss = torch.zeros((), device=device)
        self.reset()

    def reset(self) -> None:
        self.loss.zero_()
        self.src_tokens = self.tgt_tokens = 0
        self.since = time.monotonic()

    def mean_loss(self) -> float | None:
        return self.loss.item() / self.tgt_tokens if self.tgt_tokens else None


class Trainer:
    """Runs the steps of one run, from `progress` on, until a stop criterion.

    `objective` is the loss module (under DDP, wrapped); `model` the network inside it.
    Rank 0 validates, logs metrics and writes checkpoints; `emit` gets its events.
    """

    def __init__(
        self,
        *,
        settings: TrainSettings,
        model: Transformer,
        objective: nn.Module,
        optimizer: torch.optim.Optimizer,
        precision: Precision,
        train: Split,
        validator: Validator,
        stopping: EarlyStopping,
        checkpointer: Checkpointer,
        metrics: MetricsLog,
        progress: Progress,
        dist: Dist,
        device: torch.device,
        emit: Callable[[Event], None],
        stop_requested: Callable[[], bool],
    ) -> None:
        self.settings, self.model, self.objective = settings, model, objective
        self.optimizer, self.precision, self.train = optimizer, precision, train
        self.validator, self.stopping, self.checkpointer = validator, stopping, checkpointer
        self.metrics, self.progress, self.dist, self.device = metrics, progress, dist, device
        self.emit, self.stop_requested = emit, stop_requested
        self.metric = PRIMARY_METRIC[model.config.task]
        self.scores: dict[str, float] = {}
        self.n_batches = 1
        self.faults = Faults(
            progress=progress,
            settings=settings,
            optimizer=optimizer,
            checkpointer=checkpointer,
            dist=dist,
            device=device,
            warn=self._warn,
        )

    def run(self) -> str:
        """Train; returns why it stopped: "max_steps", "epochs", "time_budget",
        "early_stopping" or "interrupted".

        Raises:
            TrainError: too little data for one batch per process.
            TrainingFailed: an exception, or a fault that kept repeating, stopped the run;
                `last/` holds the last consistent state that could be saved.
        """
        s, p = self.settings, self.progress
        # Throughput and the ETA count the steps of this invocation only (not a resumed run's).
        self._start = (time.monotonic(), p.elapsed, p.step)
        self.log_meter, self.val_meter = _Meter(self.device), _Meter(self.device)
        batches = self._epoch_batches()
        if not batches:
            raise TrainError(
                f"no training batch for {self.dist.world} process(es): too little data"
            )
        self.steps_per_epoch = math.ceil(len(batches) / s.accum)
        try:
            return self._run(batches)
        except StopRun as e:  # a stop the run chose: no traceback to keep
            raise self.faults.failure(e) from None
        except Exception as e:
            raise self.faults.failure(e) from e

    def _run(self, batches: list[list[int]]) -> str:
        s, p = self.settings, self.progress
        # A resumed run whose validation at this step failed: validate it now.
        redo = p.step and p.step % s.val_every == 0 and p.validated_step != p.step
        if redo and self._validate_and_save():
            return "early_stopping"
        stopped = self._stop_reason(self.epoch_float())
        while stopped is None:
            if p.position >= len(batches):  # the next epoch
                p.epoch, p.position = p.epoch + 1, 0
                batches = self._epoch_batches()
            group = batches[p.position : p.position + s.accum]
            self.model.train()
            # Forward, backward, update (in pieces if out of memory); None: skipped.
            tokens = self.faults.step(group, self._update)
            p.position += len(group)
            if tokens is not None:
                p.step += 1
                self._log(*tokens)
                if p.step % s.val_every == 0 and self._validate_and_save():
                    return "early_stopping"
            stopped = self._stop_reason(self.epoch_float())
        # The end: Ctrl-C saves last/ alone; any other stop validates the final weights.
        if stopped == "interrupted":
            self._save_last()
        else:
            if p.validated_step != p.step:
                self._validate_and_save()
            if self.settings.average_last and self.dist.main:
                with self.faults.doing("averaging"):
                    average_last(
                        self.settings.average_last,
                        self.model,
                        self.validator,
                        self.checkpointer,
                        self.metric,
                        self.emit,
                    )
        self.dist.barrier()
        return stopped

    def _update(self, group: list[list[int]]) -> tuple[int, int] | None:
        """Forward and backward over the batches of `group`, then the optimizer update unless
        the loss or the gradients are not finite (then None, and the step is skipped)."""
        # A draw per batch of the run (subword sampling): the same on a resumed run.
        first = self.progress.step * self.settings.accum
        batches = [
            self.train.batch(index, self.model.config, self.device, draw=first + i)
            for i, index in enumerate(group)
        ]
        n_src = sum(b.n_src for b in batches)
        n_tgt = sum(b.n_tgt for b in batches)
        scaler = self.precision.scaler
        total = torch.zeros((), device=self.device)
        for i, (src, tgt_in, target, _, _) in enumerate(batches):
            no_sync = self.dist.enabled and i < len(batches) - 1  # all-reduce once, at the end
            with self.objective.no_sync() if no_sync else contextlib.nullcontext():
                with self.precision.autocast():
                    loss = self.objective(src, tgt_in, target)
                scaled = loss / n_tgt
                (scaler.scale(scaled) if scaler else scaled).backward()
            total += loss.detach()
        set_lr(self.optimizer, self._lr_at(self.progress.step + 1))
        if scaler is not None:
            scaler.unscale_(self.optimizer)
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), CLIP_NORM)
        if not self.faults.finite(total, norm, scaler):
            self.optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.update()
            self.faults.skipped_nonfinite()
            return None
        self.faults.in_update = True  # from here until the end the weights are half-updated
        if scaler is not None:
            scaler.step(self.optimizer)
            scaler.update()
        else:
            self.optimizer.step()
        self.checkpointer.average.update()
        self.faults.in_update = False
        self.optimizer.zero_grad(set_to_none=True)
        for meter in (self.log_meter, self.val_meter):
            meter.loss += total
        return n_src, n_tgt

    def _warn(self, message: str) -> None:
        if self.dist.main:
            self.emit({"event": "warning", "message": message})

    def _save_last(self) -> None:
        """`last/` now, with every rank's random generators (all ranks call this)."""
        rngs = self.dist.gather(rng_state())
        if self.dist.main:
            with self.faults.doing("saving"):
                self.checkpointer.save_last(rngs)

    def _log(self, n_src: int, n_tgt: int) -> None:
        """A progress event every step; the training loss and throughput every LOG_EVERY."""
        p = self.progress
        for meter in (self.log_meter, self.val_meter):
            meter.src_tokens += n_src
            meter.tgt_tokens += n_tgt
        started, elapsed_before, steps_before = self._start
        now = time.monotonic()
        p.elapsed = elapsed_before + now - started
        rate = (now - started) / (p.step - steps_before)
        progress = {
            "event": "progress",
            "step": p.step,
            "epoch": self.epoch_float(),
            "lr": self.lr,
            "elapsed": p.elapsed,
            "eta": self._eta(rate),
        }
        self.emit(progress)
        if p.step % LOG_EVERY == 0:
            m = self.log_meter
            if self.dist.main:
                seconds = (now - m.since) / self.dist.world
                loss = m.loss.item() / max(1, m.tgt_tokens)
                self.emit(
                    {
                        **progress,
                        "event": "log",
                        "loss": loss,
                        "src_tokens_per_s": m.src_tokens / seconds,
                        "tgt_tokens_per_s": m.tgt_tokens / seconds,
                    }
                )
            m.reset()

    def _validate_and_save(self) -> bool:
        """Validate on rank 0, log it, keep best and last; returns whether to stop early
        (on every rank)."""
        p = self.progress
        rngs = self.dist.gather(rng_state())  # validation draws nothing at random
        stop = False
        if self.dist.main:
            self.emit({"event": "stage", "message": f"validating at step {p.step}"})
            with self.faults.doing("validating"), self.checkpointer.average.applied():
                self.scores = scores = self.validator.scores(self.model)
            # Marked once it succeeded: a run resumed after a failed validation redoes it.
            p.validated_step = p.step
            improved = self.stopping.update(scores[self.metric], p.step)
            train_loss = self.val_meter.mean_loss()
            self.val_meter.reset()
            record = {
                "step": p.step,
                "epoch": round(self.epoch_float(), 4),
                "time": round(p.elapsed, 2),
                "train_loss": None if train_loss is None else round(train_loss, 4),
                **{k: round(v, 4) for k, v in scores.items()},
                "lr": self.lr,
            }
            self.metrics.append(record)
            with self.faults.doing("saving"):
                self.checkpointer.save_validation(improved, p.step, rngs)
            best = {"best_value": self.stopping.best_value, "best_step": self.stopping.best_step}
            value = scores[self.metric]
            self.emit(
                {"event": "validation", **record, "metric": self.metric, "value": value,
                 "best": improved, **best}
            )  # fmt: skip
            stop = self.stopping.should_stop
        else:
            p.validated_step = p.step
        return self.dist.from_main(stop, self.device)

    def _stop_reason(self, epoch: float) -> str | None:
        """Why to stop now, if so; also writes `last/` when `save_every` is due."""
        s, p = self.settings, self.progress
        if s.max_steps is not None and p.step >= s.max_steps:
            return "max_steps"
        if s.epochs is not None and epoch >= s.epochs:
            return "epochs"
        # Ctrl-C and the clock differ between ranks: agree on them at fixed steps only.
        if self.dist.enabled and p.step % STOP_SYNC_EVERY:
            return None
        out_of_time = s.time_budget is not None and p.elapsed >= s.time_budget
        since_save = time.monotonic() - self.checkpointer.last_saved_at
        save_due = bool(s.save_every) and since_save >= s.save_every
        interrupted, out_of_time, save_due = self.dist.any(
            [self.stop_requested(), out_of_time, save_due], self.device
        )
        if interrupted:
            return "interrupted"
        if out_of_time:
            return "time_budget"
        if save_due:
            self._save_last()
        return None

    def _eta(self, seconds_per_step: float) -> float | None:
        s, p = self.settings, self.progress
        left = []
        if s.max_steps is not None:
            left.append((s.max_steps - p.step) * seconds_per_step)
        if s.epochs is not None:
            left.append((s.epochs - self.epoch_float()) * self.steps_per_epoch * seconds_per_step)
        if s.time_budget is not None:
            left.append(s.time_budget - p.elapsed)
        return max(0.0, min(left)) if left else None

    def _epoch_batches(self) -> list[list[int]]:
        s, p, d = self.settings, self.progress, self.dist
        batches = epoch_batches(
            self.train.lengths, s.batch_tokens, s.seed, p.epoch, d.rank, d.world
        )
        self.n_batches = len(batches)
        return batches

    def epoch_float(self) -> float:
        """Epochs done, with the fraction of the current one."""
        p = self.progress
        return p.epoch + min(1.0, p.position / max(1, self.n_batches))

    @property
    def lr(self) -> float:
        """The learning rate of the last update."""
        return self._lr_at(max(1, self.progress.step))

    def _lr_at(self, step: int) -> float:
        s, p = self.settings, self.progress
        done = run_fraction(s, p.step, self.epoch_float(), p.elapsed)
        return lr_at(step, s.lr, s.warmup, s.decay, done)
