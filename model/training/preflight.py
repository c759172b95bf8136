"""Pre-flight: check, before the first step, everything a run needs later, so that a missing
library, a broken device or a full disk costs seconds, not the hours of training before the
first validation or checkpoint.

`check_metrics` and `check_device` run before the data is read (they need nothing but the
task and the device); `check_run` runs once the model and the data are ready, before the
first checkpoint is written: one example forward and backward through the model on the
device, a validation of two examples (the metrics' code path end to end), and a writable
model directory with room for the checkpoints.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from attn.model.evaluation.metrics import task_scores
from attn.model.training.faults import one_line
from attn.model.training.objective import Objective
from attn.model.training.settings import TrainError

if TYPE_CHECKING:
    from attn.model.training.loop import Trainer

# The pip package of each metric module a task imports, for the hint of a failed import.
_PACKAGES = {"sacrebleu": "sacrebleu", "rouge_score": "rouge-score"}
# A checkpoint is the best weights plus last/ (weights and the optimizer's two moments):
# about this many times the weights' size. Free space under DISK_MARGIN checkpoints warns.
_CHECKPOINT_COPIES = 4
DISK_MARGIN = 3
# Validation examples the pre-flight validation decodes.
_VAL_EXAMPLES = 2


def check_metrics(task: str) -> None:
    """Compute the task's validation metrics on a made-up pair (imports their libraries).

    Raises:
        TrainError: a metric cannot be computed, e.g. its library is not installed.
    """
    try:
        task_scores(task, ["a small test"], ["a small test"])
    except Exception as e:
        raise TrainError(f"cannot compute the validation metrics of {task}: {_hint(e)}") from None


def check_device(device: torch.device) -> None:
    """A small layer forward and backward on `device`, waited for (a broken driver or a
    device without memory fails here, not after the data is prepared).

    Raises:
        TrainError: the device cannot run it.
    """
    try:
        with torch.random.fork_rng(devices=_forked(device)):
            layer = torch.nn.Linear(8, 8).to(device)
            layer(torch.ones(2, 8, device=device)).sum().backward()
            float(layer.bias.grad.sum())  # waits for the device
    except Exception as e:
        raise TrainError(f"cannot train on {device}: {_hint(e)}") from None


def check_run(trainer: Trainer, emit: Callable[[dict[str, Any]], None]) -> None:
    """The device trains, validation runs, the model directory takes the checkpoints.

    Draws nothing from the run's random generators and leaves the weights, the optimizer
    and the gradients as they were, so a resumed run stays exact.

    Raises:
        TrainError: the device cannot train the model, validation fails, or the model
            directory cannot be written.
    """
    model, device = trainer.model, trainer.device
    with torch.random.fork_rng(devices=_forked(device)):
        try:
            _forward_backward(trainer)
        except Exception as e:
            raise TrainError(f"cannot train on {device}: {_hint(e)}") from None
        finally:
            model.zero_grad(set_to_none=True)
        try:
            trainer.validator.scores(model, limit=_VAL_EXAMPLES)
        except Exception as e:
            raise TrainError(f"validation fails before training: {_hint(e)}") from None
    check_disk(trainer.checkpointer.dir, model, emit)


def _forward_backward(trainer: Trainer) -> None:
    """One training example forward and backward (without dropout: no random draws)."""
    model = trainer.model
    batch = trainer.train.batch([0], model.config, trainer.device)
    model.eval()
    try:
        with trainer.precision.autocast():
            settings = trainer.settings
            loss = Objective(model, settings.label_smoothing, settings.r_drop)(*batch[:3])
        loss.backward()
        if not torch.isfinite(loss):
            raise ValueError(f"the loss of an untrained model is {loss.item()}")
    finally:
        model.train()


def check_disk(model_dir: Path, model: torch.nn.Module, emit: Callable[[dict[str, Any]], None]):
    """Write and remove a file in `model_dir`; warn when its disk has room for fewer than
    DISK_MARGIN checkpoints.

    Raises:
        TrainError: the directory cannot be written.
    """
    probe = model_dir / f".write-test-{uuid.uuid4().hex}"
    try:
        probe.write_bytes(b"attn")
        probe.unlink()
    except OSError as e:
        raise TrainError(f"cannot write to {model_dir}: {e.strerror or e}") from None
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    checkpoint = _CHECKPOINT_COPIES * weights
    free = shutil.disk_usage(model_dir).free
    if free < DISK_MARGIN * checkpoint:
        emit(
            {
                "event": "warning",
                "message": f"only {free / 1e6:,.0f} MB free in {model_dir}, where a checkpoint "
                f"takes about {checkpoint / 1e6:,.0f} MB: saving may fail",
            }
        )


def _forked(device: torch.device) -> list[torch.device]:
    """The devices whose random generators `torch.random.fork_rng` saves and restores (the
    CPU's always)."""
    return [device] if device.type == "cuda" else []


def _hint(error: Exception) -> str:
    """`error` on one line, with the pip package to install for a missing module."""
    if isinstance(error, ImportError) and error.name:
        package = _PACKAGES.get(error.name.partition(".")[0], error.name)
        return f"{error} (pip install {package})"
    return one_line(error)
