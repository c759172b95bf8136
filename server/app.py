"""A local HTTP JSON API over loaded models (FastAPI), behind `attn serve`.

    POST /translate   {"text": "A dog runs."} or {"texts": [...]}, options beam, n_best, ...
    POST /summarize   the same, with the summarizer's defaults
    POST /sentiment   {"text": ...} or {"texts": [...]}, option probs
    POST /attention   {"text": ..., "task": "translate"}, options kind, layer, head, heads:
                      the attention weights, as `attn attention --format json` prints them
    POST /translate/file  {"filename": "talk.srt", "content": "..."}: a whole file translated
                      with its structure kept, streamed as progress lines (`attn.server.files`)
    GET  /health      the loaded models and the request limits
    GET  /            the web page (`attn.server.page`)

A request with "text" gets one result object; with "texts", {"results": [...]} in order.
Result objects carry the fields of the CLI's `--format jsonl` lines. Errors are
`{"error": "..."}` with a 4xx status: 400 bad JSON, 422 a bad field, 413 over a size limit,
404 no model for that task. Before a route sees a request, `attn.server.security` checks its
Host, Origin, Content-Type, API key and rate (403, 415, 401, 429).

Each model runs in one worker thread (torch is never called from two threads at once), fed
by a micro-batcher: requests that arrive within `max_wait` seconds of each other with the
same decoding options are decoded as one list, which the pipeline sorts and batches. Under
concurrent load this turns many one-sentence requests into a few full batches.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Hashable, Mapping, Sequence
from concurrent.futures import Future
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from starlette.exceptions import HTTPException

from attn.data.glossary import guided
from attn.model.decoding.defaults import Decoding
from attn.model.inference.attention_maps import attention_maps
from attn.model.inference.describe import preset_of
from attn.model.inference.pipeline import (
    SentimentClassifier,
    Seq2Seq,
    Summarizer,
    Translator,
)
from attn.server.files import mount_file_route
from attn.server.page import mount_page, page_paths
from attn.server.security import SecurityMiddleware, SecurityPolicy

logger = logging.getLogger(__name__)

Pipeline = Translator | Summarizer | SentimentClassifier
M = TypeVar("M", bound="_TextsRequest")
B = TypeVar("B", bound=BaseModel)

# The largest beam a request may ask for: the cost of a request grows with it.
MAX_BEAM = 16
# Texts decoded together at most, over all the requests of one micro-batch.
BATCH_TEXTS = 256


@dataclass(frozen=True)
class Limits:
    """Request size limits; a request over one gets 413.

    Args:
        max_texts: texts in one request.
        max_chars: characters in one text.
        max_body_bytes: bytes of the request body.
    """

    max_texts: int = 64
    max_chars: int = 5000
    max_body_bytes: int = 1 << 20

    def __post_init__(self) -> None:
        for name in ("max_texts", "max_chars", "max_body_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")


# --- requests --------------------------------------------------------------------------


class _TextsRequest(BaseModel):
    """One text or a list of texts; unknown fields are refused, so a typo is not ignored."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = None
    texts: list[str] | None = None

    @model_validator(mode="after")
    def _one_of(self) -> _TextsRequest:
        if (self.text is None) == (self.texts is None):
            raise ValueError('give "text" (a string) or "texts" (a list of strings), not both')
        return self

    def all_texts(self) -> list[str]:
        return [self.text] if self.text is not None else list(self.texts or [])

    def decode_options(self) -> dict[str, Any]:
        """The options that change the model's output (requests batch together only when
        these are equal)."""
        return {}


