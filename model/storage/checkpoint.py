"""Model directories: one writer and one loader for config, tokenizer and weights.

A model directory holds `config.json`, `tokenizer.model`, `model.safetensors` (the best
weights) and, while or after training, `last/` with the latest weights and the trainer state
(every file name: `layout.py`).
Weights are safetensors only: nothing executes on load.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from attn.atomic import atomic_write
from attn.model.nn.config import ConfigError, ModelConfig, load_config, save_config
from attn.model.nn.model import Classifier, build_model
from attn.model.nn.transformer import Transformer
from attn.model.storage.layout import CONFIG, WEIGHTS, ModelDir

logger = logging.getLogger(__name__)


class ModelError(ValueError):
    """A model directory is missing, incomplete, corrupt or for another task."""


def is_untrained(meta: dict[str, Any]) -> bool:
    """Whether config.json marks the weights as never validated: `attn train` writes the
    first checkpoint before any training step, and a run that fails before its first
    validation leaves only those initial weights."""
    return bool(meta.get("untrained"))


@dataclass
class LoadedModel:
    """A model ready for inference: network (eval mode), its config and tokenizer."""

    model: Transformer | Classifier
    config: ModelConfig
    tokenizer: Any
    path: Path
    meta: dict[str, Any] = field(default_factory=dict)


def save_weights(model: torch.nn.Module, path: Path) -> None:
    """Write a model's weights as safetensors, atomically.

    Raises:
        OSError: the file cannot be written (disk full, read-only directory, ...).
    """
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}

    def write(tmp: Path) -> None:
        try:
            save_file(state, str(tmp))
        except SafetensorError as e:
            # safetensors reports a failed write (e.g. disk full) as "... (os error 28)".
            code = re.search(r"os error (\d+)", str(e))
            if code is None:
                raise OSError(f"{path}: cannot write weights ({e})") from None
            raise OSError(int(code[1]), os.strerror(int(code[1])), str(path)) from None

    atomic_write(Path(path), write)


def load_weights(model: torch.nn.Module, path: Path, device: torch.device | str = "cpu") -> None:
    """Load safetensors weights into `model`, checking names and shapes.

    Raises:
        ModelError: missing, truncated or mismatched file.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    _check_shapes(path, {k: tuple(v.shape) for k, v in model.state_dict().items()})
    try:
        state = load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelError(f"{path}: not a readable safetensors file ({e})") from None
    model.load_state_dict(state)


class _SkipInit(TorchFunctionMode):
    """Leaves tensors as allocated where modules would initialize them at random."""

    _fills = frozenset(
        {torch.Tensor.uniform_, torch.Tensor.normal_, torch.Tensor.zero_, torch.Tensor.fill_}
    )

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in self._fills or getattr(func, "__module__", None) == "torch.nn.init":
            return args[0] if args else next(iter(kwargs.values()))
        return func(*args, **(kwargs or {}))


def _without_init() -> _SkipInit:
    """Build modules without their random initialization, for weights that are loaded next
    (or only looked at on the meta device). Saves the init itself, and on the meta device
    the import of torch._dynamo that its random fills trigger (about 1 s of start-up)."""
    return _SkipInit()


def check_weights(config: ModelConfig, path: Path) -> None:
    """Check that the weights file fits `config` before a model is built from it.

    Only the file's header is read and the model is laid out on the meta device, so a
    config.json edited to absurd (but individually valid) sizes fails here instead of
    allocating them.

    Raises:
        ModelError: missing, truncated or mismatched file.
    """
    with torch.device("meta"), _without_init():
        skeleton = build_model(config)
    _check_shapes(Path(path), {k: tuple(v.shape) for k, v in skeleton.state_dict().items()})


def _check_shapes(path: Path, expected: dict[str, tuple[int, ...]]) -> None:
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise ModelError(f"{path}: no such file")
    try:
        with safe_open(str(path), framework="pt") as f:
            names = f.keys()  # a safe_open handle is not iterable
            found = {name: tuple(f.get_slice(name).get_shape()) for name in names}
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelError(f"{path}: not a readable safetensors file ({e})") from None
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    if missing or unexpected:
        raise ModelError(
            f"{path}: weights do not match the config (missing: {missing[:3]}, "
            f"unexpected: {unexpected[:3]})"
        )
    for name, shape in found.items():
        if shape != expected[name]:
            raise ModelError(f"{path}: {name} has shape {shape}, the config needs {expected[name]}")


