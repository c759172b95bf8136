"""Checkpoint averaging: keep the weights of the last validations, average them into a model.

Averaging the weights of the last few checkpoints of a run (as in "Attention Is All You
Need", which averaged the last 5 or 20) usually scores a little better than any single one
of them, at no cost at inference. Training with `keep_checkpoints=N` writes
`checkpoints/step-000500.safetensors` at every validation and keeps the newest N;
`average_checkpoints` averages the newest of those into a model directory, and
`average_last` (`--average-last N`) validates their average at the end of a run.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from attn.model.nn.model import build_model
from attn.model.storage.checkpoint import (
    ModelError,
    read_model_config,
    save_model_config,
    save_weights,
)
from attn.model.storage.layout import CONFIG, ModelDir

if TYPE_CHECKING:  # (the checkpointer imports this module)
    from attn.model.training.checkpointer import Checkpointer
    from attn.model.training.validation import Validator


@dataclass
class AverageResult:
    """What `average_checkpoints` wrote: the weights file, the steps averaged, the backup."""

    weights: Path
    steps: list[int]
    backup: Path | None


def save_step_checkpoint(model_dir: Path, model: torch.nn.Module, step: int, keep: int) -> Path:
    """Write `model`'s weights as the checkpoint of `step` (atomically), then delete all but
    the newest `keep` step checkpoints.

    A checkpoint of a later step than `step` (left by a run killed after writing it and
    then resumed from an earlier `last/`) is deleted first: it belongs to the abandoned run.
    """
    layout = ModelDir(model_dir)
    for old_step, path in layout.step_checkpoints():
        if old_step > step:
            path.unlink(missing_ok=True)
    path = layout.step_checkpoint(step)
    save_weights(model, path)
    for _, old in layout.step_checkpoints()[:-keep]:
        old.unlink(missing_ok=True)
    return path


def average_state(paths: list[Path]) -> dict[str, torch.Tensor]:
    """The element-wise mean of safetensors weight files, computed in float32.

    Floating-point tensors are averaged and cast back to their stored dtype; any other
    tensor must be equal in every file and is taken as it is.

    Raises:
        ModelError: no files, an unreadable file, or files with different tensors.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not paths:
        raise ModelError("no checkpoints to average")
    total: dict[str, torch.Tensor] = {}
    dtypes: dict[str, torch.dtype] = {}
    for i, path in enumerate(paths):
        try:
            state = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise ModelError(f"{path}: not a readable safetensors file ({e})") from None
        if i == 0:
            dtypes = {name: t.dtype for name, t in state.items()}
            total = {
                name: t.float() if t.is_floating_point() else t.clone() for name, t in state.items()
            }
            continue
        if set(state) != set(total):
            raise ModelError(f"{path} holds other tensors than {paths[0]}; cannot average them")
        for name, tensor in state.items():
            if tensor.shape != total[name].shape:
                raise ModelError(
                    f"{path}: {name} has shape {tuple(tensor.shape)}, {paths[0]} has "
                    f"{tuple(total[name].shape)}"
                )
            if tensor.is_floating_point():
                total[name] += tensor.float()
            elif not torch.equal(tensor, total[name]):
                raise ModelError(f"{path}: {name} differs from {paths[0]} and is not a float")
    n = len(paths)
    return {
        name: (t / n).to(dtypes[name]) if t.is_floating_point() else t for name, t in total.items()
    }


def average_checkpoints(
    model_dir: str | Path, last: int | None = None, output_dir: str | Path | None = None
) -> AverageResult:
    """Average the newest `last` step checkpoints of `model_dir` into a model.

    Args:
        model_dir: a model directory trained with `keep_checkpoints`.
        last: how many of the newest checkpoints to average; None = all that are kept.
        output_dir: write a new model directory there (config.json, tokenizer.model and the
            averaged model.safetensors). None: replace `model_dir/model.safetensors`; the
            weights it held before the first average are kept as `model.before-average.safetensors`.

    Raises:
        ModelError: not a model directory, too few checkpoints, or checkpoints that do not
            match the model's config.
    """
    model_dir = Path(model_dir)
    layout = ModelDir(model_dir)
    config, meta = read_model_config(model_dir)
    found = layout.step_checkpoints()
    if last is not None and last < 1:
        raise ModelError(f"--last must be at least 1, got {last}")
    if not found or (last is not None and len(found) < last):
        raise ModelError(
            f"{layout.checkpoints} holds {len(found)} step checkpoint(s), "
            f"{'need ' + str(last) if last else 'need at least one'}; train with "
            f"--keep-checkpoints N to keep them"
        )
    chosen = found[-last:] if last is not None else found
    state = average_state([path for _, path in chosen])
    # Loading into the model the config describes checks names and shapes before writing.
    model = build_model(config)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ModelError(f"the checkpoints do not match {model_dir / CONFIG}: {e}") from None
    steps = [step for step, _ in chosen]
    meta = {**meta, "averaged": {"steps": steps, "from": model_dir.resolve().name}}
    meta.pop("format_version", None)
    meta.pop("attn_version", None)
    meta.pop("untrained", None)  # the steps averaged were validated
    backup = None
    if output_dir is None:
        target = model_dir
        backup = layout.backup
        if not backup.exists():
            shutil.copy2(layout.weights, backup)
    else:
        target = Path(output_dir)
        if target.resolve() == model_dir.resolve():
            raise ModelError("the output directory is the model directory; leave it out instead")
        out = ModelDir(target)
        if out.config.exists():
            raise ModelError(f"{target} already holds a model; choose another output directory")
        target.mkdir(parents=True, exist_ok=True)
        for path in layout.tokenizer_files():  # one SentencePiece model, or an OPUS-MT's files
            if path.is_file():
                shutil.copy2(path, target / path.name)
        if layout.shortlist.is_file():  # a translation model's; see model.shortlist
            shutil.copy2(layout.shortlist, out.shortlist)
    save_weights(model, ModelDir(target).weights)
    # config.json last: the directory points at complete files whenever it is a model.
    save_model_config(target, config, **meta)
    return AverageResult(ModelDir(target).weights, steps, backup)


def average_last(
    n: int,
    model: torch.nn.Module,
    validator: Validator,
    checkpointer: Checkpointer,
    metric: str,
    emit: Callable[[dict[str, Any]], None],
) -> None:
    """`--average-last N` at the end of a run: validate the average of the last `n` step
    checkpoints in `model`, and keep it as the best weights (`checkpointer.save_average`)
    when it scores better than the best validation; `model` gets its own weights back."""
    found = ModelDir(checkpointer.dir).step_checkpoints()[-n:]
    if len(found) < 2:
        return
    steps = [step for step, _ in found]
    emit({"event": "stage", "message": f"validating the average of steps {steps}"})
    average = average_state([path for _, path in found])
    own = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(average)
    try:
        value = validator.scores(model)[metric]
        best = checkpointer.stopping.best_value
        kept = best is None or value > best
        if kept:
            checkpointer.save_average(steps, value)
    finally:
        model.load_state_dict(own)
    if best is None:
        outcome = "kept as the model"
    elif kept:
        outcome = f"better than {best:.2f}: kept as the model"
    else:
        outcome = f"best stays {best:.2f}"
    emit(
        {
            "event": "stage",
            "message": f"average of steps {steps[0]}-{steps[-1]} ({len(steps)} checkpoints): "
            f"{metric} {value:.2f}, {outcome}",
        }
    )