class GenerateRequest(_TextsRequest):
    """A translate or summarize request; options as in `Translator.translate`."""

    beam: int = Field(Decoding.beam, ge=1, le=MAX_BEAM)
    n_best: int = Field(1, ge=1, le=MAX_BEAM)
    length_penalty: float | None = Field(None, ge=0)
    no_repeat_ngram: int | None = Field(None, ge=0)
    max_length: int | None = Field(None, ge=1)
    sample: bool = False
    temperature: float | None = Field(None, ge=0)
    top_k: int | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = None

    @model_validator(mode="after")
    def _n_best_in_beam(self) -> GenerateRequest:
        if self.sample:
            if "beam" in self.model_fields_set and self.beam > 1:
                raise ValueError(f"sample draws one piece at a time: drop beam {self.beam}")
        elif self.n_best > self.beam:
            raise ValueError(f"n_best {self.n_best} is more than beam {self.beam}")
        for name in ("temperature", "top_k", "top_p", "seed"):
            if getattr(self, name) is not None and not self.sample:
                raise ValueError(f"{name} applies only with sample: true")
        return self

    def decode_options(self) -> dict[str, Any]:
        # A length_penalty or no_repeat_ngram of None is the task's own default
        # (`attn.model.decoding.defaults`).
        return {
            "beam": self.beam,
            "n_best": self.n_best,
            "length_penalty": self.length_penalty,
            "no_repeat_ngram": self.no_repeat_ngram,
            "max_length": self.max_length,
        } | self._sampling()

    def _sampling(self) -> dict[str, Any]:
        if not self.sample:
            return {}
        names = ("sample", "temperature", "top_k", "top_p", "seed")
        return {name: getattr(self, name) for name in names}


class TranslateRequest(GenerateRequest):
    """A translate request: `split` "sentences" (each text split into sentences, translated
    and joined back) or "none" (each text one input of the model); `constraints`, target
    texts the output must hold (one list for all texts, or with "texts" one list per text),
    and `prefix`, the text the output starts with (one string for all, or one per text; ""
    for none). A text with constraints or a prefix is translated whole. `to`: the target
    language of a model that translates into several (`fra` for its token `>>fra<<`)."""

    split: Literal["sentences", "none"] = "sentences"
    constraints: list[str] | list[list[str]] | None = None
    prefix: str | list[str] | None = None
    to: str | None = None

    @model_validator(mode="after")
    def _guidance(self) -> TranslateRequest:
        if self.sample and (self.constraints is not None or self.prefix is not None):
            raise ValueError("constraints and prefix need beam search: drop sample")
        count = len(super().all_texts())
        lists = (
            self.constraints if self.constraints and isinstance(self.constraints[0], list) else None
        )
        for name, per_text, one in (
            ("constraints", lists, "list of strings"),
            ("prefix", self.prefix if isinstance(self.prefix, list) else None, "string"),
        ):
            if per_text is not None and self.text is not None:
                raise ValueError(f'{name}: with "text", give one {one}')
            if per_text is not None and len(per_text) != count:
                raise ValueError(f"{name}: {len(per_text)} given for {count} texts")
        if any(not c.strip() for cons in self._constraint_lists() for c in cons):
            raise ValueError("constraints: a constraint is empty")
        return self

    def _constraint_lists(self) -> list[list[str]]:
        cons = self.constraints or []
        if cons and isinstance(cons[0], list):
            return cons  # type: ignore[return-value]
        return [cons] * len(super().all_texts())  # type: ignore[list-item]

    def all_texts(self) -> list[str]:
        texts = super().all_texts()
        if self.constraints is None and self.prefix is None:
            return texts
        return list(guided(texts, self._constraint_lists(), self.prefix))

    def check_lengths(self, pipeline: Seq2Seq) -> None:
        """Raises HTTPException 422: a constraint or prefix is longer than the model's
        max_length (checked before decoding, so a batch shared with others never fails)."""
        prefixes = [self.prefix] if isinstance(self.prefix, str) else self.prefix or []
        flat = [c for cons in self._constraint_lists() for c in cons] + [p for p in prefixes if p]
        if not flat:
            return
        ids, _ = pipeline.tokenizer.target.encode(flat, add_eos=False)
        limit = pipeline.config.max_length
        for text, pieces in zip(flat, ids, strict=True):
            if len(pieces) > limit:
                raise HTTPException(
                    422, f'"{text[:40]}" is {len(pieces)} pieces, more than max_length {limit}'
                )

    def check_language(self, pipeline: Seq2Seq) -> None:
        """Raises HTTPException 422: `to` missing for a multilingual model, unknown to it,
        or given to a model of one target language."""
        try:
            pipeline.source_tokenizer(self.to)
        except ValueError as e:
            raise HTTPException(422, str(e).replace("--to", '"to"')) from None

    def decode_options(self) -> dict[str, Any]:
        return (
            super().decode_options() | {"split": self.split} | ({"to": self.to} if self.to else {})
        )


