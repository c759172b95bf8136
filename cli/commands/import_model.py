"""`attn import`: a pretrained OPUS-MT (Marian) model as an attn model directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from attn.cli.common import err_console, fail


def import_command(
    source: Annotated[
        str,
        typer.Argument(
            help="A Hugging Face model directory (Helsinki-NLP/opus-mt-* layout), or a Hub id "
            "such as Helsinki-NLP/opus-mt-en-de (needs: pip install 'attn[hub]')."
        ),
    ],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="The attn model directory to write.")
    ],
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a model already at -o.")
    ] = False,
) -> None:
    """Import a pretrained model: attn import Helsinki-NLP/opus-mt-en-de -o models/en-de.

    Writes a normal attn model directory (config.json, model.safetensors and the model's
    tokenizer) that attn translate, attention, serve, export, evaluate and train --init use
    like any other. Hub ids are downloaded into huggingface_hub's cache (HF_HUB_CACHE;
    HF_HUB_OFFLINE=1 uses the cache only). Nothing appears at -o when the import fails.
    """
    from attn.model.importers import UnsupportedModelError, import_model

    try:
        imported = import_model(source, output, overwrite=overwrite)
    except (UnsupportedModelError, OSError) as e:
        fail(str(e))
    where = imported.get("hub") or imported.get("path")
    err_console.print(
        f"Imported the {imported['family']} model {where} into {output}",
        highlight=False,
        soft_wrap=True,
        markup=False,
    )


def register(app: typer.Typer) -> None:
    app.command("import")(import_command)
