"""What a model directory holds, as plain data: the facts behind `attn info -m DIR`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from attn.model.evaluation.metrics import PRIMARY_METRIC
from attn.model.nn.config import PRESETS, ModelConfig
from attn.model.nn.model import build_model
from attn.model.nn.transformer import count_parameters
from attn.model.storage.checkpoint import is_untrained, read_model_config
from attn.model.storage.layout import ModelDir


def describe_model(model_dir: str | Path) -> dict[str, Any]:
    """A JSON-ready description of a model directory.

    Keys: path, task, attn_version, preset (e.g. "tiny" or "tiny, d_ff=1024"),
    parameters, vocab_size, labels (sentiment, else None), config (every field),
    train (the training settings), data (training files with bytes and sha256, validation
    files), best ({metric, value, step} from metrics.jsonl, or None), validations (how many),
    evaluations (the `attn evaluate` records), untrained (True when the weights were never
    validated: the initial ones of a run that stopped before its first validation), averaged
    (steps averaged into the weights, or None), imported (`attn import`: the family and the
    directory or Hub id and revision it came from, or None), checkpoints (steps kept in
    checkpoints/).

    Raises:
        ModelError: not a model directory, or an unreadable config.json.
    """
    from attn.model.training.metrics_log import read_metrics

    model_dir = Path(model_dir)
    config, meta = read_model_config(model_dir)
    train = meta.get("train") or {}
    records = read_metrics(model_dir)
    # `attn evaluate` logs its runs in the same file, marked "evaluate".
    validations = [r for r in records if not r.get("evaluate")]
    return {
        "path": str(model_dir),
        "task": config.task,
        "attn_version": meta.get("attn_version"),
        "preset": preset_of(config, meta),
        "parameters": parameter_count(config),
        "vocab_size": config.vocab_size,
        "labels": list(config.labels) if config.task == "sentiment" else None,
        "config": config.to_dict(),
        "train": train,
        "data": meta.get("data"),
        "best": _best(config.task, validations),
        "validations": len(validations),
        "untrained": is_untrained(meta),
        "evaluations": [r for r in records if r.get("evaluate")],
        "averaged": meta.get("averaged"),
        "imported": meta.get("imported"),
        "checkpoints": [step for step, _ in ModelDir(model_dir).step_checkpoints()],
    }


def preset_of(config: ModelConfig, meta: dict[str, Any]) -> str:
    """The preset of a model with config.json's other entries `meta`: `preset_name` of the
    one training started from, except for an imported model not trained here, where no
    preset made it: the family it came from is named instead of the nearest preset."""
    trained_with = (meta.get("train") or {}).get("preset")
    imported = meta.get("imported")
    if imported and trained_with is None:
        return f"none (imported {imported.get('family', 'model')})"
    return preset_name(config, trained_with)


def preset_name(config: ModelConfig, trained_with: str | None = None) -> str:
    """The preset the architecture matches, plus the fields that differ from it.

    `trained_with` (the preset training started from) is preferred; without it, the preset
    with the fewest differences is named.
    """

    def differences(name: str) -> list[str]:
        return [
            f"{key}={getattr(config, key)}"
            for key, value in PRESETS[name].items()
            if getattr(config, key) != value
        ]

    name = trained_with if trained_with in PRESETS else None
    if name is None:
        name = min(PRESETS, key=lambda n: len(differences(n)))
    diff = differences(name)
    if len(diff) == len(PRESETS[name]):
        return "custom"
    return ", ".join([name, *diff])


def parameter_count(config: ModelConfig) -> int:
    """Trainable parameters of the model `config` describes (built on the meta device, so
    nothing is allocated)."""
    with torch.device("meta"):
        return count_parameters(build_model(config))


def _best(task: str, validations: list[dict[str, Any]]) -> dict[str, Any] | None:
    metric = PRIMARY_METRIC[task]
    scored = [r for r in validations if isinstance(r.get(metric), (int, float))]
    if not scored:
        return None
    # The first of equal scores: the step training kept as model.safetensors.
    best = max(scored, key=lambda r: r[metric])
    return {"metric": metric, "value": best[metric], "step": best.get("step")}
