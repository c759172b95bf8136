"""`attn serve` under load: throughput, latency, errors and memory (a benchmark, not a test).

Starts `attn serve` on a free 127.0.0.1 port with the given models, then sends --requests
requests from --clients concurrent clients (threads, each with its own keep-alive
connection, stdlib `http.client` only). The mix, drawn with a fixed seed over the loaded
tasks: single texts and batches of 8 texts, plus a few bad requests (a text over the
server's character limit, a body that is not JSON, a bad option, too many texts).

Checked on every answer: a valid request gets 200 and one result per text; a bad one gets
the 4xx status it deserves with a JSON `{"error": ...}` body. The server's resident memory
(RSS, from /proc) is read after loading, after a warm-up, every half second and at the end;
it must stay within 10% of the warmed-up figure. The run is bounded by --time-limit:
requests not sent by then are counted as not sent, and the run fails.

    python bench/serve_load.py -m MODEL_DIR [-m MODEL_DIR]... [--requests 10000]
        [--clients 32] [--time-limit 900] [--threads 2]

Without -m, `attn serve` picks the default model of each task. Writes
bench/results/serve_load.json (or --out), prints a summary, exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "data" / "demo"
ATTN = str(Path(sys.executable).parent / "attn")
BATCH = 8
RSS_TOLERANCE = 0.10
# Share of each kind of request; the bad ones are a few percent in all.
MIX = {"single": 0.68, "batch": 0.28, "too_long": 0.01, "not_json": 0.01, "bad_option": 0.01}
MIX["too_many"] = 1 - sum(MIX.values())


@dataclass
class Planned:
    """One request: where it goes, its body, and the answer it must get."""

    kind: str
    path: str
    body: bytes
    status: int  # the status it must get
    texts: int  # results expected in a 200 answer (0: one result object)


@dataclass
class Outcome:
    kind: str
    path: str
    status: int  # 0: no answer (connection error)
    seconds: float
    problem: str | None


def rss_mib(pid: int) -> float:
    """Resident memory of one process, MiB (Linux /proc)."""
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def sample_texts() -> dict[str, list[str]]:
    """Input texts per task, from the demo corpora that ship with the project."""
    sentiment = (DEMO / "sentiment" / "val.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return {
        "translate": (DEMO / "translate" / "val.en").read_text(encoding="utf-8").splitlines(),
        "summarize": (DEMO / "summarize" / "val.src").read_text(encoding="utf-8").splitlines(),
        "sentiment": [line.rsplit("\t", 1)[0] for line in sentiment],
    }


def plan(n: int, tasks: list[str], limits: dict[str, int], seed: int = 0) -> list[Planned]:
    """`n` requests over `tasks`, drawn with `seed` (the same plan for the same arguments)."""
    rng = random.Random(seed)
    texts = sample_texts()
    kinds, weights = list(MIX), list(MIX.values())
    requests = []
    for _ in range(n):
        kind = rng.choices(kinds, weights)[0]
        task = rng.choice(tasks)
        path = f"/{task}"
        pool = texts[task]
        if kind == "single":
            body, status, count = {"text": rng.choice(pool)}, 200, 0
        elif kind == "batch":
            body, status, count = {"texts": rng.sample(pool, BATCH)}, 200, BATCH
        elif kind == "too_long":
            body, status, count = {"text": "a " * (limits["max_chars"] // 2 + 1)}, 413, 0
        elif kind == "too_many":
            body, status, count = {"texts": ["a"] * (limits["max_texts"] + 1)}, 413, 0
        elif kind == "bad_option":
            body, status, count = {"text": rng.choice(pool), "colour": "blue"}, 422, 0
        else:
            raw = b'{"text": "an unfinished'
            requests.append(Planned(kind, path, raw, 400, 0))
            continue
        requests.append(Planned(kind, path, json.dumps(body).encode(), status, count))
    return requests


def check(request: Planned, status: int, body: bytes) -> str | None:
    """What is wrong with an answer, or None."""
    try:
        data = json.loads(body)
    except ValueError:
        return f"{request.kind}: HTTP {status} with a body that is not JSON: {body[:80]!r}"
    if status != request.status:
        return f"{request.kind}: HTTP {status}, expected {request.status}: {str(data)[:120]}"
    if status != 200:
        if not isinstance(data, dict) or not isinstance(data.get("error"), str):
            return f"{request.kind}: HTTP {status} without an error message: {str(data)[:120]}"
        return None
    if request.texts:
        results = data.get("results") if isinstance(data, dict) else None
        if not isinstance(results, list) or len(results) != request.texts:
            return f"{request.kind}: expected {request.texts} results, got {str(data)[:120]}"
    elif not isinstance(data, dict) or not ("output" in data or "label" in data):
        return f"{request.kind}: no output in {str(data)[:120]}"
    return None


class Client:
    """One keep-alive connection; reconnects when the server closes it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn: http.client.HTTPConnection | None = None

    def send(self, request: Planned) -> Outcome:
        start = time.perf_counter()
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            try:
                self.conn.request(
                    "POST", request.path, request.body, {"Content-Type": "application/json"}
                )
                response = self.conn.getresponse()
                body = response.read()
            except (OSError, http.client.HTTPException) as e:
                self.close()
                # A keep-alive connection the server dropped between requests: one retry.
                if attempt == 0 and isinstance(e, (ConnectionError, http.client.BadStatusLine)):
                    continue
                seconds = time.perf_counter() - start
                return Outcome(request.kind, request.path, 0, seconds, f"no answer: {e!r}")
            if response.will_close:
                self.close()
            seconds = time.perf_counter() - start
            problem = check(request, response.status, body)
            return Outcome(request.kind, request.path, response.status, seconds, problem)
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def run_clients(port: int, requests: list[Planned], clients: int, deadline: float) -> list[Outcome]:
    """Send `requests` from `clients` threads until all are answered or `deadline` passes."""
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    position = 0

    def work() -> None:
        nonlocal position
        client = Client(port)
        try:
            while time.monotonic() < deadline:
                with lock:
                    if position >= len(requests):
                        return
                    request = requests[position]
                    position += 1
                outcome = client.send(request)
                with lock:
                    outcomes.append(outcome)
        finally:
            client.close()

    threads = [threading.Thread(target=work, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()) + 130)
    with lock:
        return list(outcomes)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(port: int, path: str) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def start_server(models: list[Path], port: int, threads: int, log: Path) -> subprocess.Popen:
    cmd = [ATTN, "serve", "--port", str(port), "--threads", str(threads)]
    for model in models:
        cmd += ["-m", str(model)]
    with open(log, "wb") as f:
        server = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while True:
        if server.poll() is not None:
            raise SystemExit(f"attn serve exited ({server.returncode}):\n{log.read_text()[-2000:]}")
        try:
            get_json(port, "/health")
            return server
        except OSError:
            if time.monotonic() > deadline:
                server.kill()
                raise SystemExit("attn serve did not start within 120 s") from None
            time.sleep(0.2)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-m", "--model", type=Path, action="append", default=[])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=200, help="requests before the RSS base")
    parser.add_argument("--time-limit", type=float, default=900, help="seconds for the run")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the server")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "serve_load.json")
    args = parser.parse_args(argv)

    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "serve.log"
        server = start_server(args.model, port, args.threads, log)
        try:
            health = get_json(port, "/health")
            tasks = [t for t in health["tasks"] if t in ("translate", "summarize", "sentiment")]
            rss = {"loaded": rss_mib(server.pid)}
            warm = plan(args.warmup, tasks, health["limits"], seed=args.seed + 1)
            run_clients(port, warm, args.clients, time.monotonic() + args.time_limit)
            rss["warm"] = rss_mib(server.pid)
            requests = plan(args.requests, tasks, health["limits"], seed=args.seed)

            samples: list[float] = []
            done = threading.Event()

            def sample() -> None:
                while not done.wait(0.5):
                    samples.append(rss_mib(server.pid))

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            start = time.monotonic()
            outcomes = run_clients(port, requests, args.clients, start + args.time_limit)
            seconds = time.monotonic() - start
            done.set()
            sampler.join()
            rss["end"] = rss_mib(server.pid)
            rss["max"] = max([*samples, rss["end"]])
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()

    latencies = [o.seconds * 1000 for o in outcomes if o.status]
    problems = [o.problem for o in outcomes if o.problem]
    statuses = Counter(str(o.status) for o in outcomes)
    valid = [o for o in outcomes if o.kind in ("single", "batch")]
    growth = rss["end"] / rss["warm"] - 1
    checks = {
        "all_answered": len(outcomes) == len(requests),
        "every_answer_right": not problems,
        "rss_flat": abs(growth) <= RSS_TOLERANCE,
    }
    result = {
        "benchmark": "serve_load",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {
            "cpu": cpu_name(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
        },
        "models": {t: health["models"][t]["name"] for t in tasks},
        "server_threads": args.threads,
        "requests": len(requests),
        "clients": args.clients,
        "answered": len(outcomes),
        "not_sent": len(requests) - len(outcomes),
        "seconds": round(seconds, 2),
        "requests_per_s": round(len(outcomes) / seconds, 1),
        "texts_per_s": round(sum(BATCH if o.kind == "batch" else 1 for o in valid) / seconds, 1),
        "latency_ms": {
            "p50": round(percentile(latencies, 0.5), 1),
            "p90": round(percentile(latencies, 0.9), 1),
            "p99": round(percentile(latencies, 0.99), 1),
            "max": round(max(latencies, default=float("nan")), 1),
        },
        "latency_ms_by_kind": {
            kind: {
                "p50": round(percentile(ms, 0.5), 1),
                "p99": round(percentile(ms, 0.99), 1),
            }
            for kind in MIX
            if (ms := [o.seconds * 1000 for o in outcomes if o.kind == kind and o.status])
        },
        # Valid requests only: what a client of each model waits.
        "latency_ms_by_task": {
            path.lstrip("/"): {
                kind: {"p50": round(percentile(ms, 0.5), 1), "p99": round(percentile(ms, 0.99), 1)}
                for kind in ("single", "batch")
                if (ms := [o.seconds * 1000 for o in valid if o.kind == kind and o.path == path])
            }
            for path in sorted({o.path for o in valid})
        },
        "requests_by_kind": dict(Counter(o.kind for o in outcomes)),
        "status": dict(sorted(statuses.items())),
        "errors_by_status": {s: n for s, n in sorted(statuses.items()) if s != "200"},
        "problems": len(problems),
        "problem_examples": problems[:10],
        "rss_mib": {k: round(v, 1) for k, v in rss.items()},
        "rss_growth": round(growth, 4),
        "rss_samples": len(samples),
        "rss_series_mib": [round(v, 1) for v in samples],
        "checks": checks,
        "ok": all(checks.values()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    lat = result["latency_ms"]
    print(
        f"{result['answered']}/{result['requests']} requests in {result['seconds']} s from "
        f"{args.clients} clients: {result['requests_per_s']} requests/s "
        f"({result['texts_per_s']} texts/s); latency p50 {lat['p50']} ms, p99 {lat['p99']} ms"
    )
    print(f"statuses: {result['status']}; problems: {len(problems)}")
    for problem in problems[:10]:
        print(f"  {problem}")
    r = result["rss_mib"]
    print(
        f"server RSS: {r['loaded']} MiB loaded, {r['warm']} warm, {r['end']} at the end "
        f"(max {r['max']}; {100 * growth:+.1f}%)"
    )
    print(f"checks: {checks} -> {'ok' if result['ok'] else 'FAILED'}; wrote {args.out}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
