"""`attn average`: average the last step checkpoints of a training run into a model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from attn.cli.common import err_console, fail


def average(
    model: Annotated[
        Path,
        typer.Option("-m", "--model", help="Model directory trained with --keep-checkpoints N."),
    ],
    last: Annotated[
        int | None,
        typer.Option(
            "--last", min=1, help="Average the newest N checkpoints. Default: all that are kept."
        ),
    ] = None,
    output_dir: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output-dir",
            help="Write a new model directory instead of replacing the model's weights.",
        ),
    ] = None,
) -> None:
    """Average the weights of the last checkpoints: attn average -m DIR --last 5.

    The mean of the newest N checkpoints/step-*.safetensors (written by attn train
    --keep-checkpoints) replaces DIR/model.safetensors; the weights it held before the first
    average stay in model.before-average.safetensors. With -o OUT, DIR is left as it is and
    OUT becomes a new model directory.
    """
    from attn.model.storage.checkpoint import ModelError
    from attn.model.training.average import average_checkpoints

    try:
        result = average_checkpoints(model, last, output_dir)
    except (ModelError, OSError) as e:
        fail(str(e))
    steps = ", ".join(str(s) for s in result.steps)
    err_console.print(
        f"Averaged {len(result.steps)} checkpoints (steps {steps}) into {result.weights}"
        + (f"; the previous weights are in {result.backup}" if result.backup else ""),
        highlight=False,
        soft_wrap=True,
        markup=False,
    )


def register(app: typer.Typer) -> None:
    app.command("average")(average)
