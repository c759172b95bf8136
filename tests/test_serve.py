"""`attn serve`: a real uvicorn server on a loopback port, real HTTP requests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from helpers import ATTN
from typer.testing import CliRunner

from attn.cli.main import app as cli_app

try:
    import uvicorn

    from attn.server.app import Limits, MicroBatcher, create_app
    from attn.server.security import RateLimiter, SecurityMiddleware, SecurityPolicy
except ImportError as missing:
    SERVE_EXTRA_MISSING: ImportError | None = missing
else:
    SERVE_EXTRA_MISSING = None

SENTENCES = [
    "A dog runs.",
    "His small bird paints her fast boat.",
    "The red car is in the garden.",
    "My white horse sits next to the street.",
    "A woman reads a book.",
    "The children play in the park.",
]


@pytest.fixture(scope="module", autouse=True)
def _serve_extra() -> None:
    """Fail, not skip, without the `serve` extra: CI installs it, and a skip would hide that
    `attn serve` went untested."""
    if SERVE_EXTRA_MISSING is not None:
        pytest.fail(
            "the serve tests need FastAPI and uvicorn (the `serve` extra): "
            f"pip install -e '.[serve]' ({SERVE_EXTRA_MISSING})",
            pytrace=False,
        )


@contextmanager
def running(app: Any) -> Iterator[str]:
    """Serve `app` with uvicorn in a thread on a free 127.0.0.1 port; stop it on exit."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()
        assert not thread.is_alive(), "server did not stop"


def request(base: str, path: str, body: Any = None, *, raw: bytes | None = None) -> tuple[int, Any]:
    """(status, parsed JSON body) of a GET (no body) or POST."""
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        base + path, data=data, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture(scope="module")
def pipelines(translate_model: Path, sentiment_model: Path) -> dict[str, Any]:
    from attn import SentimentClassifier, Translator

    return {
        "translate": Translator.load(translate_model, device="cpu"),
        "sentiment": SentimentClassifier.load(sentiment_model, device="cpu"),
    }


@pytest.fixture(scope="module")
def expected(pipelines) -> dict[str, Any]:
    """Answers computed directly, before the server runs, to compare the server's with."""
    translator, classifier = pipelines["translate"], pipelines["sentiment"]
    return {
        "greedy": {r.source: r for r in translator.translate(SENTENCES, beam=1)},
        "beam2": {r.source: r for r in translator.translate(SENTENCES, beam=2, n_best=2)},
        "sentiment": list(classifier.classify(["I loved it.", "It was not good at all."])),
    }


@pytest.fixture(scope="module")
def server(pipelines, expected) -> Iterator[str]:
    # A wait long enough that concurrent test requests really share batches.
    limits = Limits(max_texts=8, max_chars=300, max_body_bytes=4096)
    with running(create_app(pipelines, limits=limits, max_wait=0.02)) as base:
        yield base


def test_health_lists_the_loaded_models(server, translate_model, sentiment_model) -> None:
    status, body = request(server, "/health")
    assert status == 200
    assert body["status"] == "ok"
    assert body["tasks"] == ["translate", "sentiment"]
    # Named by the directory's name: the server's file system is not told.
    assert body["models"]["translate"]["name"] == translate_model.name
    assert str(translate_model.parent) not in json.dumps(body)
    assert body["models"]["sentiment"]["labels"] == ["negative", "positive"]


def test_translate_one_text(server, expected) -> None:
    status, body = request(server, "/translate", {"text": "A dog runs.", "beam": 1})
    assert status == 200
    want = expected["greedy"]["A dog runs."]
    # "sentences": the text split into sentences (one here), each with its own result.
    assert set(body) == {"source", "output", "score", "logprob", "sentences"}
    assert body["source"] == "A dog runs."
    assert body["output"] == want.text
    assert body["score"] == pytest.approx(want.score, abs=1e-4)


def test_attention_shows_the_translation_translate_gives(server) -> None:
    """POST /attention runs the search /translate runs (beam 4): same output, and its maps
    and alignment are of that output's pieces."""
    for text in SENTENCES:
        status, translated = request(server, "/translate", {"text": text, "beam": 4})
        assert status == 200
        status, body = request(server, "/attention", {"text": text, "kind": "cross"})
        assert status == 200, body
        assert body["output"] == translated["output"]
        assert body["target_tokens"][1:] == body["output_tokens"][:-1]
        rows = {len(m["matrix"]) for m in body["maps"]}
        assert rows == {len(body["output_tokens"])}
        words = len(body["output"].split())
        assert {t for _, t in body["alignment"]} == set(range(words))


