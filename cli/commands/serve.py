"""`attn serve`: a local HTTP JSON API and web page over loaded models (FastAPI + uvicorn,
`attn[serve]`).

Thin: picks the model directories, loads them, and runs `attn.server.app.create_app`
under uvicorn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from attn.cli.common import err_console, fail

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def serve(
    model: Annotated[
        list[Path] | None,
        typer.Option(
            "-m", "--model", help="A model directory to serve (repeat; the task is read from it)."
        ),
    ] = None,
    translate_model: Annotated[
        Path | None, typer.Option(help="The translation model directory.")
    ] = None,
    summarize_model: Annotated[
        Path | None, typer.Option(help="The summarization model directory.")
    ] = None,
    sentiment_model: Annotated[
        Path | None, typer.Option(help="The sentiment model directory.")
    ] = None,
    host: Annotated[
        str, typer.Option(help="Address to listen on. Other than loopback, anyone can reach it.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8000,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    threads: Annotated[
        int | None, typer.Option(min=1, help="CPU threads for torch. Default: torch's choice.")
    ] = None,
    max_texts: Annotated[int, typer.Option(min=1, help="Texts per request at most.")] = 64,
    max_chars: Annotated[int, typer.Option(min=1, help="Characters per text at most.")] = 5000,
    max_body_bytes: Annotated[int, typer.Option(min=1, help="Bytes per request body at most.")] = 1
    << 20,
) -> None:
    """Serve models over HTTP: attn serve [-m DIR]... [--port 8000].

    POST /translate, /summarize, /sentiment with {"text": "..."} or {"texts": [...]} (and
    options such as "beam" or "probs"), POST /attention for a text's attention maps; GET
    /health lists the loaded models. A web page at / runs the models and shows their
    attention in the browser. Without model options, the default model of every task that
    has one is served.
    """
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError:
        fail("attn serve needs FastAPI and uvicorn: pip install 'attn[serve]'")

    from attn.model.inference.pipeline import load_pipeline
    from attn.model.storage.checkpoint import ModelError
    from attn.server.app import Limits, create_app

    dirs = _model_dirs(model or [], translate_model, summarize_model, sentiment_model)
    try:
        pipelines = {
            task: load_pipeline(task, path, device=device, threads=threads)
            for task, path in dirs.items()
        }
    except (ModelError, ValueError, OSError) as e:
        fail(str(e))
    app = create_app(pipelines, limits=Limits(max_texts, max_chars, max_body_bytes))
    for task, path in dirs.items():
        err_console.print(f"Serving {task}: {path}", highlight=False, markup=False)
    shown = f"[{host}]" if ":" in host else host
    err_console.print(f"Web page: http://{shown}:{port}/", highlight=False, markup=False)
    if host not in _LOOPBACK:
        err_console.print(
            f"[yellow]Warning:[/] listening on {host}: the API has no authentication",
            highlight=False,
        )
    uvicorn.run(app, host=host, port=port, log_level="info")


def _model_dirs(
    models: list[Path],
    translate: Path | None,
    summarize: Path | None,
    sentiment: Path | None,
) -> dict[str, Path]:
    """Task -> model directory, from -m (task read from config.json), the per-task options,
    or, with none of them, the default model directories that hold a model."""
    from attn.data.home import default_model_dir
    from attn.data.task_files import TASKS
    from attn.model.nn.config import ConfigError, load_config
    from attn.model.storage.layout import CONFIG, ModelDir

    dirs: dict[str, Path] = {}
    for path in models:
        if not (path / CONFIG).is_file():
            fail(f"{path} is not an attn model directory (no {CONFIG})")
        try:
            task = load_config(path / CONFIG)[0].task
        except ConfigError as e:
            fail(str(e))
        if task in dirs:
            fail(f"two {task} models ({dirs[task]} and {path}); serve one per task")
        dirs[task] = path
    named = {"translate": translate, "summarize": summarize, "sentiment": sentiment}
    for task, path in named.items():
        if path is None:
            continue
        if task in dirs:
            fail(f"two {task} models ({dirs[task]} and {path}); serve one per task")
        dirs[task] = path
    if dirs:
        return dirs
    dirs = {t: default_model_dir(t) for t in TASKS if ModelDir(default_model_dir(t)).is_model()}
    if not dirs:
        fail("no model to serve: train one with `attn train TASK` or pass -m DIR")
    return dirs


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
