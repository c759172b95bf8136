"""`train()`: the entry point of training. It wires the parts together, one module each:

settings (TrainSettings, defaults) -> model_dir (--resume/--overwrite rules) and finetune
(--init) -> preflight (metrics) -> prepare (data, tokenizer, model config, encoding) ->
preflight (device, validation, disk) -> loop (Trainer: the steps; faults: what a fault does)
with optimizer, schedule, objective, precision and distributed -> validation and
early_stopping -> checkpointer (best, last/, step checkpoints; state.py writes last/) and
metrics_log (metrics.jsonl, training.png).

It reports progress through an `on_event(dict)` callback (the CLI renders it) and never prints.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from attn.model.evaluation.metrics import PRIMARY_METRIC
from attn.model.nn.model import Classifier, build_model
from attn.model.nn.transformer import count_parameters
from attn.model.storage.layout import PLOT, SHORTLIST
from attn.model.training.checkpointer import Checkpointer
from attn.model.training.corpus import SubwordSampling
from attn.model.training.defaults import Chosen, choose_defaults
from attn.model.training.distributed import Dist, start_distributed
from attn.model.training.early_stopping import EarlyStopping
from attn.model.training.ema import weight_average
from attn.model.training.faults import TrainingFailed, write_log
from attn.model.training.finetune import InitModel
from attn.model.training.loop import Progress, Trainer
from attn.model.training.metrics_log import MetricsLog, read_metrics, write_plot
from attn.model.training.model_dir import SavedRun, check_model_dir
from attn.model.training.objective import Objective
from attn.model.training.optimizer import build_optimizer
from attn.model.training.precision import Precision, model_width
from attn.model.training.preflight import check_device, check_metrics, check_run
from attn.model.training.prepare import Preparation, Prepared, task_files, write_shortlist
from attn.model.training.schedule import lr_at
from attn.model.training.settings import (
    DATA_DEFAULTS,
    DEMO_DEFAULTS,
    TrainError,
    TrainSettings,
    resolve_settings,
)
from attn.model.training.validation import Validator

Event = dict[str, Any]

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """How a training run ended.

    stopped: "max_steps", "epochs", "time_budget", "early_stopping" or "interrupted".
    metric: the task's primary metric; best_value/best_step: its best validation score.
    example: a validation input, for the "try it" hint.
    oom_split, oom_skipped: steps whose batch ran out of memory and was trained in pieces,
    or skipped; nonfinite_skipped: updates skipped for a non-finite loss or gradient.
    """

    model_dir: Path
    task: str
    step: int
    epoch: float
    elapsed: float
    stopped: str
    metric: str
    best_value: float | None
    best_step: int | None
    scores: dict[str, float]
    example: str | None
    oom_split: int = 0
    oom_skipped: int = 0
    nonfinite_skipped: int = 0


def train(
    task: str,
    model_dir: str | Path,
    options: Mapping[str, Any] | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    device: str = "auto",
    threads: int | None = None,
    on_event: Callable[[Event], None] | None = None,
    stop_requested: Callable[[], bool] | None = None,
    prepare_only: bool = False,
) -> TrainResult | None:
    """Train a model for `task` into `model_dir`.

    Args:
        task: "translate", "summarize" or "sentiment".
        model_dir: where the model goes (created); see `attn.model.storage.checkpoint`.
        options: the settings the user gave (keys of `TrainSettings`); the rest come from
            the saved run (resume) or the defaults.
        resume: continue the run in `model_dir` from `last/`, exactly where it stopped.
        overwrite: replace a model already in `model_dir`.
        device: "auto", "cpu", "cuda" or "mps".
        threads: set torch's (process-wide) intra-op thread count to this; None leaves it
            as it is. Other process settings are the application's (the CLI applies
            `attn.model.device.apply_process_settings`).
        on_event: receives progress events (dicts with an "event" key), on rank 0 only.
        stop_requested: polled between steps; when it returns True, training saves a
            resumable checkpoint and returns with `stopped == "interrupted"`.
        prepare_only: prepare the data into `model_dir/prepared` (and its tokenizer) and
            return None, without training: a later run in `model_dir` maps it.

    Raises:
        TrainError: bad settings, or a model directory that holds a model (without
            resume/overwrite) or nothing to resume.
        attn.data.DataError: unreadable data or no examples.
        attn.model.storage.checkpoint.ModelError: a damaged checkpoint on resume.
        TrainingFailed: a fault stopped the run after training began; `last/` holds the
            state it names, `log` the file with the traceback.
    """
    from attn.model.device import resolve_device

    if threads is not None:
        torch.set_num_threads(threads)
    dist = start_distributed(device)
    try:
        target = resolve_device(device)
        if dist.enabled and target.type == "cuda":
            target = torch.device("cuda", dist.local_rank)
        run = _Run(
            task,
            Path(model_dir),
            dist,
            target,
            (on_event if dist.main else None) or (lambda event: None),
            stop_requested or (lambda: False),
        )
        return run.execute(
            dict(options or {}), resume=resume, overwrite=overwrite, prepare_only=prepare_only
        )
    except TrainingFailed as e:
        if e.__cause__ is not None:
            e.log = write_log(Path(model_dir), e.__cause__)
        raise
    finally:
        dist.close()


class _Run:
    """One call of `train()`: checks the directory and settings, prepares, builds the parts,
    starts (fresh or resumed), runs the Trainer and reports the result."""

    def __init__(
        self,
        task: str,
        model_dir: Path,
        dist: Dist,
        device: torch.device,
        emit: Callable[[Event], None],
        stop_requested: Callable[[], bool],
    ) -> None:
        self.task, self.dir, self.dist, self.device = task, model_dir, dist, device
        self.emit, self.stop_requested = emit, stop_requested

    def execute(
        self, options: dict[str, Any], *, resume: bool, overwrite: bool, prepare_only: bool
    ) -> TrainResult | None:
        saved = check_model_dir(self.dir, self.task, resume=resume, overwrite=overwrite)
        # The model a new run starts from (--init); a resumed run has its own weights.
        init = None
        if saved is None and options.get("init") is not None:
            init = InitModel.check(Path(options["init"]), self.dir, self.task)
        chosen = self._choose_defaults(options) if saved is None and init is None else None
        settings = resolve_settings(
            options,
            saved.meta.get("train") if saved else None,
            self.task,
            init.meta.get("train") if init else None,
            chosen.values if chosen else None,
        )
        # What config.json says was chosen (kept when resumed).
        self.defaults = chosen.to_dict() if chosen else None
        if saved is not None:
            self.defaults = saved.meta.get("defaults")
        # Before minutes of reading and tokenizer training (a machine that only prepares
        # the data need not train or validate): the metrics, the device and its precision.
        if not prepare_only:
            check_metrics(self.task)
            check_device(self.device)
            width = model_width(self.task, settings)
            precision = Precision(self.device, settings.precision, width)
        random.seed(settings.seed)
        torch.manual_seed(settings.seed)
        prepared = Preparation(
            self.task,
            self.dir,
            settings,
            self.dist,
            self.emit,
            saved_config=saved.config if saved else None,
            init=init,
        ).run()
        if prepare_only:
            return None
        trainer = self._build(settings, prepared, init, precision, fresh=saved is None)
        check_run(trainer, self.emit)
        self._start(trainer, saved)
        if self.dist.main and self.task == "translate" and not (self.dir / SHORTLIST).is_file():
            write_shortlist(self.dir, prepared)
        if chosen is not None and chosen.values:  # (after any error in the data)
            self.emit({"event": "stage", "message": chosen.line()})
        self.emit(self._start_event(trainer, prepared, resumed=saved is not None))
        stopped = trainer.run()
        return self._finish(trainer, prepared, stopped)

    def _choose_defaults(self, options: Mapping[str, Any]) -> Chosen | None:
        """The defaults for the size of the training text (real data only; None for the
        demo corpus)."""
        if options.get("data") is None and not options.get("train"):
            return None
        files = task_files(self.task, options)
        size = sum(path.stat().st_size for path in files.train)
        return choose_defaults(self.task, size, options)

    def _build(
        self,
        settings: TrainSettings,
        prepared: Prepared,
        init: InitModel | None,
        precision: Precision,
        fresh: bool,
    ) -> Trainer:
        """The model (seeded; --init: its weights; a new run's bag of n-grams: the ratios
        of its features in the training data) and every part the Trainer uses."""
        torch.manual_seed(settings.seed)
        model = build_model(prepared.config).to(self.device)
        bag = model.ngrams if isinstance(model, Classifier) else None
        if init is not None:
            init.load_weights(model, self.device)
        elif fresh and bag is not None and bag.ratios is not None:
            self.emit({"event": "stage", "message": "counting the n-grams of each class"})
            bag.fit_ratios(prepared.train.labelled(prepared.config, self.device))
        optimizer = build_optimizer(model, settings.lr)
        objective = Objective(model, settings.label_smoothing, settings.r_drop)
        objective = self.dist.wrap(objective, self.device)
        progress, stopping = Progress(), EarlyStopping(settings.patience)
        average = weight_average(model, settings.ema)
        validator = Validator(
            prepared.config,
            prepared.tokenizer,
            prepared.val,
            prepared.data.val,
            settings.batch_tokens,
            precision,
            self.device,
        )
        checkpointer = Checkpointer(
            self.dir,
            model,
            optimizer,
            precision.scaler,
            settings,
            self.dist,
            parts=(progress, stopping, average),
            stopping=stopping,
            average=average,
            config=prepared.config,
            data=prepared.data,
            metric=PRIMARY_METRIC[self.task],
            defaults=self.defaults,
        )
        train = prepared.train
        if settings.subword_alpha:
            if not hasattr(prepared.tokenizer, "resample"):
                raise TrainError(
                    "--subword-alpha needs a tokenizer attn trained (an imported model's "
                    "cannot sample segmentations)"
                )
            sampling = SubwordSampling(prepared.tokenizer, settings.subword_alpha, settings.seed)
            train = dataclasses.replace(train, sampling=sampling)
        return Trainer(
            settings=settings,
            model=model,
            objective=objective,
            optimizer=optimizer,
            precision=precision,
            train=train,
            validator=validator,
            stopping=stopping,
            checkpointer=checkpointer,
            metrics=MetricsLog(self.dir),
            progress=progress,
            dist=self.dist,
            device=self.device,
            emit=self.emit,
            stop_requested=self.stop_requested,
        )

    def _start(self, trainer: Trainer, saved: SavedRun | None) -> None:
        """Resume from `last/`, or write the first checkpoint of a new run."""
        checkpointer = trainer.checkpointer
        if saved is not None:
            checkpointer.restore(self.device)
            if self.dist.main:
                trainer.metrics.drop_after(trainer.progress.step)
                if checkpointer.data_changed(saved.meta):
                    message = "the training data changed since this run began"
                    self.emit({"event": "warning", "message": message})
                checkpointer.write_config()
        else:
            # Each rank draws its own dropout masks.
            torch.manual_seed(trainer.settings.seed + self.dist.rank)
            if self.dist.main:
                checkpointer.write_initial()
        self.dist.barrier()

    def _start_event(self, trainer: Trainer, prepared: Prepared, resumed: bool) -> Event:
        s = trainer.settings
        return {
            "event": "start",
            "task": self.task,
            "model_dir": str(self.dir),
            "device": str(self.device),
            "world_size": self.dist.world,
            "threads": torch.get_num_threads(),
            "preset": s.preset,
            "parameters": count_parameters(trainer.model),
            "vocab_size": prepared.config.vocab_size,
            "train_examples": prepared.data.counts["pairs"],
            "val_examples": len(prepared.data.val),
            "demo": s.is_demo,
            "resumed_from": trainer.progress.step if resumed else None,
            "precision": trainer.precision.name,
            "settings": s.to_dict(),
        }

    def _finish(self, trainer: Trainer, prepared: Prepared, stopped: str) -> TrainResult:
        if self.dist.main:
            try:
                write_plot(self.dir)
            except Exception as e:  # a plot must never cost the trained model
                logger.warning("could not draw %s: %s", PLOT, e)
        data = prepared.data
        example = data.val[0].src if data.val else None
        return TrainResult(
            model_dir=self.dir,
            task=self.task,
            step=trainer.progress.step,
            epoch=trainer.epoch_float(),
            elapsed=trainer.progress.elapsed,
            stopped=stopped,
            metric=trainer.metric,
            best_value=trainer.stopping.best_value,
            best_step=trainer.stopping.best_step,
            scores=trainer.scores,
            example=example,
            oom_split=trainer.progress.oom_split,
            oom_skipped=trainer.progress.oom_skipped,
            nonfinite_skipped=trainer.progress.nonfinite_skipped,
        )


__all__ = [
    "DATA_DEFAULTS",
    "DEMO_DEFAULTS",
    "TrainError",
    "TrainResult",
    "TrainSettings",
    "TrainingFailed",
    "lr_at",
    "read_metrics",
    "resolve_settings",
    "train",
    "write_plot",
]