def test_translate_many_with_n_best(server, expected) -> None:
    texts = [SENTENCES[2], "", SENTENCES[0]]
    status, body = request(server, "/translate", {"texts": texts, "beam": 2, "n_best": 2})
    assert status == 200
    results = body["results"]
    assert [r["source"] for r in results] == texts
    assert results[1] == {"source": "", "output": "", "score": None, "logprob": None, "n_best": []}
    for r in (results[0], results[2]):
        want = expected["beam2"][r["source"]]
        assert r["output"] == want.text
        assert [h["output"] for h in r["n_best"]] == [c.text for c in want.n_best]
        assert len(r["n_best"]) == 2


def test_sentiment_with_probs(server, expected) -> None:
    texts = ["I loved it.", "It was not good at all."]
    status, body = request(server, "/sentiment", {"texts": texts, "probs": True})
    assert status == 200
    for got, want in zip(body["results"], expected["sentiment"], strict=True):
        assert got["label"] == want.label
        assert set(got["probs"]) == {"negative", "positive"}
        assert sum(got["probs"].values()) == pytest.approx(1.0, abs=1e-4)
    status, body = request(server, "/sentiment", {"text": texts[0]})
    assert set(body) == {"source", "label", "prob"}


def test_concurrent_requests_get_their_own_answers(server, expected) -> None:
    """Many clients at once, with two different beam sizes (never batched together): every
    response holds the answer to its own request, in its order."""
    jobs = []
    for i in range(16):
        texts = [SENTENCES[(i + k) % len(SENTENCES)] for k in range(1 + i % 3)]
        jobs.append(({"texts": texts, "beam": 1 if i % 2 else 2}, texts))

    def send(job: tuple[dict, list[str]]) -> tuple[int, Any]:
        return request(server, "/translate", job[0])

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(send, jobs, timeout=120))
    for (body, texts), (status, answer) in zip(jobs, answers, strict=True):
        assert status == 200
        assert [r["source"] for r in answer["results"]] == texts
        table = expected["greedy" if body["beam"] == 1 else "beam2"]
        assert [r["output"] for r in answer["results"]] == [table[t].text for t in texts]


@pytest.mark.parametrize(
    ("raw", "status", "message"),
    [
        (b'{"text": "A dog', 400, "not valid JSON"),
        (b"\xff\xfe", 400, "not valid JSON"),
        (b'["A dog runs."]', 400, "JSON object"),
        (b"{}", 422, 'give "text"'),
        (b'{"text": "a", "texts": ["b"]}', 422, "not both"),
        (b'{"text": 5}', 422, "text: "),
        (b'{"text": "a", "beam": 100}', 422, "beam: "),
        (b'{"text": "a", "beam": 2, "n_best": 3}', 422, "n_best 3 is more than beam 2"),
        (b'{"text": "a", "beem": 2}', 422, "beem: "),
    ],
)
def test_bad_requests_get_a_message(server, raw, status, message) -> None:
    got, body = request(server, "/translate", raw=raw)
    assert got == status
    assert message in body["error"]


# Target words of the demo corpus that the plain translations of these texts do not hold.
GUIDED = ["His small bird paints her fast boat.", "His hungry mouse is red."]


