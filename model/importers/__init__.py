"""Importers: pretrained models of other toolkits as attn model directories.

One module per model family converts a Hugging Face model directory (its `config.json`,
weights and tokenizer files) into attn's config, weights and tokenizer files; `FAMILIES`
maps `config.json`'s `model_type` to it, and `import_model` writes the result as a normal
attn model directory. Another family (BART, T5, ...) is another entry here.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attn.model.importers.weights import UnsupportedModelError, read_json_object
from attn.model.nn.config import ModelConfig

__all__ = ["FAMILIES", "Converted", "UnsupportedModelError", "import_model"]


@dataclass
class Converted:
    """A model family's directory in attn's terms: the config, the weights by attn's names,
    the tokenizer files by their names in the model directory, and config.json's extra
    entries (e.g. `languages`)."""

    config: ModelConfig
    state: dict[str, Any]
    tokenizer_files: dict[str, bytes]
    meta: dict[str, Any]


def _marian(directory: Path, hf: dict[str, Any]) -> Converted:
    from attn.model.importers.marian import marian_config, marian_state_dict, read_weights
    from attn.model.importers.marian_tokenizer import marian_tokenizer_files

    config = marian_config(hf)
    files = marian_tokenizer_files(directory, config)
    state = marian_state_dict(read_weights(directory), config)
    options = json.loads(files["tokenizer_config.json"])
    languages = {
        side: options[key]
        for side, key in (("src", "source_lang"), ("tgt", "target_lang"))
        if isinstance(options.get(key), str)
    }
    return Converted(config, state, files, {"languages": languages} if languages else {})


# config.json's model_type -> the converter of that family.
FAMILIES: dict[str, Callable[[Path, dict[str, Any]], Converted]] = {"marian": _marian}


def read_family(directory: Path) -> tuple[str, dict[str, Any]]:
    """The `model_type` of a Hugging Face model directory and its config.json.

    Raises:
        UnsupportedModelError: no readable config.json, or a family attn cannot import.
    """
    path = directory / "config.json"
    if not path.is_file():
        raise UnsupportedModelError(
            f"{directory} is not a Hugging Face model directory (no config.json)"
        )
    hf = read_json_object(path)
    family = hf.get("model_type")
    if family not in FAMILIES:
        raise UnsupportedModelError(
            f"{path}: model_type {family!r} is not supported; attn imports "
            f"{', '.join(sorted(FAMILIES))} (OPUS-MT) models"
        )
    return family, hf


def import_model(source: str, output: Path, *, overwrite: bool = False) -> dict[str, Any]:
    """Import `source` (a Hugging Face model directory or a Hub id) into the attn model
    directory `output`: config.json (with `imported`: the family and where it came from),
    model.safetensors and the tokenizer files. Written into a temporary directory beside
    `output` and renamed at the end: on any failure nothing appears at `output`.

    Returns:
        config.json's `imported` entry.

    Raises:
        UnsupportedModelError: a source attn cannot import (the message says why), or
            `output` exists and `overwrite` is not set.
        OSError: the output cannot be written.
    """
    from attn.model.importers.hub import resolve_source

    output = Path(output)
    if output.exists() and not overwrite and not _empty_dir(output):
        raise UnsupportedModelError(f"{output} already exists; choose another -o or --overwrite")
    if output.exists() and not output.is_dir():
        raise UnsupportedModelError(f"{output} is a file, not a model directory")
    directory, origin = resolve_source(source)
    family, hf = read_family(directory)
    converted = FAMILIES[family](directory, hf)
    imported = {"family": family, **origin}
    output.parent.mkdir(parents=True, exist_ok=True)
    # mkdir, not mkdtemp: the directory gets the umask's mode, as any model directory.
    staging = output.parent / f".{output.name}.{uuid.uuid4().hex[:12]}.partial"
    staging.mkdir()
    try:
        _write(staging, converted, imported)
        _replace(staging, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return imported


def _write(directory: Path, converted: Converted, imported: dict[str, Any]) -> None:
    """The model directory's files; config.json last."""
    from attn.model.nn.model import build_model
    from attn.model.storage.checkpoint import save_model_config, save_weights
    from attn.model.storage.layout import ModelDir

    model = build_model(converted.config)
    try:
        model.load_state_dict(converted.state)
    except RuntimeError as e:
        raise UnsupportedModelError(f"the weights do not fit attn's network: {e}") from None
    save_weights(model, ModelDir(directory).weights)
    for name, data in converted.tokenizer_files.items():
        (directory / name).write_bytes(data)
    save_model_config(directory, converted.config, imported=imported, **converted.meta)


def _replace(staging: Path, output: Path) -> None:
    """Rename `staging` to `output`; an old `output` is moved aside first, removed after."""
    old = None
    if output.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{output.name}.old.", dir=output.parent))
        output.rename(old / output.name)
    staging.rename(output)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _empty_dir(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())
