"""`attn info`: versions, devices, threads and where models live; with -m, one model."""

from __future__ import annotations

import json
import platform
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from attn.cli.common import fail
from attn.model.storage.layout import ModelDir


class Format(str, Enum):
    text = "text"
    json = "json"


def info(
    model: Annotated[
        Path | None,
        typer.Option(
            "-m", "--model", help="Describe this model directory instead of the installation."
        ),
    ] = None,
    fmt: Annotated[Format, typer.Option("--format", help="text or json.")] = Format.text,
) -> None:
    """Show attn, torch and Python versions, the devices torch sees, and the model home.

    With -m DIR: the model's task, preset and config, vocabulary, parameters, training data
    (files and SHA-256), best validation score, and labels (sentiment).

    Example: attn info -m models/en-de --format json
    """
    if model is not None:
        _model_info(model, fmt)
        return
    rows = _environment()
    if fmt is Format.json:
        typer.echo(json.dumps(dict(rows), indent=2))
        return
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        typer.echo(f"{key:<{width}}  {value}")


def _environment() -> list[tuple[str, str]]:
    import torch

    from attn import __version__
    from attn.data.home import attn_home, default_model_dir
    from attn.data.task_files import TASKS

    rows = [
        ("attn", __version__),
        ("python", platform.python_version()),
        ("torch", torch.__version__),
        ("threads", str(torch.get_num_threads())),
        ("cuda", _cuda_description(torch)),
        ("mps", "available" if _mps(torch) else "not available"),
        ("home", str(attn_home())),
    ]
    for task in TASKS:
        path = default_model_dir(task)
        state = "trained" if ModelDir(path).is_model() else "none yet"
        rows.append((f"model {task}", f"{path} ({state})"))
    return rows


def _model_info(model: Path, fmt: Format) -> None:
    from attn.model.inference.describe import describe_model
    from attn.model.storage.checkpoint import ModelError

    try:
        about = describe_model(model)
    except ModelError as e:
        fail(str(e))
    if fmt is Format.json:
        typer.echo(json.dumps(about, indent=2, ensure_ascii=False))
        return
    for key, value in _model_rows(about):
        typer.echo(f"{key:<12}  {value}")


def _model_rows(about: dict[str, Any]) -> list[tuple[str, str]]:
    """The description as (label, value) lines; a value may continue on unlabelled lines."""
    c = about["config"]
    layers = f"{c['n_encoder_layers']}+{c['n_decoder_layers']} layers"
    if about["task"] == "sentiment":
        layers = f"{c['n_encoder_layers']} encoder layers"
    rows = [
        ("model", about["path"]),
        ("task", about["task"]),
        (
            "preset",
            f"{about['preset']} (d_model {c['d_model']}, {c['n_heads']} heads, {layers}, "
            f"d_ff {c['d_ff']})",
        ),
        ("parameters", f"{about['parameters'] / 1e6:.2f}M ({about['parameters']:,})"),
        ("vocabulary", f"{about['vocab_size']} SentencePiece pieces"),
    ]
    if about["labels"] is not None:
        rows.append(("labels", ", ".join(about["labels"])))
    if about["untrained"]:
        rows.append(("trained", "no: never validated, the weights are the initial ones"))
    best = about["best"]
    if best is not None:
        rows.append(
            (
                "best",
                f"{best['metric']} {best['value']:.2f} at step {best['step']} "
                f"({about['validations']} validations)",
            )
        )
    if about["averaged"]:
        steps = ", ".join(str(s) for s in about["averaged"]["steps"])
        rows.append(("averaged", f"weights are the mean of steps {steps}"))
    imported = about.get("imported")
    if imported:
        where = imported.get("hub") or imported.get("path")
        revision = f" (revision {imported['revision']})" if imported.get("revision") else ""
        rows.append(("imported", f"{imported.get('family')} model from {where}{revision}"))
    if about["checkpoints"]:
        rows.append(("checkpoints", ", ".join(f"step {s}" for s in about["checkpoints"])))
    for record in about["evaluations"][-3:]:
        metric = about["best"]["metric"] if about["best"] else None
        score = f"{metric} {record[metric]:.2f}" if metric in record else "scores"
        rows.append(("evaluated", f"{score} on {', '.join(record.get('data', []))}"))
    data = about["data"] or {}
    for i, entry in enumerate(data.get("train", [])):
        rows.append(
            (
                "train data" if i == 0 else "",
                f"{entry['file']} ({entry['bytes']:,} bytes, sha256 {entry['sha256']})",
            )
        )
    if data.get("val_from_train"):
        rows.append(("val data", "held out from the training data"))
    for i, path in enumerate(data.get("val", [])):
        rows.append(("val data" if i == 0 else "", path))
    for i, (key, value) in enumerate(about["config"].items()):
        if isinstance(value, list):
            value = ", ".join(str(v) for v in value) or "-"
        rows.append(("config" if i == 0 else "", f"{key} = {value}"))
    return rows


def _cuda_description(torch) -> str:
    if not torch.cuda.is_available():
        return "not available"
    names = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        names.append(f"cuda:{i} {props.name} ({props.total_memory / 2**30:.1f} GiB)")
    return "; ".join(names)


def _mps(torch) -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def register(app: typer.Typer) -> None:
    app.command("info")(info)
