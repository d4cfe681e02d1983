"""The gateway app as a server process loads it, for the server comparison.

    FJG_BENCH_DIR=... FJG_BENCH_DIGEST=sha256:... FJG_BENCH_APP=plain|starlette \
        uvicorn bench.gateway.apps:app      (or: granian --interface asgi bench.gateway.apps:app)

An embedded gateway (audit log with fsync, local log with fsync, the shipped
norway-strict policy) behind either the plain ASGI app the gateway ships or
the same ingestion mounted in Starlette, so only the HTTP layer differs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson

from audit import AuditLog, SigningKey
from gateway import ApiKey, Gateway, LocalLogPublisher
from gateway.demo import TAGGED_TOPIC, norway_strict_pack
from gateway.errors import BatchError
from gateway.ingest import error_body
from gateway.pii import Keyring
from processor import LocalLog


def build_gateway(directory: Path, digest: str) -> Gateway:
    directory.mkdir(parents=True, exist_ok=True)
    audit = AuditLog.open(directory / "audit", SigningKey.generate())
    log = LocalLog.open(directory / "log", partitions=2)
    publisher = LocalLogPublisher(log, [TAGGED_TOPIC], partitions=2)
    gateway = Gateway(
        policy_path=norway_strict_pack(),
        keyring=Keyring.ephemeral(),
        audit=audit,
        publisher=publisher,
        destination=publisher.destination,
        api_keys=[ApiKey("bench", digest, frozenset({"norway-traffic"}))],
    )
    gateway.start(watch_policy=False)
    return gateway


def starlette_app(gateway: Gateway) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def events(request: Request) -> Response:
        ingest = gateway.app.ingest
        key = gateway.keys.authenticate(request.headers.get("x-api-key"))
        stream = request.path_params["stream"]
        if key is None or not key.allows(stream):
            return Response(orjson.dumps(error_body("invalid_api_key", "no")), status_code=401)
        try:
            records = ingest.prepare(
                stream, await request.body(), request.headers.get("content-type")
            )
            result = await ingest.commit_batch(stream, records)
        except BatchError as exc:
            return Response(orjson.dumps(error_body(exc.code, exc.message)), status_code=exc.status)
        return Response(
            orjson.dumps(result.body), status_code=result.status, media_type="application/json"
        )

    return Starlette(routes=[Route("/v1/streams/{stream}/events", events, methods=["POST"])])


def _from_env() -> Any:
    directory = os.environ.get("FJG_BENCH_DIR")
    if not directory:
        return None
    gateway = build_gateway(Path(directory) / str(os.getpid()), os.environ["FJG_BENCH_DIGEST"])
    if os.environ.get("FJG_BENCH_APP") == "starlette":
        return starlette_app(gateway)
    return gateway.app


app = _from_env()
