"""POST /translate/file: a whole file translated with its structure kept, for the web page.

    POST /translate/file  {"filename": "talk.srt", "content": "...", "format": null, "beam": 4}

The format comes from `format` (text, srt, vtt, markdown or html) or else the file name's
extension (`attn.data.documents.detect_format`). The file is parsed before anything is
answered: a file that cannot be parsed gets `{"error": "talk.srt:3: ..."}` with 422, as
any bad request does. Then the answer is a stream of JSON lines (`application/x-ndjson`), so
that the page can show how far a long file has got:

    {"event": "start", "format": "srt", "parts": 1000}
    {"event": "progress", "done": 64, "parts": 1000}
    ...
    {"event": "done", "filename": "talk.de.srt", "format": "srt", "content": "..."}

or, when the model fails half way, a last line `{"event": "error", "error": "..."}`.

The document's parts go to the translation model's micro-batcher a chunk at a time, with the
next chunk already queued, so the model never waits for the client and the progress lines
come as the chunks finish. A client that goes away cancels the chunks not yet begun.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import Future
from pathlib import PurePath
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from attn.data.documents import detect_format
from attn.data.documents import parse as parse_document
from attn.model.decoding.defaults import Decoding

# Parts per call to the model, and calls queued at once: small enough for progress every
# few seconds on a CPU, large enough for full batches.
CHUNK_PARTS = 32
IN_FLIGHT = 2

Submit = Callable[[list[str], dict[str, Any]], Future]


class FileRequest(BaseModel):
    """A file to translate: its name (for its format and the answer's name) and text."""

    model_config = ConfigDict(extra="forbid")

    filename: str = Field(min_length=1, max_length=255)
    content: str
    format: str | None = None
    beam: int = Field(Decoding.beam, ge=1, le=16)

    def decode_options(self) -> dict[str, Any]:
        # The alignment places inline markup (tags, emphasis, links) in the translation.
        return {"beam": self.beam, "align": True}


def output_name(filename: str, language: str | None) -> str:
    """The translated file's name: `talk.srt` -> `talk.de.srt` (`talk.translated.srt` when
    the model's target language is not known)."""
    path = PurePath(PurePath(filename).name or "document.txt")
    return f"{path.stem}.{language or 'translated'}{path.suffix}"


def mount_file_route(
    app: FastAPI,
    parse: Callable[[Request, type[FileRequest]], Awaitable[FileRequest]],
    submit: Callable[[], Submit | None],
    target_language: Callable[[], str | None],
) -> None:
    """Add POST /translate/file to `app`.

    Args:
        parse: reads and validates a request body (the app's limits apply).
        submit: the translation model's `MicroBatcher.submit`, or None without one.
        target_language: the translation model's target language (None: not known), for
            the answer's file name; asked only once `submit` gave a model.
    """

    @app.post("/translate/file", response_model=None)
    async def translate_file(request: Request) -> StreamingResponse:
        """Translate a .txt, .srt, .vtt, .md or .html file; JSON lines of progress, then the
        translated file."""
        run = submit()
        if run is None:
            raise HTTPException(404, "no translate model is loaded")
        req = await parse(request, FileRequest)
        if "\x00" in req.content:
            raise HTTPException(422, f"{req.filename}: a binary file, not text")
        try:
            fmt = detect_format(req.filename, req.format)
            document = parse_document(req.content, fmt, PurePath(req.filename).name)
        except ValueError as e:  # a DataError ("talk.srt:3: ...") or an unknown format
            raise HTTPException(422, str(e)) from None
        name = output_name(req.filename, target_language())
        events = _events(document, run, req.decode_options(), name)
        return StreamingResponse(events, media_type="application/x-ndjson")


def _line(event: dict[str, Any]) -> bytes:
    return (json.dumps(event, ensure_ascii=False) + "\n").encode()


async def _events(
    document: Any, submit: Submit, options: dict[str, Any], name: str
) -> AsyncIterator[bytes]:
    """The answer's lines: start, progress after each chunk, then the file (or an error)."""
    parts: Sequence[str] = document.units
    total = len(parts)
    yield _line({"event": "start", "format": document.format, "parts": total})
    chunks = deque(parts[i : i + CHUNK_PARTS] for i in range(0, total, CHUNK_PARTS))
    queued: deque[Future] = deque()
    outputs: list[Any] = []  # the results, with the alignments `render` places markup by
    try:
        while chunks or queued:
            while chunks and len(queued) < IN_FLIGHT:
                queued.append(submit(list(chunks.popleft()), options))
            try:
                results = await asyncio.wrap_future(queued.popleft())
            except Exception as e:  # the model failed: the page shows why
                yield _line({"event": "error", "error": f"{type(e).__name__}: {e}"})
                return
            outputs += results
            yield _line({"event": "progress", "done": len(outputs), "parts": total})
    finally:
        for future in queued:  # the client went away: the rest is never decoded
            future.cancel()
    content = document.render(outputs)
    yield _line({"event": "done", "filename": name, "format": document.format, "content": content})
