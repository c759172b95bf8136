"""Export a trained model to the engines people deploy with: CTranslate2 and ONNX Runtime.

    from attn.model.export import export_model
    export_model("models/en-de", "ctranslate2", "models/en-de-ct2", quantization="int8")

The engines are optional dependencies (`pip install 'attn[export]'`); `export_model` says
which package is missing. Each export is written into a temp directory that is renamed into
place at the end (`staging`), and carries attn's `tokenizer.model` and `attn_export.json`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from attn.model.export.staging import ExportError, check_destination, staged_directory

FORMATS = ("ctranslate2", "onnx")
# The packages each format needs: (module, pip name).
REQUIREMENTS = {
    "ctranslate2": (("ctranslate2", "ctranslate2"),),
    "onnx": (("onnx", "onnx"), ("onnxscript", "onnxscript"), ("onnxruntime", "onnxruntime")),
}

__all__ = ["FORMATS", "ExportError", "ExportResult", "export_model", "require"]


@dataclass
class ExportResult:
    """What an export wrote: the directory, its files, the task and the weight type."""

    directory: Path
    files: list[str]
    task: str
    weights: str


def require(fmt: str) -> None:
    """Check that the packages of a format are installed.

    Raises:
        ExportError: naming the missing package and the extra that installs it.
    """
    for module, package in REQUIREMENTS[fmt]:
        try:
            importlib.import_module(module)
        except ImportError:
            raise ExportError(
                f"exporting to {fmt} needs the {package} package: pip install 'attn[export]'"
            ) from None


def export_model(
    model_dir: str | Path,
    fmt: str,
    out_dir: str | Path,
    *,
    quantization: str | None = None,
    overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
) -> ExportResult:
    """Export the model in `model_dir` to `out_dir`.

    Args:
        model_dir: a model directory `attn train` wrote.
        fmt: "ctranslate2" (translation and summarization models) or "onnx" (any task).
        out_dir: the export directory; it must not exist unless `overwrite`.
        quantization: CTranslate2 only: "int8", "int8_float32", "int8_float16", "float16"
            or "float32" (None = float32).
        overwrite: replace an existing `out_dir`.
        progress: called with a line saying what is being written, once the checks passed.

    Raises:
        ExportError: unknown format, missing package, unsupported task or option, or an
            output directory in the way.
        ModelError: `model_dir` is not a readable model directory.
        OSError: the export cannot be written (nothing is left at `out_dir` then).
    """
    from attn.model.storage.checkpoint import load_model, read_model_config

    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    config, _ = read_model_config(model_dir)
    if fmt == "ctranslate2" and config.task == "sentiment":
        raise ExportError(
            "a sentiment model cannot be exported to CTranslate2 (it runs encoder-decoder "
            "models, not classifiers); use --format onnx"
        )
    if quantization is not None and fmt != "ctranslate2":
        raise ExportError("--quantization applies to --format ctranslate2 only")
    require(fmt)
    check_destination(out_dir, model_dir, overwrite)
    loaded = load_model(model_dir, device="cpu")
    if progress is not None:
        engine = "ONNX (about a minute)" if fmt == "onnx" else "CTranslate2"
        progress(f"Exporting the {config.task} model in {model_dir} to {engine}")
    with staged_directory(out_dir, overwrite) as tmp:
        if fmt == "ctranslate2":
            from attn.model.export.ctranslate2_model import write_ctranslate2

            write_ctranslate2(loaded, tmp, quantization)
            weights = quantization or "float32"
        else:
            import shutil

            from attn.model.export.metadata import write_export_info
            from attn.model.export.onnx_graphs import write_onnx
            from attn.model.storage.layout import ModelDir

            write_onnx(loaded, tmp)
            for path in ModelDir(loaded.path).tokenizer_files():
                if path.is_file():  # (an imported tokenizer's options file may be absent)
                    shutil.copyfile(path, tmp / path.name)
            weights = "float32"
            write_export_info(loaded, tmp, fmt, weights)
        files = sorted(p.name for p in tmp.iterdir())
    return ExportResult(out_dir, files, config.task, weights)
