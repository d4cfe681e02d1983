"""Batch ingestion, independent of the HTTP server: body → records → pipeline → commit → results.

The HTTP app calls `prepare` and `commit_batch`; the benchmarks call them too,
to measure the same code without a socket in between.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.committer import Committer
from gateway.errors import BatchError, Overloaded, Unavailable
from gateway.metrics import GatewayMetrics
from gateway.native import make_records, results_json, split_array
from gateway.pipeline import PolicyPipelines
from gateway.record import EventRecord

NDJSON_TYPES = frozenset(
    {"application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines"}
)
JSON_TYPES = frozenset({"application/json"})


def _media(content_type: str | None) -> str:
    """The media type of a Content-Type header (JSON when there is none)."""
    return (content_type or "application/json").split(";", 1)[0].strip().lower()


def _empty() -> BatchError:
    return BatchError(400, "empty_batch", "the batch holds no events; send at least one")


@dataclass(slots=True)
class BatchResult:
    """What the HTTP layer sends back: status, JSON body, and Retry-After when it applies."""

    status: int
    body: dict[str, Any]
    retry_after_s: int | None = None


def error_body(code: str, message: str) -> dict[str, Any]:
    """The one error shape of every 4xx and 5xx answer."""
    return {"error": {"code": code, "message": message}}


class Ingest:
    """Runs batches of one stream through the policy's pipeline and the committer."""

    def __init__(
        self,
        pipelines: PolicyPipelines,
        committer: Committer,
        metrics: GatewayMetrics,
        *,
        max_events_per_batch: int = 10_000,
        source: str = "http",
    ) -> None:
        self.pipelines = pipelines  # replaced whole on policy reload
        self.committer = committer
        self.metrics = metrics
        self.max_events_per_batch = max_events_per_batch
        self.source = source
        self._rendered: dict[Any, tuple[Sequence[tuple[str, str]], orjson.Fragment]] = {}

    def streams(self) -> list[str]:
        return sorted(self.pipelines.pipelines)

    def prepare(self, stream: str, body: bytes, content_type: str | None) -> list[EventRecord]:
        """`parse_body`, then `run_pipeline`: the HTTP path. A JSON array of events the
        compiled core vouches for is made into records by the core itself, which finishes
        those it can as it makes them (no bytes object per event, no second pass to fill
        them in); any other body takes the two steps. Measured with the bench's 500-event
        bodies and 32 requests' records alive, as served: making, running, answering and
        freeing a request's records took 0.96x the time of the two steps (three
        alternating rounds); served, 0.99x the events/s in five alternating pairs, which
        is within this machine's noise."""
        pipeline = self.pipelines.get(stream)
        if pipeline is not None and _media(content_type) in JSON_TYPES:
            started = time.perf_counter()
            made = pipeline.run_array(body, self.source, self.max_events_per_batch)
            if made is not None:
                count, records = made
                if records is None:
                    raise self._too_many(count)
                if not records:
                    raise _empty()
                self.metrics.pipeline_seconds.labels(self.source).observe(
                    time.perf_counter() - started
                )
                return records
        records = self.parse_body(stream, body, content_type)
        self.run_pipeline(stream, records)
        return records

    def _too_many(self, count: int) -> BatchError:
        return BatchError(
            413,
            "batch_too_large",
            f"the batch holds {count} events; at most {self.max_events_per_batch} "
            "are accepted per request: split it",
        )

    def parse_body(self, stream: str, body: bytes, content_type: str | None) -> list[EventRecord]:
        """Split a request body into one record per event (raises BatchError for a bad body)."""
        media = _media(content_type)
        if media in NDJSON_TYPES:
            lines = [line for line in body.split(b"\n") if line.strip()]
            records = make_records(stream, lines)
        elif media in JSON_TYPES or media.endswith("+json"):
            events = split_array(body)
            if events is not None:  # an array of objects: the core reads their bytes
                records = make_records(stream, events)
            else:
                records = self._parsed_records(stream, body)
        else:
            raise BatchError(
                415,
                "unsupported_media_type",
                f"Content-Type {media!r} is not accepted; use application/json (an array of "
                "events) or application/x-ndjson (one event per line)",
            )
        if not records:
            raise _empty()
        if len(records) > self.max_events_per_batch:
            raise self._too_many(len(records))
        return records

    @staticmethod
    def _parsed_records(stream: str, body: bytes) -> list[EventRecord]:
        """A JSON body parsed by orjson: an array of events (any JSON values), or one object."""
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise BatchError(
                400,
                "invalid_json",
                f"the request body is not valid JSON (line {exc.lineno}, column {exc.colno}); "
                "send a JSON array of event objects, or NDJSON with "
                "Content-Type: application/x-ndjson",
            ) from None
        if isinstance(value, dict):
            value = [value]
        if not isinstance(value, list):
            raise BatchError(
                400,
                "not_a_batch",
                "the request body must be a JSON array of event objects (or one object)",
            )
        return make_records(stream, value)

    def run_pipeline(self, stream: str, records: list[EventRecord]) -> None:
        """Run every record through the stream's pipeline (rejections recorded per record)."""
        pipeline = self.pipelines.get(stream)
        if pipeline is None:
            raise BatchError(404, "unknown_stream", self.unknown_stream_message(stream))
        started = time.perf_counter()
        source = self.source
        for record in records:
            record.source = source
        pipeline.run_batch(records)
        self.metrics.pipeline_seconds.labels(self.source).observe(time.perf_counter() - started)

    def unknown_stream_message(self, stream: str) -> str:
        # The name from the path is never echoed: it is arbitrary input, and
        # could itself be personal data.
        return (
            "the stream in the path is not declared in the policy in force "
            f"(declared: {', '.join(self.streams())})"
        )

    async def commit_batch(self, stream: str, records: list[EventRecord]) -> BatchResult:
        """Group commit of records the pipeline ran; the answer says, per event, what
        happened."""
        try:
            await self.committer.commit(records)
        except Overloaded as exc:
            self.metrics.events.labels(stream, self.source, "overloaded").inc(len(records))
            return BatchResult(429, error_body("overloaded", exc.message), exc.retry_after_s)
        except Unavailable as exc:
            self.metrics.events.labels(stream, self.source, "unavailable").inc(len(records))
            return BatchResult(503, error_body("unavailable", exc.message), exc.retry_after_s)
        return self.results(stream, records)

    def results_python(
        self, records: list[EventRecord]
    ) -> tuple[Counter[str], list[dict[str, Any]]]:
        """Per event what happened, and the count per outcome (accepted, duplicate,
        denied, rejected): the reference of the compiled `results_json`."""
        counts: Counter[str] = Counter()
        results: list[dict[str, Any]] = []
        rendered = self._transformed_json
        for record in records:
            rejected = record.rejected
            if rejected is not None:
                counts["denied" if rejected.code == "denied" else "rejected"] += 1
                results.append(
                    {
                        "index": record.index,
                        "event_id": record.event_id,
                        "status": "rejected",
                        "error": {
                            "code": rejected.code,
                            "message": rejected.message,
                            "field": rejected.field,
                        },
                    }
                )
                continue
            counts[record.status] += 1
            results.append(
                {
                    "index": record.index,
                    "event_id": record.event_id,
                    "status": record.status,
                    "transformed": rendered(record.transformed),
                }
            )
        return counts, results

    def _transformed_json(self, transformed: Sequence[tuple[str, str]]) -> orjson.Fragment:
        """A record's transformed fields as the answer's JSON list, made once per distinct
        list: events of one shape list the same fields (the compiled core hands out one
        tuple per shape), and building and encoding a dict per field and event was a
        tenth of the server's main thread under load (py-spy, bench/gateway)."""
        memo = self._rendered
        if type(transformed) is tuple:
            hit = memo.get(id(transformed))
            if hit is not None and hit[0] is transformed:
                return hit[1]
            key: Any = id(transformed)
        else:
            key = tuple(transformed)
            hit = memo.get(key)
            if hit is not None:
                return hit[1]
        fragment = orjson.Fragment(
            orjson.dumps([{"field": path, "action": action} for path, action in transformed])
        )
        if len(memo) >= 1024:
            memo.clear()
        # The tuple is held with its rendering: its id cannot be reused while it is here.
        memo[key] = (transformed, fragment)
        return fragment

    def results(self, stream: str, records: list[EventRecord]) -> BatchResult:
        written = results_json(records)
        if written is not None:
            data, by_outcome = written
            counts = Counter(by_outcome)
            results: Any = orjson.Fragment(data)
        else:
            counts, results = self.results_python(records)
        # One metric update per outcome and batch: a labelled child per event cost as
        # much as a pipeline step (measured with py-spy under bench/gateway's load).
        events = self.metrics.events
        for outcome, count in counts.items():
            events.labels(stream, self.source, outcome).inc(count)
        counts["rejected"] += counts.pop("denied", 0)
        kept = counts["accepted"] + counts["duplicate"]
        body = {
            "stream": stream,
            "policy": self.pipelines.content_hash,
            "accepted": counts["accepted"],
            "duplicates": counts["duplicate"],
            "rejected": counts["rejected"],
            "results": results,
        }
        return BatchResult(200 if kept else 422, body)
