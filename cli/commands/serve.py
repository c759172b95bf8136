"""`attn serve`: a local HTTP JSON API and web page over loaded models (FastAPI + uvicorn,
`attn[serve]`).

Thin: picks the model directories, loads them, and runs `attn.server.app.create_app`
under uvicorn, with the security policy (`attn.server.security`) its options describe.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from attn.cli.common import err_console, fail

if TYPE_CHECKING:
    from attn.server.security import SecurityPolicy

_LOOPBACK = ("127.0.0.1", "localhost", "::1")
# API keys from the environment, separated by commas or spaces (added to --api-key-file's).
KEYS_ENV = "ATTN_API_KEYS"


def _rate(value: str | None) -> int | None:
    """`--rate-limit N/min` (or N) -> N requests a minute."""
    if value is None:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*(?:/\s*min)?\s*", value)
    if not match or int(match[1]) < 1:
        raise typer.BadParameter(f"{value!r}: give requests a minute as N/min, e.g. 60/min")
    return int(match[1])


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
    allow_host: Annotated[
        list[str] | None,
        typer.Option(
            metavar="NAME",
            help="Another Host name to answer (repeat), e.g. the real name behind a proxy. "
            "Always answered: localhost, 127.0.0.1, [::1] and the --host address.",
        ),
    ] = None,
    cors_origin: Annotated[
        list[str] | None,
        typer.Option(
            metavar="ORIGIN",
            help="A web origin whose pages may call the API (repeat), e.g. "
            "http://localhost:3000. Other sites' pages are refused.",
        ),
    ] = None,
    api_key_file: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help=f"Require Authorization: Bearer KEY, KEY one of this file's lines (also: "
            f"${KEYS_ENV}, comma-separated). The page asks for a key.",
        ),
    ] = None,
    rate_limit: Annotated[
        int | None,
        typer.Option(
            parser=_rate,
            metavar="N/min",
            help="Requests a minute per API key (per client address without keys); 429 past it.",
        ),
    ] = None,
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

    from attn.model.device import apply_process_settings
    from attn.model.inference.pipeline import load_pipeline
    from attn.model.storage.checkpoint import ModelError
    from attn.server.app import Limits, create_app

    security = _security(host, allow_host or [], cors_origin or [], api_key_file, rate_limit)
    dirs = _model_dirs(model or [], translate_model, summarize_model, sentiment_model)
    try:
        apply_process_settings(device, threads)
        pipelines = {task: load_pipeline(task, path, device=device) for task, path in dirs.items()}
    except (ModelError, ValueError, OSError) as e:
        fail(str(e))
    limits = Limits(max_texts, max_chars, max_body_bytes)
    app = create_app(pipelines, limits=limits, security=security)
    for task, path in dirs.items():
        err_console.print(f"Serving {task}: {path}", highlight=False, markup=False)
    shown = f"[{host}]" if ":" in host else host
    err_console.print(f"Web page: http://{shown}:{port}/", highlight=False, markup=False)
    if host not in _LOOPBACK and not security.api_keys:
        err_console.print(
            f"[yellow]Warning:[/] listening on {host} without API keys: anyone who can reach "
            "it can use it (--api-key-file)",
            highlight=False,
            soft_wrap=True,
        )
    uvicorn.run(app, host=host, port=port, log_level="info")


def _security(
    host: str,
    allow_hosts: list[str],
    cors_origins: list[str],
    key_file: Path | None,
    rate_limit: int | None,
) -> SecurityPolicy:
    """The policy the options describe; keys from `key_file` and $ATTN_API_KEYS."""
    from attn.server.security import SecurityPolicy, parse_keys

    keys = parse_keys(os.environ.get(KEYS_ENV, ""))
    if key_file is not None:
        try:
            from_file = parse_keys(key_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as e:
            fail(f"cannot read the API key file {key_file}: {getattr(e, 'strerror', e) or e}")
        if not from_file:
            fail(f"the API key file {key_file} holds no key (one key a line)")
        keys += from_file
    try:
        return SecurityPolicy(
            host, tuple(allow_hosts), tuple(cors_origins), tuple(keys), rate_limit
        )
    except ValueError as e:
        fail(str(e))


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
