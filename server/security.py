"""Who may use `attn serve`: the checks every HTTP request passes before a route sees it.

A pure ASGI middleware (`SecurityMiddleware`) applies a `SecurityPolicy`, in this order:

1. Host: the `Host` header names the address the server listens on, `localhost`,
   `127.0.0.1` or `[::1]` (any port), or a name the policy allows. A page on another site
   that rebinds its own name to 127.0.0.1 (DNS rebinding) sends its own name, and gets 403.
2. Origin: a browser request from another origin (`Origin` other than the server's own) gets
   403, unless the policy allows that origin: then it is answered with CORS headers, and a
   preflight (OPTIONS) is answered here.
3. API keys (when the policy has any): `Authorization: Bearer KEY` on every path but the
   page's static files (401 otherwise); keys are compared in constant time.
4. Rate limit (when set): requests per minute per key (per client address without keys),
   a token bucket; 429 with `Retry-After` past it.
5. Content-Type: a request with a body (POST) must be `application/json` (415 otherwise), so
   an HTML form or a `text/plain` "simple request" cannot start work.

A refusal is `{"error": "..."}` with its status, as the API's other errors are.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import math
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
# Listening on every address: clients name the machine by any of its IP addresses.
WILDCARD_HOSTS = ("0.0.0.0", "::", "")
_BODY_METHODS = ("POST", "PUT", "PATCH")
_PREFLIGHT_MAX_AGE = "600"


def normalize_origin(origin: str) -> str:
    """`scheme://host[:port]`, lower-cased, as a browser sends it in `Origin`.

    Raises:
        ValueError: not an http(s) origin (a path, a query or no host).
    """
    text = origin.strip().rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path or parts.query:
        raise ValueError(
            f"{origin!r} is not an origin: give scheme://host[:port], e.g. http://localhost:3000"
        )
    return f"{parts.scheme}://{parts.netloc}".lower()


def host_name(host_header: str) -> str:
    """The name in a `Host` header, without its port: `[::1]:8000` -> `::1`."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def parse_keys(text: str) -> list[str]:
    """API keys from text: one a line, or separated by commas or spaces; `#` starts a comment."""
    keys = []
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        keys += [key for key in line.replace(",", " ").split() if key]
    return keys


@dataclass(frozen=True)
class SecurityPolicy:
    """What `SecurityMiddleware` lets through.

    Args:
        listen_host: the address the server listens on (its name is an allowed Host).
        allow_hosts: other allowed Host names (a real name behind a proxy).
        cors_origins: origins whose browser requests are allowed and answered with CORS.
        api_keys: when not empty, every request but the page's files needs one of them.
        rate_limit: requests per minute per key (per client address without keys); None: no
            limit.
    """

    listen_host: str = "127.0.0.1"
    allow_hosts: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()
    api_keys: tuple[str, ...] = ()
    rate_limit: int | None = None

    def __post_init__(self) -> None:
        origins = tuple(normalize_origin(o) for o in self.cors_origins)
        object.__setattr__(self, "cors_origins", origins)
        hosts = tuple(host_name(h) for h in self.allow_hosts)
        object.__setattr__(self, "allow_hosts", hosts)
        for key in self.api_keys:
            if not key or any(c.isspace() for c in key):
                raise ValueError("an API key must be a non-empty word without spaces")
        if self.rate_limit is not None and (
            isinstance(self.rate_limit, bool) or self.rate_limit < 1
        ):
            raise ValueError(f"rate_limit must be a positive integer, got {self.rate_limit!r}")

    def host_allowed(self, name: str) -> bool:
        """Whether a Host header's name (see `host_name`) may reach the server."""
        allowed = {*LOOPBACK_NAMES, host_name(self.listen_host), *self.allow_hosts}
        if name in allowed:
            return True
        if self.listen_host.strip("[]") in WILDCARD_HOSTS:
            # An IP address cannot be rebound to another server, unlike a name.
            try:
                ipaddress.ip_address(name)
            except ValueError:
                return False
            return True
        return False


