"""Group commit: the durable half of the pipeline, shared by every request.

Requests hand their staged records to a committer lane, a thread which takes
the jobs that are waiting, appends their audit records in one durable
`append_many` (one fsync), then publishes the minimised events in one
all-or-nothing group (a Kafka transaction, or a local-log append), and only
then tells each request its events are kept. If either step fails, every
request in the group is told so (503) and nothing of it was acknowledged. A
bounded queue turns overload into 429 instead of unbounded memory.

Lanes: with several publishers (one Kafka transactional producer each), as
many groups are committed at once. A Kafka transaction's commit waits tens of
milliseconds for the broker whatever its size (measured: 40-80 ms on the
benchmark machine, for 1 or 3,000 messages), so one lane spends most of its
time waiting; two lanes doubled the transactions' throughput (measured with bare
transactional producers; end to end the gateway's own CPU limits first, see
bench/gateway). The event-id index stays exact across lanes: an id is *claimed*
by the group that carries it until that group's outcome is known, and a job
holding a claimed id waits for it. After a failed commit (whose outcome Kafka may
still decide either way) every lane reads the committed tail again before its next
group.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from audit.log import AuditRecord
from gateway.errors import Overloaded, PublishError, Unavailable
from gateway.idempotency import IdIndex
from gateway.metrics import GatewayMetrics
from gateway.publish import Publisher
from gateway.record import EventRecord

log = structlog.get_logger(__name__)


class AuditSink(Protocol):
    """The part of `audit.AuditLog` the committer uses: a durable group append."""

    def append_many(self, records: Sequence[AuditRecord]) -> Sequence[Any]: ...


Done = Callable[[BaseException | None], None]


@dataclass(slots=True)
class _Job:
    records: list[EventRecord]
    done: Done
    live: list[EventRecord]  # the records no step rejected
    ids: list[str | None]  # their event ids, in order
    distinct: bool  # every live record has an id, and no id repeats in the job


@dataclass(slots=True)
class _Group:
    """What a lane commits at once: whole jobs; of their live records, those that
    claimed their id (`first`) and those ids; whether any job repeated an id."""

    jobs: list[_Job] = field(default_factory=list)
    first: list[EventRecord] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    repeats: bool = False


def _job(records: list[EventRecord], done: Done) -> _Job:
    live = [r for r in records if r.rejected is None]
    ids = [r.event_id for r in live]
    distinct = None not in ids and len(set(ids)) == len(ids)
    return _Job(records, done, live, ids, distinct)


class Committer:
    """The lanes (threads) that make staged records durable, in groups."""

    def __init__(
        self,
        audit: AuditSink,
        publisher: Publisher | Sequence[Publisher],
        index: IdIndex,
        metrics: GatewayMetrics,
        *,
        max_pending_events: int = 50_000,
        max_group_events: int = 10_000,
        retry_after_s: int = 1,
    ) -> None:
        self.audit = audit
        self.publishers: list[Publisher] = (
            list(publisher) if isinstance(publisher, Sequence) else [publisher]
        )
        if not self.publishers:
            raise ValueError("a committer needs at least one publisher")
        self.publisher = self.publishers[0]  # reads the committed tail (index, rescans)
        self.index = index
        self.metrics = metrics
        self.max_pending_events = max_pending_events
        self.max_group_events = max_group_events
        self.retry_after_s = retry_after_s
        self._jobs: deque[_Job] = deque()
        self._pending_events = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._threads: list[threading.Thread] = []
        # Per lane, the ids of its group in flight: a job holding one waits.
        self._claimed: list[set[str]] = [set() for _ in self.publishers]
        self._rescan_needed = False
        self._rescan_lock = threading.Lock()
        self._doubtful: set[int] = set()  # lanes whose last commit failed
        self.audit_ok = True
        # Set while a placement re-check fails in enforce mode: nothing is taken (fail closed).
        self.refusing: str | None = None

    # -- lifecycle
    def start(self) -> None:
        """Rebuild the event-id index from the publisher's tail, then start the lanes."""
        self.index.add_many(self.publisher.recent_event_ids())
        for lane in range(len(self.publishers)):
            thread = threading.Thread(
                target=self._run,
                args=(lane,),
                name=f"fjordgate-committer-{lane}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Finish the jobs already queued, then stop the lanes."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join()

    def ready(self) -> bool:
        """Whether the audit log and every publisher took their last write."""
        return (
            self.audit_ok
            and all(p.ready() for p in self.publishers)
            and not self._stopping
            and self.refusing is None
        )

    # -- submitting
    def submit(self, records: list[EventRecord], done: Done) -> None:
        """Queue records: `done(None)` once durable, else `done(Unavailable)`. Raises Overloaded."""
        job = _job(records, done)  # its passes over the records, outside the lock
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
            self._jobs.append(job)
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

    # -- the lanes
    def _run(self, lane: int) -> None:
        publisher = self.publishers[lane]
        while True:
            with self._cond:
                group = self._take(lane)
                while group is None and not self._stopping:
                    if not self._cond.wait(timeout=1.0):
                        break
                    group = self._take(lane)
                if group is None and self._stopping and not self._jobs:
                    return
            if group is None:
                if not publisher.ready():
                    publisher.probe()
                continue
            self._commit_group(lane, group)

    def _take(self, lane: int) -> _Group | None:
        """Under the lock: the waiting jobs this lane can commit now (up to a group's
        size), and of their records those that claimed their id (the rest repeat an
        id earlier in the same job).

        A job holding an id that a group in flight (this one included) has claimed
        stays queued until that group's outcome is known (a retry racing its original,
        which is rare). Jobs whose ids are distinct are claimed with set operations,
        not a pass per record: the passes over a group's records were a tenth of the
        GIL's time under bench/gateway's load (py-spy).
        """
        group = _Group()
        count = 0
        kept: deque[_Job] = deque()
        claimed = self._claimed
        mine = claimed[lane]  # empty: the lane's last group was settled
        while self._jobs:
            job = self._jobs.popleft()
            size = len(job.records)
            if group.jobs and count + size > self.max_group_events:
                kept.append(job)
                break
            ids = job.ids
            if not all(lane_ids.isdisjoint(ids) for lane_ids in claimed):
                kept.append(job)  # waits for a group in flight
                continue
            group.jobs.append(job)
            count += size
            if job.distinct:
                mine.update(ids)  # type: ignore[arg-type]  # distinct: no None among them
                group.first.extend(job.live)
                group.ids.extend(ids)  # type: ignore[arg-type]
                continue
            group.repeats = True
            for record, event_id in zip(job.live, ids, strict=True):
                if event_id is None:
                    group.first.append(record)
                elif event_id not in mine:
                    mine.add(event_id)
                    group.first.append(record)
                    group.ids.append(event_id)
        kept.extend(self._jobs)
        self._jobs = kept
        if not group.jobs:
            return None
        self._pending_events -= count
        self.metrics.queue_events.set(self._pending_events)
        return group

    def _commit_group(self, lane: int, group: _Group) -> None:
        started = time.perf_counter()
        jobs = group.jobs
        try:
            self._commit_records(lane, group)
        except Unavailable as exc:
            for job in jobs:
                job.done(exc)
            return
        except Exception as exc:  # never leave a request waiting on a bug
            log.exception("commit_failed_unexpectedly", error_type=type(exc).__name__)
            # Whatever it got to, Kafka may hold some of the group: read the tail again.
            self._settle(lane, [], ok=False)
            failure = Unavailable("internal error while committing; nothing was acknowledged")
            for job in jobs:
                job.done(failure)
            return
        self.metrics.commit_seconds.observe(time.perf_counter() - started)
        for job in jobs:
            job.done(None)

    def _rescan(self) -> None:
        """Learn what Kafka really holds after a failed commit, before anything more is
        published: the failed lanes reconnect (a new producer's init_transactions makes
        the coordinator finish, commit or abort, whatever the old one left), then the
        committed tail is read into the index. Until then no lane decides what is a
        duplicate: every group starts with this."""
        with self._rescan_lock:
            with self._cond:
                if not self._rescan_needed:
                    return
                doubtful = set(self._doubtful)
            for lane in sorted(doubtful):
                if not self.publishers[lane].probe():
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
            with self._cond:
                self._doubtful -= doubtful
                self._rescan_needed = bool(self._doubtful)
                self._cond.notify_all()

    def _release(self, lane: int, event_ids: list[str] | None = None) -> None:
        """Free ids of the lane's group that were not published (nothing of them is in
        doubt): `event_ids`, or all of them."""
        with self._cond:
            if event_ids is None:
                self._claimed[lane].clear()
            else:
                self._claimed[lane].difference_update(event_ids)
            self._cond.notify_all()

    def _classify(self, lane: int, group: _Group) -> tuple[list[EventRecord], list[str]]:
        """Once the index is current: the events to publish and their ids; the others
        are duplicates (their status says so)."""
        if not group.repeats and self.index.isdisjoint(group.ids):
            return group.first, group.ids  # the common case: every live record is new
        fresh: list[EventRecord] = []
        fresh_ids: list[str] = []
        published: list[str] = []
        firsts = {id(r) for r in group.first}
        index = self.index
        for job in group.jobs:
            for record in job.live:
                event_id = record.event_id
                if id(record) not in firsts:
                    record.status = "duplicate"  # the same id earlier in its job
                elif event_id is not None and event_id in index:
                    record.status = "duplicate"  # published before
                    published.append(event_id)
                else:
                    fresh.append(record)
                    if event_id is not None:
                        fresh_ids.append(event_id)
        self._release(lane, published)
        return fresh, fresh_ids

    def _settle(self, lane: int, fresh_ids: list[str], *, ok: bool) -> None:
        """Record a group's outcome: its ids join the index; or, as a failed commit may
        still have been committed, the tail must be read again before the next group."""
        if ok:
            self.index.add_many(fresh_ids)
        with self._cond:
            self._claimed[lane].clear()
            if not ok:
                self._doubtful.add(lane)
                self._rescan_needed = True
            self._cond.notify_all()

    def _commit_records(self, lane: int, group: _Group) -> None:
        try:
            if self._rescan_needed:
                self._rescan()
            fresh, fresh_ids = self._classify(lane, group)
            # Refusals and new events: a duplicate was decided and audited the first time.
            self._append_audit(
                [
                    r.audit
                    for job in group.jobs
                    for r in job.records
                    if r.audit is not None and r.status != "duplicate"
                ]
            )
        except Unavailable:
            self._release(lane)  # nothing was published: the ids are free again
            raise
        messages = [r.message for r in fresh if r.message is not None]
        if messages:
            started = time.perf_counter()
            try:
                self.publishers[lane].publish(messages)
            except PublishError as exc:
                self._settle(lane, fresh_ids, ok=False)
                log.warning("publish_failed", error=str(exc), events=len(messages), lane=lane)
                raise Unavailable(
                    "the event log (Kafka) cannot take events now; nothing was acknowledged",
                    retry_after_s=self.retry_after_s,
                ) from exc
            self.metrics.publish_seconds.observe(time.perf_counter() - started)
        self._settle(lane, fresh_ids, ok=True)
        for r in fresh:
            r.status = "accepted"

    def _append_audit(self, audit_records: list[AuditRecord]) -> None:
        if not audit_records:
            return
        started = time.perf_counter()
        try:
            # Lanes append at once: the log gathers concurrent appends into one fsync.
            self.audit.append_many(audit_records)
        except Exception as exc:
            self.audit_ok = False
            self.metrics.audit_errors.inc()
            log.error(
                "audit_append_failed", error_type=type(exc).__name__, events=len(audit_records)
            )
            raise Unavailable(
                "the audit log cannot take events now; nothing was acknowledged",
                retry_after_s=self.retry_after_s,
            ) from exc
        self.audit_ok = True
        self.metrics.audit_fsync_seconds.observe(time.perf_counter() - started)