def test_translate_with_constraints_and_prefix(server, pipelines) -> None:
    plain = [r.text for r in pipelines["translate"].translate(GUIDED, beam=2)]
    assert "Maus" not in plain[0] and "Vogel" not in plain[1]  # (the test means something)
    body = {"texts": GUIDED, "beam": 2, "constraints": [["Maus"], ["Vogel"]]}
    status, answer = request(server, "/translate", body)
    assert status == 200, answer
    outputs = [r["output"] for r in answer["results"]]
    assert "Maus" in outputs[0] and "Vogel" in outputs[1]
    assert all("constraints_met" not in r for r in answer["results"])
    # One list for all texts; a text without constraints is translated as without the field.
    status, answer = request(server, "/translate", {**body, "constraints": []})
    assert [r["output"] for r in answer["results"]] == plain
    status, answer = request(server, "/translate", {"text": GUIDED[1], "constraints": ["Boot"]})
    assert status == 200 and "Boot" in answer["output"]
    # A prefix for all texts or one per text ("" for none).
    status, answer = request(server, "/translate", {"texts": GUIDED, "beam": 2, "prefix": "Ihr"})
    assert all(r["output"].startswith("Ihr") for r in answer["results"])
    status, answer = request(
        server, "/translate", {"texts": GUIDED, "beam": 2, "prefix": ["Die", ""]}
    )
    assert answer["results"][0]["output"].startswith("Die")
    assert answer["results"][1]["output"] == plain[1]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"text": "a", "constraints": ["Maus"], "sample": True}, "need beam search"),
        ({"text": "a", "prefix": "Die", "sample": True}, "need beam search"),
        ({"text": "a", "constraints": ["Maus", " "]}, "constraints: a constraint is empty"),
        ({"texts": ["a"], "constraints": [["Maus"], [""]]}, "2 given for 1 texts"),
        ({"texts": ["a", "b"], "constraints": [[], [""]]}, "a constraint is empty"),
        ({"text": "a", "constraints": [["Maus"]]}, 'with "text", give one list of strings'),
        ({"texts": ["a", "b"], "prefix": ["Die"]}, "prefix: 1 given for 2 texts"),
        ({"text": "a", "prefix": ["Die"]}, 'prefix: with "text", give one string'),
        ({"text": "a", "constraints": "Maus"}, "constraints"),
    ],
)
def test_bad_constraints_and_prefixes_get_422(server, body, message) -> None:
    status, answer = request(server, "/translate", body)
    assert status == 422
    assert message in answer["error"]


def test_constraints_and_prefixes_longer_than_max_length_get_422(server, pipelines) -> None:
    limit = pipelines["translate"].config.max_length
    long = " ".join(["Maus"] * (limit + 1))
    for body in ({"text": "a", "constraints": ["Boot", long]}, {"texts": ["a"], "prefix": [long]}):
        status, answer = request(server, "/translate", body)
        assert status == 422
        assert f"more than max_length {limit}" in answer["error"]
    # The server still answers.
    status, answer = request(server, "/translate", {"text": GUIDED[0], "constraints": ["Maus"]})
    assert status == 200 and "Maus" in answer["output"]


def test_oversized_requests_get_413(server) -> None:
    status, body = request(server, "/translate", {"texts": ["a"] * 9})
    assert status == 413
    assert "9 texts in one request; at most 8" in body["error"]
    status, body = request(server, "/sentiment", {"texts": ["fine", "x" * 301]})
    assert status == 413
    assert "text 1 has 301 characters" in body["error"]
    status, body = request(server, "/translate", raw=b'{"text": "' + b"a" * 5000 + b'"}')
    assert status == 413
    assert "over 4096 bytes" in body["error"]


def test_missing_model_or_endpoint_is_404(server) -> None:
    status, body = request(server, "/summarize", {"text": "Anna went home."})
    assert status == 404
    assert body["error"] == "no summarize model is loaded (loaded: translate, sentiment)"
    status, body = request(server, "/nope", {"text": "a"})
    assert status == 404
    assert body["error"]


def test_micro_batcher_groups_jobs_with_equal_options() -> None:
    calls: list[tuple[list[str], dict]] = []

    def run(texts: list[str], options: dict) -> list[str]:
        calls.append((texts, options))
        if "boom" in texts:
            raise RuntimeError("boom")
        return [f"{t}/{options['beam']}" for t in texts]

    batcher = MicroBatcher(run, max_wait=0.2)
    try:
        futures = [batcher.submit([f"t{i}", f"u{i}"], {"beam": i % 2}) for i in range(10)]
        results = [f.result(timeout=10) for f in futures]
        assert results == [[f"t{i}/{i % 2}", f"u{i}/{i % 2}"] for i in range(10)]
        # Two option sets: the jobs submitted together need two calls, never one mixed call.
        assert len(calls) == 2
        assert all(int(t[1:]) % 2 == options["beam"] for texts, options in calls for t in texts)
        failed = batcher.submit(["boom"], {"beam": 1})
        with pytest.raises(RuntimeError, match="boom"):
            failed.result(timeout=10)
        # The worker survives a failed batch.
        assert batcher.submit(["ok"], {"beam": 1}).result(timeout=10) == ["ok/1"]
    finally:
        batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher.submit(["late"], {"beam": 1})


