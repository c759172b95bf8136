"""`attn export`: write a trained model in a format other engines run (CTranslate2, ONNX)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from attn.cli.common import err_console, reported_errors


class ExportFormat(str, Enum):
    ctranslate2 = "ctranslate2"
    onnx = "onnx"


class Quantization(str, Enum):
    int8 = "int8"
    int8_float32 = "int8_float32"
    int8_float16 = "int8_float16"
    float16 = "float16"
    float32 = "float32"


def export(
    model: Annotated[
        Path, typer.Option("-m", "--model", help="The model directory to export (attn train's).")
    ],
    fmt: Annotated[
        ExportFormat,
        typer.Option(
            "--format",
            "-f",
            help="ctranslate2: a CTranslate2 model directory (translation, summarization). "
            "onnx: ONNX graphs for ONNX Runtime (encoder + decoder step, or the classifier).",
        ),
    ],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="The export directory (must not exist).")
    ],
    quantization: Annotated[
        Quantization | None,
        typer.Option(help="CTranslate2 weight type. Default: float32."),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace the output directory if it exists.")
    ] = False,
) -> None:
    r"""Export a model for deployment: attn export -m DIR --format ctranslate2 -o OUT.

    The output directory also holds attn's tokenizer.model (SentencePiece) and
    attn_export.json. Needs the export extras: pip install 'attn\[export]'.
    See docs/deploying.md for loading an export in CTranslate2 or ONNX Runtime.
    """
    with reported_errors():
        from attn.model.export import export_model

        result = export_model(
            model,
            fmt.value,
            output,
            quantization=quantization.value if quantization else None,
            overwrite=overwrite,
            progress=lambda line: err_console.print(
                line, highlight=False, markup=False, soft_wrap=True
            ),
        )
    err_console.print(
        f"Exported the {result.task} model ({result.weights}) to {result.directory}: "
        + ", ".join(result.files),
        highlight=False,
        soft_wrap=True,
        markup=False,
    )


def register(app: typer.Typer) -> None:
    app.command("export")(export)
