"""Group commit: the durable half of the pipeline, shared by every request.

Requests hand their staged records to one committer thread, which takes all
that are waiting, appends their audit records in one durable `append_many`
(one fsync), then publishes the minimised events in one all-or-nothing group
(a Kafka transaction, or a local-log append), and only then tells each request
its events are kept. If either step fails, every request in the group is told
so (503) and nothing of it was acknowledged. A bounded queue turns overload
into 429 instead of unbounded memory.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from gateway.errors import Overloaded, PublishError, Unavailable
from gateway.idempotency import EventIdIndex
from gateway.metrics import GatewayMetrics
from gateway.publish import Publisher
from gateway.record import EventRecord

log = structlog.get_logger(__name__)


class AuditSink(Protocol):
    """The part of `audit.AuditLog` the committer uses: a durable group append."""

    def append_many(self, records: Sequence[Mapping[str, Any]]) -> Sequence[Any]: ...


Done = Callable[[BaseException | None], None]


@dataclass(slots=True)
class _Job:
    records: list[EventRecord]
    done: Done


class Committer:
    """The one thread that makes staged records durable, in groups."""

    def __init__(
        self,
        audit: AuditSink,
        publisher: Publisher,
        index: EventIdIndex,
        metrics: GatewayMetrics,
        *,
        max_pending_events: int = 50_000,
        max_group_events: int = 10_000,
        retry_after_s: int = 1,
    ) -> None:
        self.audit = audit
        self.publisher = publisher
        self.index = index
        self.metrics = metrics
        self.max_pending_events = max_pending_events
        self.max_group_events = max_group_events
        self.retry_after_s = retry_after_s
        self._jobs: deque[_Job] = deque()
        self._pending_events = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._rescan_needed = False
        self.audit_ok = True
        # Set while a placement re-check fails in enforce mode: nothing is taken (fail closed).
        self.refusing: str | None = None
        self.audit_lock = threading.Lock()  # other audit writers (policy reloads) share the log

    # -- lifecycle
    def start(self) -> None:
        """Rebuild the event-id index from the publisher's tail, then start the thread."""
        self.index.add_many(self.publisher.recent_event_ids())
        self._thread = threading.Thread(target=self._run, name="fjordgate-committer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Finish the jobs already queued, then stop the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()

    def ready(self) -> bool:
        """Whether the audit log and the publisher both took their last write."""
        return (
            self.audit_ok
            and self.publisher.ready()
            and not self._stopping
            and self.refusing is None
        )

    # -- submitting
    def submit(self, records: list[EventRecord], done: Done) -> None:
        """Queue records: `done(None)` once durable, else `done(Unavailable)`. Raises Overloaded."""
        with self._cond:
            if self._stopping:
                raise Unavailable("gateway is shutting down", retry_after_s=self.retry_after_s)
            if self.refusing is not None:
                raise Unavailable(self.refusing, retry_after_s=max(self.retry_after_s, 30))
            if (
                self._pending_events
                and self._pending_events + len(records) > self.max_pending_events
            ):
                raise Overloaded(
                    f"{self._pending_events} events are waiting to be committed; retry later",
                    retry_after_s=self.retry_after_s,
                )
            self._jobs.append(_Job(records, done))
            self._pending_events += len(records)
            self.metrics.queue_events.set(self._pending_events)
            self._cond.notify()

    async def commit(self, records: list[EventRecord]) -> None:
        """Await durability of `records` from asyncio code; raises Unavailable or Overloaded."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def resolve(exc: BaseException | None) -> None:
            if future.done():
                return
            if exc is None:
                future.set_result(None)
            else:
                future.set_exception(exc)

        def done(exc: BaseException | None) -> None:
            loop.call_soon_threadsafe(resolve, exc)

        self.submit(records, done)
        await future

    def commit_blocking(self, records: list[EventRecord]) -> None:
        """Wait until `records` are durable, from a plain thread; may raise Unavailable."""
        finished = threading.Event()
        outcome: list[BaseException | None] = []

        def done(exc: BaseException | None) -> None:
            outcome.append(exc)
            finished.set()

        self.submit(records, done)
        finished.wait()
        if outcome[0] is not None:
            raise outcome[0]

    # -- the thread
    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._jobs and not self._stopping:
                    if not self._cond.wait(timeout=1.0):
                        break
                if not self._jobs:
                    if self._stopping:
                        return
                    jobs: list[_Job] = []
                else:
                    jobs = [self._jobs.popleft()]
                    count = len(jobs[0].records)
                    while (
                        self._jobs and count + len(self._jobs[0].records) <= self.max_group_events
                    ):
                        job = self._jobs.popleft()
                        count += len(job.records)
                        jobs.append(job)
                    self._pending_events -= count
                    self.metrics.queue_events.set(self._pending_events)
            if not jobs:
                if not self.publisher.ready():
                    self.publisher.probe()
                continue
            self._commit_group(jobs)

    def _commit_group(self, jobs: list[_Job]) -> None:
        started = time.perf_counter()
        try:
            self._commit_records([r for job in jobs for r in job.records])
        except Unavailable as exc:
            for job in jobs:
                job.done(exc)
            return
        except Exception as exc:  # never leave a request waiting on a bug
            log.exception("commit_failed_unexpectedly", error_type=type(exc).__name__)
            failure = Unavailable("internal error while committing; nothing was acknowledged")
            for job in jobs:
                job.done(failure)
            return
        self.metrics.commit_seconds.observe(time.perf_counter() - started)
        for job in jobs:
            job.done(None)

    def _commit_records(self, records: list[EventRecord]) -> None:
        if self._rescan_needed:
            # A failed group may have been committed by Kafka after all: learn
            # what is really there before anything is published again. Reconnect
            # first: a new producer's init_transactions makes the coordinator finish
            # (commit or abort) whatever the old one left, so the read sees its outcome.
            if not self.publisher.probe():
                raise Unavailable(
                    "the event log (Kafka) is not reachable; nothing was acknowledged",
                    retry_after_s=self.retry_after_s,
                )
            try:
                self.index.add_many(self.publisher.recent_event_ids())
            except PublishError as exc:
                raise Unavailable(
                    f"publisher not reachable: {exc}", retry_after_s=self.retry_after_s
                ) from exc
            self._rescan_needed = False

        fresh: list[EventRecord] = []
        seen: set[str] = set()
        audit_records: list[Mapping[str, Any]] = []
        for record in records:
            if record.rejected is None:
                if record.event_id in self.index or record.event_id in seen:
                    record.status = "duplicate"
                    continue
                if record.event_id is not None:
                    seen.add(record.event_id)
                fresh.append(record)
            if record.audit is not None:
                audit_records.append(record.audit)

        if audit_records:
            started = time.perf_counter()
            try:
                with self.audit_lock:
                    self.audit.append_many(audit_records)
            except Exception as exc:
                self.audit_ok = False
                self.metrics.audit_errors.inc()
                log.error("audit_append_failed", error_type=type(exc).__name__, events=len(records))
                raise Unavailable(
                    "the audit log cannot take events now; nothing was acknowledged",
                    retry_after_s=self.retry_after_s,
                ) from exc
            self.audit_ok = True
            self.metrics.audit_fsync_seconds.observe(time.perf_counter() - started)

        messages = [r.message for r in fresh if r.message is not None]
        if messages:
            started = time.perf_counter()
            try:
                self.publisher.publish(messages)
            except PublishError as exc:
                self._rescan_needed = True
                log.warning("publish_failed", error=str(exc), events=len(messages))
                raise Unavailable(
                    "the event log (Kafka) cannot take events now; nothing was acknowledged",
                    retry_after_s=self.retry_after_s,
                ) from exc
            self.metrics.publish_seconds.observe(time.perf_counter() - started)
        self.index.add_many(r.event_id for r in fresh if r.event_id is not None)
        for r in fresh:
            r.status = "accepted"