class _WholeInput(BaseModel):
    """`max_input`: "whole" (a text longer than the model's max_length is summarized in
    parts, or classified in windows) or "cut" (the model reads its first max_length pieces),
    as `attn summarize` and `attn sentiment` take it."""

    max_input: Literal["whole", "cut"] = "whole"

    def decode_options(self) -> dict[str, Any]:
        return super().decode_options() | {"max_input": self.max_input}  # type: ignore[misc]


class SummarizeRequest(_WholeInput, GenerateRequest):
    """A summarize request: a GenerateRequest and `max_input`."""


class SentimentRequest(_WholeInput, _TextsRequest):
    """A sentiment request; `probs` adds every label's probability; `max_input`."""

    probs: bool = False


class AttentionRequest(_TextsRequest):
    """An attention request: one text, the task's model, and the maps to return, chosen as
    `attn attention` chooses them (every kind and layer, mean over heads, by default)."""

    task: Literal["translate", "summarize", "sentiment"] = "translate"
    kind: Literal["encoder", "decoder", "cross", "all"] = "all"
    layer: int | None = Field(None, ge=0)
    head: int | None = Field(None, ge=0)
    heads: bool = False
    digits: int = Field(6, ge=1, le=6)
    to: str | None = None  # as translate's: a multilingual model's target language

    @model_validator(mode="after")
    def _one_text(self) -> AttentionRequest:
        if self.text is None:
            raise ValueError('attention takes one "text", not "texts"')
        if not self.text.strip():
            raise ValueError("text: the text is empty")
        if self.head is not None and self.heads:
            raise ValueError('"head" and "heads" exclude each other: pick one head, or all')
        return self

    def decode_options(self) -> dict[str, Any]:
        # A key of its own, so an attention job never shares a call with translations.
        return {"attention": (self.kind, self.layer, self.head, self.heads, self.digits, self.to)}


# --- micro-batching --------------------------------------------------------------------


@dataclass
class _Job:
    texts: list[str]
    key: Hashable
    options: dict[str, Any]
    future: Future = field(default_factory=Future)