def test_a_failing_model_gives_500_with_a_json_error() -> None:
    from attn import Translator

    class Broken(Translator):
        def translate(self, texts, **options):
            raise RuntimeError("out of memory")

    # No model behind it: the request fails inside the worker, as a real failure would.
    broken = Broken.__new__(Broken)
    broken.tokenizer = SimpleNamespace(language_tokens=())  # (read before the worker runs)
    with running(create_app({"translate": broken})) as base:
        status, body = request(base, "/translate", {"text": "A dog runs."})
        assert status == 500
        assert body == {"error": "internal server error (RuntimeError)"}
        # The worker is still there for the next request.
        status, _ = request(base, "/translate", {"text": "again"})
        assert status == 500


def test_serve_without_the_extra_says_how_to_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "fastapi", None)
    result = CliRunner().invoke(cli_app, ["serve", "-m", "anything"])
    assert result.exit_code == 1
    assert "pip install 'attn[serve]'" in result.output
    assert "Traceback" not in result.output


def test_serve_refuses_bad_model_options(tmp_path, translate_model) -> None:
    runner = CliRunner()
    result = runner.invoke(cli_app, ["serve", "-m", str(tmp_path)])
    assert result.exit_code == 1
    assert "not an attn model directory" in result.output
    result = runner.invoke(
        cli_app, ["serve", "-m", str(translate_model), "--translate-model", str(translate_model)]
    )
    assert result.exit_code == 1
    assert "two translate models" in result.output


def test_attn_serve_command_end_to_end(translate_model, tmp_path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "ATTN_HOME": str(tmp_path)}
    cmd = [ATTN, "serve", "-m", str(translate_model), "--port", str(port), "--threads", "1"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "attn serve did not answer within 60 s"
            try:
                status, body = request(base, "/health")
                break
            except OSError:
                time.sleep(0.2)
        assert body["tasks"] == ["translate"]
        status, body = request(base, "/translate", {"text": "A dog runs.", "beam": 1})
        assert status == 200
        assert body["output"]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    assert proc.returncode == 0
    assert b"Serving translate" in proc.stderr.read()


# --- who may call the server (attn.server.security) ----------------------------------------


def send(
    base: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    """(status, response headers, parsed JSON or None) of a request with exactly `headers`
    (urllib adds Host only where `headers` has none)."""
    req = urllib.request.Request(base + path, data=body, headers=headers or {})
    if body is not None and not any(k.lower() == "content-type" for k in headers or {}):
        req.remove_header("Content-type")  # urllib's default is a form's media type
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            status, head, raw = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        status, head, raw = e.code, dict(e.headers), e.read()
    head = {k.lower(): v for k, v in head.items()}
    return status, head, json.loads(raw) if raw else None


JSON = {"Content-Type": "application/json"}
ONE = json.dumps({"text": "A dog runs.", "beam": 1}).encode()


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:8000", "127.0.0.1.evil.example", "localhost.evil"]
)
def test_a_foreign_host_is_refused(server, host) -> None:
    """DNS rebinding: a page whose own name now points at 127.0.0.1 sends its own name."""
    status, _, body = send(server, "/translate", ONE, {**JSON, "Host": host})
    assert status == 403
    assert "is not allowed" in body["error"] and "--allow-host" in body["error"]
    status, _, body = send(server, "/health", None, {"Host": host})
    assert status == 403


@pytest.mark.parametrize("host", ["localhost", "localhost:8000", "127.0.0.1:1", "[::1]:8000"])
def test_loopback_names_are_answered(server, host) -> None:
    status, _, body = send(server, "/translate", ONE, {**JSON, "Host": host})
    assert status == 200
    assert body["output"]


def test_a_foreign_origin_is_refused_and_the_own_origin_is_not(server) -> None:
    for origin in ("http://evil.example", "http://127.0.0.1:1", "null"):
        status, head, body = send(server, "/translate", ONE, {**JSON, "Origin": origin})
        assert status == 403, origin
        assert "cross-origin request" in body["error"]
        assert "access-control-allow-origin" not in {k.lower() for k in head}
        # Its preflight too: the browser then never sends the request itself.
        preflight = {"Origin": origin, "Access-Control-Request-Method": "POST"}
        req = urllib.request.Request(server + "/translate", headers=preflight, method="OPTIONS")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(req, timeout=60)
        assert refused.value.code == 403
    status, _, body = send(server, "/translate", ONE, {**JSON, "Origin": server})
    assert status == 200
    assert body["output"]


@pytest.mark.parametrize(
    ("content_type", "raw"),
    [
        ("text/plain", ONE),  # a "simple request": no preflight
        ("text/plain;charset=UTF-8", ONE),
        ("application/x-www-form-urlencoded", b"text=A+dog+runs."),  # an HTML form
        ("multipart/form-data; boundary=x", b'--x\r\nContent-Disposition: form-data; name="text"'),
        (None, ONE),
    ],
)
def test_a_body_that_is_not_declared_json_is_refused(server, content_type, raw) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    status, _, body = send(server, "/translate", raw, headers)
    assert status == 415
    assert "Content-Type must be application/json" in body["error"]


def test_json_with_a_charset_is_accepted(server) -> None:
    headers = {"Content-Type": "application/json; charset=utf-8"}
    status, _, body = send(server, "/translate", ONE, headers)
    assert status == 200
    assert body["output"]


@pytest.fixture(scope="module")
def keyed_server(pipelines) -> Iterator[str]:
    policy = SecurityPolicy(
        api_keys=("alpha-key", "beta-key", "gamma-key"),
        rate_limit=3,
        cors_origins=("http://127.0.0.1:1",),
    )
    with running(create_app(pipelines, security=policy)) as base:
        yield base


def test_api_keys_are_required_except_for_the_page(keyed_server) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "alpha-key"}):
        status, head, body = send(keyed_server, "/translate", ONE, {**JSON, **headers})
        assert status == 401, headers
        assert "key" in body["error"]
        assert head["www-authenticate"].startswith("Bearer")
    status, _, _ = send(keyed_server, "/health", None, {"Authorization": "Bearer wrong"})
    assert status == 401
    for path in ("/", "/static/app.js", "/static/style.css"):
        with urllib.request.urlopen(keyed_server + path, timeout=60) as response:
            assert response.status == 200, path
    auth = {"Authorization": "Bearer beta-key"}
    status, _, body = send(keyed_server, "/translate", ONE, {**JSON, **auth})
    assert status == 200
    assert body["output"]


