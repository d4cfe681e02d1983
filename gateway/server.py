"""Running the gateway's ASGI app: uvicorn in the foreground (`serve`) or in a thread (demo, tests).

uvicorn was chosen by measurement over granian for this app (numbers in
gateway/http.py's docstring and bench/gateway): equal within noise, and
uvicorn runs in-process in a thread, which the embedded demo needs.
"""

from __future__ import annotations

import gc
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

from gateway.errors import GatewayError


def tune_gc(gen0_threshold: int = 100_000) -> None:
    """Tune the cyclic garbage collector for serving, once start-up is done.

    Every event allocates a few dicts that live until its batch is answered; with
    the default threshold (700) the collector ran many times per batch and each
    time walked every long-lived object of start-up (policy, models, modules).
    Freezing moves those out of its sight, and a higher first threshold makes it
    run less often; the objects of a batch are freed by reference counting anyway.
    Measured on the pipeline benchmark: a third less time per event. The same
    advice as CPython's `gc.freeze` documentation gives for pre-fork servers.

    The threshold is 100,000 allocations. Under load a batch's records wait
    for their group commit, so at 10,000 most young objects were still alive
    at each collection. The collector walked them again and promoted them:
    perf put 5% (4 clients) to 12% (16 clients) of the served gateway's CPU
    in it. At 100,000 most have been freed before it runs, and it fell to
    0.3%. Events/s and latency did not measurably change: in runs alternating
    the two thresholds on one broker, the machine's drift between runs (up to
    1.5x) was larger than any difference, and whichever ran second in a pair
    had the lower latency.
    """
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0_threshold, gen1, gen2)


class ServerThread:
    """uvicorn serving an app on 127.0.0.1 (port 0: any free port) in a daemon thread."""

    def __init__(
        self,
        app: Any,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
    ) -> None:
        self.config = uvicorn_config(app, host=host, port=port, tls_cert=tls_cert, tls_key=tls_key)
        self.server = uvicorn.Server(self.config)
        self._thread = threading.Thread(target=self.server.run, name="fjordgate-http", daemon=True)
        self.scheme = "https" if tls_cert else "http"

    def start(self, timeout_s: float = 30.0) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise GatewayError("the HTTP server did not start (is the port in use?)")
            time.sleep(0.02)
        return self

    @property
    def port(self) -> int:
        sockets = self.server.servers[0].sockets
        return int(sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.config.host}:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=15)


def uvicorn_config(
    app: Any,
    *,
    host: str,
    port: int,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        # uvloop's event loop and httptools' parser (uvicorn's "standard" set) in place of
        # asyncio's loop and h11: 1.04x and 1.08x the events/s end to end with Kafka, at
        # 15.2 and 14.5 µs of gateway CPU per event against 15.6 and 16.1 (bench/gateway's
        # 16 clients, two pairs alternating on one broker, 2026-12-04).
        loop="uvloop",
        http="httptools",
        lifespan="on",
        log_level="warning",
        access_log=False,  # an access log line per request adds nothing the metrics lack
        ssl_certfile=str(tls_cert) if tls_cert else None,
        ssl_keyfile=str(tls_key) if tls_key else None,
        timeout_graceful_shutdown=10,
        limit_concurrency=1000,
    )