class MicroBatcher:
    """Runs one model in a worker thread; jobs that arrive together are run as one call.

    The worker takes the oldest job, then waits up to `max_wait` seconds for more jobs with
    the same options (up to `max_texts` texts in all), runs `run(texts, options)` once on
    their concatenated texts and hands each job its slice of the results. Jobs with other
    options wait for a later call, in arrival order.

    Args:
        run: (texts, options) -> one result per text, in order.
        max_wait: seconds a job may wait for company.
        max_texts: texts per call at most (a larger job still runs, alone).
    """

    def __init__(
        self,
        run: Callable[[list[str], dict[str, Any]], Sequence[Any]],
        *,
        max_wait: float = 0.005,
        max_texts: int = BATCH_TEXTS,
        name: str = "attn-batcher",
    ) -> None:
        self._run = run
        self.max_wait = max_wait
        self.max_texts = max_texts
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def submit(self, texts: list[str], options: dict[str, Any]) -> Future:
        """Queue `texts`; the future's result is their results, in order.

        Raises:
            RuntimeError: the batcher is closed.
        """
        job = _Job(list(texts), tuple(sorted(options.items())), dict(options))
        with self._lock:
            if self._closed:
                raise RuntimeError("the batcher is closed")
            self._queue.put(job)
        return job.future

    def close(self, timeout: float | None = 10.0) -> None:
        """Finish the queued jobs, then stop the worker."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        self._thread.join(timeout)

    def _work(self) -> None:
        # Jobs taken from the queue while gathering that could not join the group; the
        # None that `close` queues ends the loop once everything before it is done.
        backlog: deque[_Job | None] = deque()
        while True:
            job = backlog.popleft() if backlog else self._queue.get()
            if job is None:
                return
            group, count = [job], len(job.texts)
            for other in list(backlog):
                if other is not None and self._fits(job, other, count):
                    backlog.remove(other)
                    group.append(other)
                    count += len(other.texts)
            deadline = time.monotonic() + self.max_wait
            while count < self.max_texts and (wait := deadline - time.monotonic()) > 0:
                try:
                    other = self._queue.get(timeout=wait)
                except queue.Empty:
                    break
                if other is not None and self._fits(job, other, count):
                    group.append(other)
                    count += len(other.texts)
                else:
                    backlog.append(other)
                    if other is None:
                        break
            self._execute(group)

    def _fits(self, job: _Job, other: _Job, count: int) -> bool:
        # A sampling request runs alone: its texts' samples follow their index in it.
        alone = job.options.get("sample", False)
        return not alone and other.key == job.key and count + len(other.texts) <= self.max_texts

    def _execute(self, group: list[_Job]) -> None:
        # A job whose caller gave up (cancelled future) is dropped before it costs anything.
        group = [job for job in group if job.future.set_running_or_notify_cancel()]
        if not group:
            return
        texts = [text for job in group for text in job.texts]
        try:
            results = list(self._run(texts, group[0].options))
        except Exception as e:  # the callers get it: one bad batch must not stop the worker
            for job in group:
                job.future.set_exception(e)
            return
        start = 0
        for job in group:
            job.future.set_result(results[start : start + len(job.texts)])
            start += len(job.texts)


def _runner(pipeline: Pipeline) -> Callable[[list[str], dict[str, Any]], list[Any]]:
    if isinstance(pipeline, Translator):
        work = pipeline.translate
    elif isinstance(pipeline, Summarizer):
        work = pipeline.summarize
    else:
        work = pipeline.classify

    def run(texts: list[str], options: dict[str, Any]) -> list[Any]:
        # Attention runs in the model's worker thread too: torch sees one caller per model.
        if "attention" in options:
            return [_attention(pipeline, text, *options["attention"]) for text in texts]
        return list(work(texts, **options))

    return run


def _attention(
    pipeline: Pipeline,
    text: str,
    kind: str,
    layer: int | None,
    head: int | None,
    heads: bool,
    digits: int,
    to: str | None = None,
) -> dict[str, Any]:
    """`attn attention TEXT --format json` for one text, as a dict.

    Raises:
        ValueError: a layer or head the model lacks (the message names the model's shape),
            `to` missing or unknown for a multilingual model, or given to another.
    """
    if isinstance(pipeline, Seq2Seq):  # the output /translate and /summarize give
        try:
            maps = pipeline.attention_maps(text, to=to)
        except ValueError as e:
            raise ValueError(str(e).replace("--to", '"to"')) from None
    else:
        maps = attention_maps(pipeline.loaded, text)
    chosen = maps.choose(kind, layer, head, heads)
    return maps.to_dict(chosen, digits)


# --- the app ---------------------------------------------------------------------------


def create_app(
    models: Mapping[str, Pipeline],
    *,
    limits: Limits | None = None,
    max_wait: float = 0.005,
    security: SecurityPolicy | None = None,
) -> FastAPI:
    """The FastAPI app serving `models` (task -> loaded pipeline; any subset of tasks).

    Args:
        models: e.g. {"translate": Translator.load(dir)}.
        limits: request size limits (default `Limits()`).
        max_wait: seconds a request waits for others to share its batch.
        security: who may call it (default `SecurityPolicy()`: a loopback server, no
            cross-origin browser requests, no API keys).

    The models run in worker threads started by the app's lifespan (uvicorn runs it by
    default) and stopped when the server shuts down.

    Raises:
        ValueError: a pipeline filed under another task.
    """
    limits = limits or Limits()
    for task, pipeline in models.items():
        if getattr(pipeline, "task", None) != task:
            raise ValueError(f"the model for {task!r} is a {type(pipeline).__name__}")
    batchers: dict[str, MicroBatcher] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batchers.update(
            {
                task: MicroBatcher(_runner(p), max_wait=max_wait, name=f"attn-{task}")
                for task, p in models.items()
            }
        )
        try:
            yield
        finally:
            for batcher in batchers.values():
                batcher.close()

    from attn import __version__

    app = FastAPI(title="attn", version=__version__, lifespan=lifespan)
    _answer_errors_in_json(app)
    _mount_health(app, models, limits)
    _mount_task_routes(app, models, batchers, limits)
    mount_file_route(
        app,
        lambda request, schema: _parse(request, schema, limits),
        lambda: batchers["translate"].submit if "translate" in batchers else None,
        lambda: _target_language(models["translate"]),
    )
    mount_page(app)
    app.add_middleware(
        SecurityMiddleware, policy=security or SecurityPolicy(), open_paths=page_paths()
    )
    return app


def _mount_health(app: FastAPI, models: Mapping[str, Pipeline], limits: Limits) -> None:
    """GET /health: the loaded models (described on the first call) and the limits."""
    from attn import __version__

    described: dict[str, dict[str, Any]] = {}  # filled by the first /health
    limits_record = asdict(limits)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """The loaded models: task, directory name, vocabulary, device, size (preset, parameters,
        layers, heads), languages of a translation model (and labels); the request limits."""
        if not described:
            described.update({task: _describe_model(p) for task, p in models.items()})
        return {
            "status": "ok",
            "version": __version__,
            "tasks": list(models),
            "models": described,
            "limits": limits_record,
        }


def _mount_task_routes(
    app: FastAPI,
    models: Mapping[str, Pipeline],
    batchers: Mapping[str, MicroBatcher],
    limits: Limits,
) -> None:
    """POST /translate, /summarize, /sentiment and /attention: each parses its request,
    hands the texts to its task's micro-batcher (`batchers`, filled by the app's lifespan)
    and answers the results."""

    async def run(
        task: str, request: Request, schema: type[M], parsed: M | None = None
    ) -> tuple[M, list[Any]]:
        if task not in models:
            loaded = ", ".join(models) or "none"
            raise HTTPException(404, f"no {task} model is loaded (loaded: {loaded})")
        req = parsed if parsed is not None else await _parse(request, schema, limits)
        texts = req.all_texts()
        if not texts:
            return req, []
        future = batchers[task].submit(texts, req.decode_options())
        return req, await asyncio.wrap_future(future)

    def reply(req: _TextsRequest, records: list[dict[str, Any]]) -> dict[str, Any]:
        return records[0] if req.text is not None else {"results": records}

    @app.post("/translate")
    async def translate(request: Request) -> dict[str, Any]:
        """Translate `text` or `texts`; options beam, n_best, length_penalty, no_repeat_ngram,
        max_length, split ("sentences" or "none"), constraints, prefix, to (the target
        language of a multilingual model); or sample with temperature, top_k, top_p, seed."""
        req = await _parse(request, TranslateRequest, limits)
        if "translate" in models:
            req.check_language(models["translate"])
            req.check_lengths(models["translate"])
        req, results = await run("translate", request, TranslateRequest, req)
        return reply(req, [r.record(req.n_best) for r in results])

    @app.post("/summarize")
    async def summarize(request: Request) -> dict[str, Any]:
        """Summarize `text` or `texts`; options as for /translate but split, constraints,
        prefix and to; max_input "whole" (default: a long text in parts) or "cut"."""
        req, results = await run("summarize", request, SummarizeRequest)
        return reply(req, [r.record(req.n_best) for r in results])

    @app.post("/sentiment")
    async def sentiment(request: Request) -> dict[str, Any]:
        """Classify `text` or `texts`; `probs: true` adds every label's probability;
        max_input "whole" (default: a long text in windows) or "cut"."""
        req, results = await run("sentiment", request, SentimentRequest)
        return reply(req, [r.record(req.probs) for r in results])

    @app.post("/attention")
    async def attention(request: Request) -> dict[str, Any]:
        """The attention weights the `task` model used on `text`: the maps chosen by kind
        (encoder, decoder, cross or all), layer (default all), head (default the mean) or
        heads (one map per head), with the pieces, output and word alignment."""
        req = await _parse(request, AttentionRequest, limits)
        try:
            _, results = await run(req.task, request, AttentionRequest, req)
        except ValueError as e:
            raise HTTPException(422, str(e)) from None
        return results[0]


def _answer_errors_in_json(app: FastAPI) -> None:
    """Every error, the app's own and FastAPI's, answered as `{"error": "..."}`."""

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": _describe(exc.errors())}, 422)

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
        # uvicorn logs the traceback; the client learns only that the server failed.
        return JSONResponse({"error": f"internal server error ({type(exc).__name__})"}, 500)


def _describe_model(pipeline: Pipeline) -> dict[str, Any]:
    """What /health says of one loaded model (the page lists these to choose from); the
    model is named by its directory's name: where it lives on the server is not told."""
    config, train = pipeline.config, pipeline.loaded.meta.get("train") or {}
    entry: dict[str, Any] = {
        "name": pipeline.loaded.path.name,
        "vocab_size": config.vocab_size,
        "device": str(pipeline.device),
        "preset": preset_of(config, pipeline.loaded.meta),
        "parameters": pipeline.n_parameters,
        "layers": {"encoder": config.n_encoder_layers, "decoder": config.n_decoder_layers},
        "heads": config.n_heads,
    }
    if config.task == "translate":
        entry["languages"] = {"source": train.get("src"), "target": train.get("tgt")}
        targets = pipeline.tokenizer.language_tokens  # a multilingual model's, for "to"
        if targets:
            entry["targets"] = [token[2:-2] for token in targets]
    if config.labels:
        entry["labels"] = list(config.labels)
    return entry