def test_the_rate_limit_is_per_key_with_retry_after(keyed_server) -> None:
    # Each test its own key: "alpha-key" (3 requests a minute) is spent here.
    auth = {**JSON, "Authorization": "Bearer alpha-key"}
    statuses = [send(keyed_server, "/sentiment", b'{"text": "fine"}', auth)[0] for _ in range(3)]
    assert statuses == [200, 200, 200]
    status, head, body = send(keyed_server, "/sentiment", b'{"text": "fine"}', auth)
    assert status == 429
    assert 1 <= int(head["retry-after"]) <= 20  # a token comes back every 20 s
    assert "rate limit of 3 requests a minute" in body["error"]
    # Another key has its own budget.
    other = {**JSON, "Authorization": "Bearer beta-key"}
    assert send(keyed_server, "/sentiment", b'{"text": "fine"}', other)[0] == 200


def test_an_allowed_origin_gets_cors_and_its_preflight(keyed_server) -> None:
    origin = "http://127.0.0.1:1"
    preflight = {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    req = urllib.request.Request(keyed_server + "/translate", headers=preflight, method="OPTIONS")
    with urllib.request.urlopen(req, timeout=60) as response:  # no key: a preflight has none
        assert response.status == 204
        assert response.headers["Access-Control-Allow-Origin"] == origin
        assert "POST" in response.headers["Access-Control-Allow-Methods"]
        allowed = response.headers["Access-Control-Allow-Headers"].lower()
        assert "authorization" in allowed and "content-type" in allowed
    headers = {**JSON, "Origin": origin, "Authorization": "Bearer gamma-key"}
    status, head, body = send(keyed_server, "/translate", ONE, headers)
    assert status == 200
    assert body["output"]
    assert head["access-control-allow-origin"] == origin
    # Its errors carry the header too, so its page can read them.
    status, head, _ = send(keyed_server, "/translate", ONE, {"Origin": origin, **JSON})
    assert status == 401
    assert head["access-control-allow-origin"] == origin


# The middleware alone, in-process: an ASGI call, no network.


def judge(middleware: Any, method: str = "GET", path: str = "/health", **headers: str) -> int:
    """The status `middleware` answers for a request (0: passed on to the app)."""
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "client": ("127.0.0.1", 5000),
        "headers": [(k.replace("_", "-").lower().encode(), v.encode()) for k, v in headers.items()],
    }
    return middleware.check(scope).status


