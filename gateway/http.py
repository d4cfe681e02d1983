"""The gateway's HTTP front: a plain ASGI app (no framework on the hot path).

Routes: `POST /v1/streams/{stream}/events`, `GET /healthz`, `/readyz`,
`/metrics`, `/openapi.json`.

Server and framework were chosen by measurement (`python -m bench.gateway`,
"HTTP server and framework": the same embedded gateway behind each, best of
two rounds on the shared 2-core machine, 2026-11-25). 500-event batches:
uvicorn + this plain ASGI app 11,290 events/s, uvicorn + Starlette 9,674
(0.86x), granian + this app 10,679 (0.95x); one event per request: 837 / 738
(0.88x) / 576 (0.69x). An earlier, noisier run had them within 15% either way.
The pipeline and the two fsyncs per group commit dominate, not the HTTP
layer. Plain ASGI keeps the hot path free of a framework's request objects at
no cost in code, and uvicorn runs in-process in a thread, which the embedded
demo needs; granian would add a dependency for no measured gain. End to end
with Kafka (`gateway serve`, two pairs of runs), granian's embedded server
took 0.90-0.97x uvicorn's events/s: no gain either.

uvicorn runs with uvloop and httptools (gateway/server.py). Against asyncio's
loop and h11 (2026-12-04, two runs of the bench's server table): 1.31x and 1.20x
the events/s for one event per request on the embedded gateway, 1.01x and 0.86x
for 500-event batches (that row drifts 15% between runs here), and 1.04x and
1.08x end to end with Kafka (two pairs).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
import structlog

from gateway.auth import ApiKeyStore
from gateway.errors import BatchError
from gateway.ingest import BatchResult, Ingest, error_body
from gateway.metrics import GatewayMetrics

log = structlog.get_logger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_STREAM_PREFIX = "/v1/streams/"
_EVENTS_SUFFIX = "/events"
_JSON = b"application/json"


class GatewayApp:
    """ASGI application of one gateway."""

    def __init__(
        self,
        ingest: Ingest,
        keys: ApiKeyStore,
        metrics: GatewayMetrics,
        *,
        openapi: Callable[[], dict[str, Any]],
        ready: Callable[[], dict[str, bool]],
        max_body_bytes: int = 8 * 1024 * 1024,
        on_startup: Callable[[], None] | None = None,
        on_shutdown: Callable[[], None] | None = None,
    ) -> None:
        self.ingest = ingest
        self.keys = keys
        self.metrics = metrics
        self.openapi = openapi
        self.ready = ready
        self.max_body_bytes = max_body_bytes
        self.on_startup = on_startup
        self.on_shutdown = on_shutdown

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    if self.on_startup is not None:
                        self.on_startup()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.on_shutdown is not None:
                    self.on_shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        path: str = scope["path"]
        method: str = scope["method"]
        route = "other"
        try:
            if path.startswith(_STREAM_PREFIX) and path.endswith(_EVENTS_SUFFIX):
                route = "events"
                stream = path[len(_STREAM_PREFIX) : -len(_EVENTS_SUFFIX)]
                if method != "POST":
                    result = _method_not_allowed("POST")
                else:
                    result = await self._events(scope, receive, stream)
            elif path == "/healthz":
                route = "healthz"
                result = BatchResult(200, {"status": "alive"})
            elif path == "/readyz":
                route = "readyz"
                checks = self.ready()
                ok = all(checks.values())
                result = BatchResult(200 if ok else 503, {"ready": ok, "checks": checks})
            elif path == "/metrics":
                route = "metrics"
                await _send_bytes(
                    send, 200, self.metrics.render(), b"text/plain; version=0.0.4; charset=utf-8"
                )
                self._observe(route, 200, started)
                return
            elif path == "/openapi.json":
                route = "openapi"
                result = BatchResult(200, self.openapi())
            else:
                result = BatchResult(
                    404,
                    error_body(
                        "not_found",
                        "no such endpoint; events go to POST /v1/streams/{stream}/events "
                        "(see /openapi.json)",
                    ),
                )
        except BatchError as exc:
            result = BatchResult(exc.status, error_body(exc.code, exc.message))
        except Exception as exc:
            log.exception("request_failed", route=route, error_type=type(exc).__name__)
            result = BatchResult(
                500, error_body("internal_error", "internal error; nothing was acknowledged")
            )
        headers = []
        if result.retry_after_s is not None:
            headers.append((b"retry-after", str(result.retry_after_s).encode()))
        if result.status == 405:
            headers.append((b"allow", b"POST"))
        await _send_bytes(send, result.status, orjson.dumps(result.body), _JSON, headers)
        self._observe(route, result.status, started)

    def _observe(self, route: str, status: int, started: float) -> None:
        self.metrics.requests.labels(route, str(status)).inc()
        self.metrics.request_seconds.labels(route).observe(time.perf_counter() - started)

    async def _events(self, scope: Scope, receive: Receive, stream: str) -> BatchResult:
        headers = _headers(scope)
        presented = headers.get("x-api-key")
        authorization = headers.get("authorization")
        if presented is None and authorization is not None:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() == "bearer":
                presented = token.strip()
        key = self.keys.authenticate(presented)
        if key is None:
            code = "missing_api_key" if not presented else "invalid_api_key"
            message = (
                "send the producer's API key in the X-API-Key header "
                "(or Authorization: Bearer <key>)"
                if not presented
                else "the API key is not valid for this gateway"
            )
            return BatchResult(401, error_body(code, message))
        if self.ingest.pipelines.get(stream) is None:
            return BatchResult(
                404, error_body("unknown_stream", self.ingest.unknown_stream_message(stream))
            )
        if not key.allows(stream):
            return BatchResult(
                403,
                error_body(
                    "stream_not_allowed",
                    f"API key {key.name!r} may not write to stream {stream!r}; "
                    "ask the gateway operator to scope it",
                ),
            )
        declared_length = headers.get("content-length")
        if (
            declared_length is not None
            and declared_length.isdigit()
            and int(declared_length) > self.max_body_bytes
        ):
            return _too_large(self.max_body_bytes)
        body = await _read_body(receive, self.max_body_bytes)
        if body is None:
            return _too_large(self.max_body_bytes)
        records = self.ingest.prepare(stream, body, headers.get("content-type"))
        return await self.ingest.commit_batch(stream, records)


def _too_large(limit: int) -> BatchResult:
    return BatchResult(
        413,
        error_body(
            "body_too_large",
            f"the request body is larger than {limit} bytes; split the batch",
        ),
    )


def _method_not_allowed(allowed: str) -> BatchResult:
    return BatchResult(405, error_body("method_not_allowed", f"use {allowed} on this endpoint"))


def _headers(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in scope.get("headers", ()):
        out[name.decode("latin-1").lower()] = value.decode("latin-1")
    return out


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None as soon as it exceeds `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _send_bytes(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
