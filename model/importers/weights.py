"""The weights of a Hugging Face model directory, read without executing anything.

`model.safetensors` is preferred; `pytorch_model.bin` is read with `torch.load(...,
weights_only=True)`, which unpickles tensors and plain containers only.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import torch
from torch import Tensor

SAFETENSORS = "model.safetensors"
PYTORCH_BIN = "pytorch_model.bin"


class UnsupportedModelError(ValueError):
    """A model directory that attn cannot import: the message names what is wrong."""


def read_json_object(path: Path) -> dict:
    """A JSON file of a model directory that must hold one object (config.json,
    tokenizer_config.json).

    Raises:
        UnsupportedModelError: it is not JSON, or not an object.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UnsupportedModelError(f"{path}: not JSON ({e})") from None
    if not isinstance(data, dict):
        raise UnsupportedModelError(f"{path}: not a JSON object")
    return data


def read_weights(directory: str | Path) -> dict[str, Tensor]:
    """The tensors of `directory`'s `model.safetensors`, else of its `pytorch_model.bin`.

    Raises:
        UnsupportedModelError: neither file, an unreadable file, or a .bin holding anything
            but a mapping of names to tensors.
    """
    directory = Path(directory)
    path = directory / SAFETENSORS
    if path.is_file():
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise UnsupportedModelError(f"{path}: not a readable safetensors file ({e})") from None
    path = directory / PYTORCH_BIN
    if not path.is_file():
        raise UnsupportedModelError(f"{directory}: no {SAFETENSORS} or {PYTORCH_BIN}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise UnsupportedModelError(
            f"{path}: holds pickled objects other than tensors; attn reads weights only"
        ) from None
    except (OSError, RuntimeError, EOFError) as e:
        raise UnsupportedModelError(f"{path}: not a readable PyTorch weights file ({e})") from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()
    ):
        raise UnsupportedModelError(
            f"{path}: holds objects other than a mapping of names to tensors"
        )
    return state