def test_policy_hosts_follow_the_listen_address_and_allow_host() -> None:
    app = SecurityMiddleware(lambda *a: None, SecurityPolicy("10.0.0.5", ("Attn.Example.org",)))
    assert judge(app, host="10.0.0.5:8000") == 0
    assert judge(app, host="attn.example.org") == 0  # names are not case-sensitive
    assert judge(app, host="attn.example.org.") == 0
    assert judge(app, host="10.0.0.6:8000") == 403
    assert judge(app) == 403  # no Host at all
    # Listening on every address: any IP address names the machine; a name needs allowing.
    wide = SecurityMiddleware(lambda *a: None, SecurityPolicy("0.0.0.0"))
    assert judge(wide, host="192.168.1.20:8000") == 0
    assert judge(wide, host="[fe80::1]:8000") == 0
    assert judge(wide, host="evil.example") == 403


def test_policy_refuses_bad_settings() -> None:
    with pytest.raises(ValueError, match="not an origin"):
        SecurityPolicy(cors_origins=("http://localhost:3000/page",))
    with pytest.raises(ValueError, match="not an origin"):
        SecurityPolicy(cors_origins=("localhost:3000",))
    with pytest.raises(ValueError, match="rate_limit"):
        SecurityPolicy(rate_limit=0)
    assert SecurityPolicy(cors_origins=("HTTP://LocalHost:3000/",)).cors_origins == (
        "http://localhost:3000",
    )


def test_middleware_checks_keys_before_the_content_type() -> None:
    app = SecurityMiddleware(lambda *a: None, SecurityPolicy(api_keys=("k1",)), ["/"])
    assert judge(app, "POST", "/translate", host="localhost", content_type="text/plain") == 401
    auth = {"host": "localhost", "authorization": "Bearer k1"}
    assert judge(app, "POST", "/translate", content_type="text/plain", **auth) == 415
    assert judge(app, "POST", "/translate", content_type="application/json", **auth) == 0
    assert judge(app, "GET", "/", host="localhost") == 0
    assert judge(app, "GET", "/docs", host="localhost") == 401


def test_rate_limiter_refills_with_time() -> None:
    now = [100.0]
    limiter = RateLimiter(6, clock=lambda: now[0])  # one request every 10 s, bursts of 6
    assert [limiter.take("a") for _ in range(6)] == [0.0] * 6
    assert limiter.take("a") == pytest.approx(10.0)
    assert limiter.take("b") == 0.0  # clients have their own buckets
    now[0] += 4.0
    assert limiter.take("a") == pytest.approx(6.0)
    now[0] += 6.0
    assert limiter.take("a") == 0.0
    now[0] += 3600.0
    assert [limiter.take("a") for _ in range(7)][-1] > 0  # the burst never exceeds 6


def test_serve_options_make_the_policy(tmp_path, monkeypatch) -> None:
    from attn.cli.commands.serve import KEYS_ENV, _security

    keys = tmp_path / "keys.txt"
    keys.write_text("# keys for the team\nfirst-key\n\nsecond-key  # Anna\n")
    monkeypatch.setenv(KEYS_ENV, "env-key, other-env-key")
    policy = _security("0.0.0.0", ["attn.example.org"], ["http://localhost:3000"], keys, 30)
    assert set(policy.api_keys) == {"first-key", "second-key", "env-key", "other-env-key"}
    assert policy.rate_limit == 30
    assert policy.cors_origins == ("http://localhost:3000",)
    assert policy.allow_hosts == ("attn.example.org",)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rate-limit", "fast"], "N/min"),
        (["--rate-limit", "0/min"], "N/min"),
        (["--cors-origin", "localhost:3000"], "not an origin"),
        (["--api-key-file", "no-such-file"], "cannot read the API key file"),
    ],
)
def test_serve_refuses_bad_security_options(args, message, translate_model, monkeypatch) -> None:
    monkeypatch.delenv("ATTN_API_KEYS", raising=False)
    result = CliRunner().invoke(cli_app, ["serve", "-m", str(translate_model), *args])
    assert result.exit_code in (1, 2)
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output