def save_model_config(model_dir: Path, config: ModelConfig, **extra: Any) -> None:
    save_config(config, Path(model_dir) / CONFIG, **extra)


def read_model_config(model_dir: Path) -> tuple[ModelConfig, dict[str, Any]]:
    """The config and the other config.json entries of a model directory.

    Raises:
        ModelError: the directory is missing, is not a model directory, or its config.json
            is unreadable or invalid.
    """
    if not model_dir.exists():
        raise ModelError(f"model directory {model_dir} does not exist")
    if not model_dir.is_dir():
        raise ModelError(f"{model_dir} is not a directory")
    if not (model_dir / CONFIG).is_file():
        raise ModelError(f"{model_dir} is not an attn model directory (no {CONFIG})")
    try:
        return load_config(model_dir / CONFIG)
    except ConfigError as e:
        raise ModelError(str(e)) from None


def load_tokenizer(model_dir: Path) -> Any:
    """The tokenizer of a model directory: attn's SentencePiece `Tokenizer`, or the
    `MarianTokenizer` of an imported OPUS-MT model when the directory holds its vocabulary.

    Raises:
        ModelError: a tokenizer file is missing, unreadable or corrupt.
    """
    import json

    from attn.tokenizer import MarianTokenizer, Tokenizer, TokenizerError

    layout = ModelDir(model_dir)
    try:
        if not layout.has_split_tokenizer():
            return Tokenizer.load(layout.tokenizer)
        options: Any = {}
        if layout.tokenizer_config.is_file():
            options = json.loads(layout.tokenizer_config.read_text(encoding="utf-8"))
        if not isinstance(options, dict):
            raise TokenizerError(f"{layout.tokenizer_config}: not a JSON object")
        return MarianTokenizer.load(
            layout.source_spm,
            layout.target_spm,
            layout.vocab,
            clean_up_spaces=options.get("clean_up_tokenization_spaces") is True,
        )
    except (TokenizerError, OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(str(e)) from None


def copy_tokenizer(source: Path, target: Path) -> None:
    """Copy the tokenizer files of model directory `source` into `target`, atomically each.

    Raises:
        ModelError: `source` holds no tokenizer.
    """
    from attn.atomic import atomic_write_bytes

    files = ModelDir(source).tokenizer_files()
    if not files[0].is_file():
        raise ModelError(f"{source} holds no tokenizer ({files[0].name})")
    for path in files:
        if path.is_file():
            atomic_write_bytes(Path(target) / path.name, path.read_bytes())


def tokenizer_digest(model_dir: Path) -> str:
    """The SHA-256 that identifies the tokenizer of a model directory: that of
    `tokenizer.model`, or of an OPUS-MT tokenizer's files one after the other.

    Raises:
        ModelError: the directory holds no tokenizer.
    """
    import hashlib

    files = [p for p in ModelDir(model_dir).tokenizer_files() if p.is_file()]
    if not files or files[0] != ModelDir(model_dir).tokenizer_files()[0]:
        raise ModelError(f"{model_dir} holds no tokenizer")
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def load_model(
    model_dir: str | Path,
    *,
    task: str | None = None,
    device: torch.device | str = "cpu",
    weights: str = WEIGHTS,
) -> LoadedModel:
    """Load a model directory for inference.

    Args:
        model_dir: the directory `attn train` wrote.
        task: if given, the task the caller needs; another task's model is refused.
        device: where to put the weights.
        weights: file name of the weights inside the directory.

    Raises:
        ModelError: with a one-line message saying what is wrong and how to fix it.
    """
    model_dir = Path(model_dir)
    config, meta = read_model_config(model_dir)
    if task is not None and config.task != task:
        raise ModelError(f"{model_dir} holds a {config.task} model, not a {task} model")
    tokenizer = load_tokenizer(model_dir)
    if tokenizer.vocab_size != config.vocab_size:
        raise ModelError(
            f"{model_dir}: tokenizer has {tokenizer.vocab_size} pieces but the config says "
            f"vocab_size {config.vocab_size}; the directory is inconsistent"
        )
    check_weights(config, model_dir / weights)
    with _without_init():
        model = build_model(config)
    load_weights(model, model_dir / weights)
    model.to(device).eval()
    if is_untrained(meta) and weights == WEIGHTS:
        logger.warning("%s was never validated: its outputs are from untrained weights", model_dir)
    return LoadedModel(model=model, config=config, tokenizer=tokenizer, path=model_dir, meta=meta)
