"""The resumable part of a model directory: `last/` with the latest weights and trainer state.

`last/` is replaced as a whole: the new weights and state are written to a staging
directory, then swapped in by two renames. A kill at any moment leaves either the old
`last/`, the new one, or (between the renames) the old one under `.last.old/`, which
`find_last` falls back to. The trainer state holds plain containers and tensors only, so it
loads with `torch.load(..., weights_only=True)`.
"""

from __future__ import annotations

import os
import pickle
import random
import shutil
from pathlib import Path
from typing import IO, Any

import torch

from attn.atomic import atomic_write
from attn.model.storage.checkpoint import ModelError, load_weights, save_weights
from attn.model.storage.layout import LAST, LAST_OLD, LAST_STAGING, WEIGHTS, ModelDir
from attn.model.storage.layout import TRAINER_STATE as STATE

# Bumped when the layout of trainer_state.pt changes incompatibly.
STATE_VERSION = 1


def rng_state() -> dict[str, Any]:
    """Every random generator training draws from: Python's and torch's (CPU, CUDA)."""
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` captured (CUDA states only where the devices still exist)."""
    random.setstate(_as_tuple(state["python"]))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def _as_tuple(value: Any) -> Any:
    # random.setstate wants tuples all the way down; a serializer may hand back lists.
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


def save_last(model_dir: Path, model: torch.nn.Module, state: dict[str, Any]) -> None:
    """Replace `model_dir/last/` with `model`'s weights and the trainer `state`."""
    model_dir = Path(model_dir)
    staging, last, old = model_dir / LAST_STAGING, model_dir / LAST, model_dir / LAST_OLD
    shutil.rmtree(staging, ignore_errors=True)
    try:
        save_weights(model, staging / WEIGHTS)
        atomic_write(
            staging / STATE, lambda tmp: _save_state({**state, "version": STATE_VERSION}, tmp)
        )
    except BaseException:
        # A disk that filled up gets its space back; `last/` was not touched.
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if last.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(last, old)
    os.replace(staging, last)
    shutil.rmtree(old, ignore_errors=True)


class _KeepWriteError:
    """A file wrapper that remembers the OSError of a failed write."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file = file
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self.file.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        self.file.flush()


def _save_state(state: dict[str, Any], path: Path) -> None:
    """torch.save, raising the OSError (e.g. disk full) that torch reports as a RuntimeError."""
    with open(path, "wb") as f:
        out = _KeepWriteError(f)
        try:
            torch.save(state, out)
        except RuntimeError:
            if out.error is not None:
                raise OSError(out.error.errno, out.error.strerror, str(path)) from None
            raise


def find_last(model_dir: Path) -> Path | None:
    """The directory holding the latest complete checkpoint, or None."""
    for candidate in ModelDir(model_dir).last_candidates():
        if (candidate / STATE).is_file() and (candidate / WEIGHTS).is_file():
            return candidate
    return None


def load_last(
    model_dir: Path, model: torch.nn.Module, device: torch.device | str = "cpu"
) -> dict[str, Any]:
    """Load the latest weights into `model` and return the trainer state.

    Raises:
        ModelError: no checkpoint to resume, or an unreadable one.
    """
    last = find_last(model_dir)
    if last is None:
        raise ModelError(
            f"nothing to resume in {model_dir}: no {LAST}/{STATE}; train without --resume"
        )
    load_weights(model, last / WEIGHTS, device)
    try:
        state = torch.load(last / STATE, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # weights_only refused an object that unpickling would have to construct (or call).
        raise ModelError(
            f"{last / STATE}: refused: it holds Python objects, not only tensors and plain "
            "values, and loading them could run code; train without --resume"
        ) from None
    except Exception as e:  # torch raises several unrelated types for a damaged file
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"{last / STATE}: not a readable trainer state ({reason})") from None
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise ModelError(f"{last / STATE}: written by an incompatible attn version")
    return state