class RateLimiter:
    """A token bucket per client: `per_minute` requests a minute, in bursts of that many.

    Args:
        per_minute: requests a minute.
        clock: seconds, monotonic (tests pass their own).
    """

    _MAX_CLIENTS = 10_000

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0  # tokens a second
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, time)

    def take(self, client: str) -> float:
        """0 when `client` may go on (one request is counted), else the seconds to wait."""
        now = self.clock()
        tokens, then = self._buckets.get(client, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - then) * self.rate)
        if tokens >= 1:
            if len(self._buckets) >= self._MAX_CLIENTS:
                self._forget_idle(now)
            self._buckets[client] = (tokens - 1, now)
            return 0.0
        self._buckets[client] = (tokens, now)
        return (1 - tokens) / self.rate

    def _forget_idle(self, now: float) -> None:
        # A client whose bucket has filled up again is as good as new.
        full = [c for c, (t, at) in self._buckets.items() if t + (now - at) * self.rate >= 1]
        for client in full if full else list(self._buckets)[: self._MAX_CLIENTS // 2]:
            del self._buckets[client]


@dataclass
class Verdict:
    """What the middleware does with one request: refuse it (`status` > 0), answer a
    preflight (`preflight`), or pass it on; `headers` go on the response either way."""

    status: int = 0
    error: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    preflight: bool = False


class SecurityMiddleware:
    """Applies a `SecurityPolicy` to every HTTP request of the wrapped ASGI app.

    Args:
        app: the ASGI app.
        policy: what is allowed.
        open_paths: paths served without an API key (the page and its files).
        clock: for the rate limit (tests pass their own).
    """

    def __init__(
        self,
        app: ASGIApp,
        policy: SecurityPolicy,
        open_paths: Iterable[str] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.policy = policy
        self.open_paths = frozenset(open_paths)
        self.limiter = RateLimiter(policy.rate_limit, clock) if policy.rate_limit else None
        self._key_digests = [_digest(key) for key in policy.api_keys]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        verdict = self.check(scope)
        if verdict.status or verdict.preflight:
            await _answer(send, verdict)
            return
        if not verdict.headers:
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_encode(verdict.headers)]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def check(self, scope: Scope) -> Verdict:
        """The verdict on one request (`scope` of an ASGI HTTP request)."""
        headers = _headers(scope)
        host = headers.get("host")
        if host is None:
            return Verdict(403, "the request has no Host header")
        if not self.policy.host_allowed(host_name(host)):
            return Verdict(
                403,
                f"Host {host!r} is not allowed: use localhost or the address the server "
                "listens on (attn serve --allow-host NAME allows another name)",
            )
        verdict = self._check_origin(headers.get("origin"), host)
        if verdict.status:
            return verdict
        method = scope["method"]
        if method == "OPTIONS" and verdict.headers and "access-control-request-method" in headers:
            verdict.preflight = True
            verdict.headers += [
                ("Access-Control-Allow-Methods", "GET, POST"),
                ("Access-Control-Allow-Headers", "Authorization, Content-Type"),
                ("Access-Control-Max-Age", _PREFLIGHT_MAX_AGE),
            ]
            return verdict
        if scope["path"] not in self.open_paths:
            refusal = self._check_key_and_rate(headers.get("authorization"), scope)
            if refusal.status:
                refusal.headers = verdict.headers + refusal.headers
                return refusal
        if method in _BODY_METHODS:
            media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if media_type != "application/json":
                shown = media_type or "none"
                verdict.status = 415
                verdict.error = f"Content-Type must be application/json, not {shown}"
        return verdict

    def _check_origin(self, origin: str | None, host: str) -> Verdict:
        if origin is None or urlsplit(origin).netloc.lower() == host.strip().lower():
            return Verdict()
        if origin.lower() in self.policy.cors_origins:
            return Verdict(headers=[("Access-Control-Allow-Origin", origin), ("Vary", "Origin")])
        return Verdict(
            403,
            f"cross-origin request from {origin} refused "
            "(attn serve --cors-origin ORIGIN allows one)",
        )

    def _check_key_and_rate(self, authorization: str | None, scope: Scope) -> Verdict:
        client = (scope.get("client") or ("unknown", 0))[0]
        if self._key_digests:
            scheme, _, given = (authorization or "").partition(" ")
            if scheme.lower() != "bearer" or not given.strip():
                return Verdict(
                    401,
                    "an API key is needed: send Authorization: Bearer KEY",
                    [("WWW-Authenticate", "Bearer")],
                )
            digest = _digest(given.strip())
            # Every key is compared, so the time taken does not tell which one nearly matched.
            matched = [hmac.compare_digest(digest, known) for known in self._key_digests]
            if not any(matched):
                invalid = [("WWW-Authenticate", 'Bearer error="invalid_token"')]
                return Verdict(401, "the API key is not valid", invalid)
            client = f"key {matched.index(True)}"
        if self.limiter is not None:
            wait = self.limiter.take(client)
            if wait > 0:
                seconds = max(1, math.ceil(wait))
                return Verdict(
                    429,
                    f"over the rate limit of {self.policy.rate_limit} requests a minute; "
                    f"retry in {seconds} s",
                    [("Retry-After", str(seconds))],
                )
        return Verdict()


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _headers(scope: Scope) -> dict[str, str]:
    # The first of each name: a request that repeats Host or Origin is judged by the first.
    out: dict[str, str] = {}
    for name, value in scope.get("headers", []):
        out.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
    return out


def _encode(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]


async def _answer(send: Send, verdict: Verdict) -> None:
    if verdict.preflight:
        status, body, headers = 204, b"", list(verdict.headers)
    else:
        status = verdict.status
        body = json.dumps({"error": verdict.error}).encode()
        headers = [*verdict.headers, ("Content-Type", "application/json")]
    headers.append(("Content-Length", str(len(body))))
    await send({"type": "http.response.start", "status": status, "headers": _encode(headers)})
    await send({"type": "http.response.body", "body": body})