def _target_language(pipeline: Pipeline) -> str | None:
    return (pipeline.loaded.meta.get("train") or {}).get("tgt")


async def _parse(request: Request, schema: type[B], limits: Limits) -> B:
    """Read and validate a request body within `limits` (HTTPException 400/413/422)."""
    too_big = HTTPException(413, f"request body over {limits.max_body_bytes} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise too_big
    # Counted while reading, so a body without (or lying about) its length is cut short too.
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limits.max_body_bytes:
            raise too_big
    try:
        data = json.loads(body)
    except ValueError as e:
        raise HTTPException(400, f"the body is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise HTTPException(400, 'the body must be a JSON object such as {"text": "..."}')
    try:
        req = schema.model_validate(data)
    except ValidationError as e:
        raise HTTPException(422, _describe(e.errors())) from None
    if not isinstance(req, _TextsRequest):
        return req
    texts = req.all_texts()
    if len(texts) > limits.max_texts:
        raise HTTPException(
            413, f"{len(texts)} texts in one request; at most {limits.max_texts} are allowed"
        )
    for i, text in enumerate(texts):
        if len(text) > limits.max_chars:
            raise HTTPException(
                413, f"text {i} has {len(text)} characters; at most {limits.max_chars} are allowed"
            )
    return req


def _describe(errors: Sequence[Any]) -> str:
    """Pydantic's errors as one line: `beam: Input should be less than or equal to 16`."""
    parts = []
    for error in errors:
        where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts) or "invalid request"
