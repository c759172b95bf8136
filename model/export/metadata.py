"""`attn_export.json`, written beside every export, and the decoding rules it carries.

It names the attn version and the model config an export came from, so that attn's runners
(`ctranslate2_run`, `onnx_run`) cut sources and cap outputs as `attn translate` does.
"""

from __future__ import annotations

import json
from pathlib import Path

from attn.model.nn.config import ModelConfig
from attn.model.storage.checkpoint import LoadedModel
from attn.model.storage.layout import ModelDir

EXPORT_INFO = "attn_export.json"


def write_export_info(loaded: LoadedModel, directory: Path, fmt: str, weights: str) -> None:
    """Write `attn_export.json`: attn's version, the format, weight type and model config.

    The source model is named by its directory's name: an export travels to other machines,
    and an absolute path would tell them how this one is laid out.
    """
    from attn import __version__

    info = {
        "attn_version": __version__,
        "format": fmt,
        "weights": weights,
        "source": ModelDir(loaded.path).name,
        "model": loaded.config.to_dict(),
    }
    (directory / EXPORT_INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


def read_export_config(directory: Path) -> ModelConfig:
    """The model config of an export.

    Raises:
        ValueError: no readable attn_export.json (not a directory `attn export` wrote).
    """
    path = Path(directory) / EXPORT_INFO
    try:
        return ModelConfig.from_dict(json.loads(path.read_text(encoding="utf-8"))["model"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{directory} is not an attn export ({path.name}: {e})") from None


def output_cap(source_ids: int, config: ModelConfig) -> int:
    """attn's cap on the output pieces (EOS not counted) of a source of `source_ids` ids (EOS
    counted): floor(a * source_ids + b) for the task's a and b, at most max_length."""
    from attn.model.inference.pipeline import Summarizer, Translator

    rule = {"translate": Translator, "summarize": Summarizer}[config.task]
    relative = int(rule.max_length_a * source_ids + rule.max_length_b)
    return max(1, min(relative, config.max_length))
