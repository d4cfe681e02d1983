"""Committer lanes: groups committed at once, the event-id index exact across them.

The publishers here are in-memory stand-ins for one shared log (a Kafka topic):
the claims are about the committer's bookkeeping, not about Kafka, which the
crash and outage tests (test_crash.py, test_kafka.py) exercise with real brokers.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest

from gateway.committer import Committer
from gateway.errors import EventRejected, PublishError, Unavailable
from gateway.idempotency import EventIdIndex
from gateway.metrics import GatewayMetrics
from gateway.record import EventRecord, OutgoingMessage

WAIT_S = 30.0  # generous: a hang fails the test with a message, it is not a timing claim


class SharedLog:
    """What several lanes publish to: committed messages' event ids, in order."""

    def __init__(self) -> None:
        self.committed: list[str] = []
        self.lock = threading.Lock()
        self.read_upto = 0
        self.fail_next: str | None = None  # "lost" (nothing kept) or "kept" (committed anyway)

    def tail(self) -> list[str]:
        with self.lock:
            new = self.committed[self.read_upto :]
            self.read_upto = len(self.committed)
            return new


class LanePublisher:
    """One lane's publisher; `hold` makes publish wait until released."""

    destination = "memory://log"

    def __init__(self, log: SharedLog) -> None:
        self.log = log
        self.hold = threading.Event()
        self.hold.set()
        self.publishing = threading.Event()
        self.probes = 0

    def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        self.publishing.set()
        assert self.hold.wait(WAIT_S), "publish held too long"
        with self.log.lock:
            failure, self.log.fail_next = self.log.fail_next, None
            if failure != "lost":
                self.log.committed.extend(m.event_id for m in messages)
        if failure is not None:
            raise PublishError(f"simulated commit failure ({failure})")

    def recent_event_ids(self) -> Iterator[str]:
        return iter(self.log.tail())

    def ready(self) -> bool:
        return True

    def probe(self) -> bool:
        self.probes += 1
        return True

    def close(self) -> None:
        pass


class Audit:
    def __init__(self) -> None:
        self.records: list[Mapping[str, Any]] = []
        self.lock = threading.Lock()

    def append_many(self, records: Sequence[Mapping[str, Any]]) -> Sequence[Any]:
        with self.lock:
            self.records.extend(records)
        return []


def records(*event_ids: str) -> list[EventRecord]:
    out = []
    for i, event_id in enumerate(event_ids):
        r = EventRecord("s", i)
        r.event_id = event_id
        r.audit = {"type": "decision", "event_id": event_id}
        r.message = OutgoingMessage("t", None, b"{}", [], event_id)
        out.append(r)
    return out


class Submitted:
    """A job's outcome, from the committer's callback."""

    def __init__(self, committer: Committer, batch: list[EventRecord]) -> None:
        self.batch = batch
        self.finished = threading.Event()
        self.error: BaseException | None = None
        committer.submit(batch, self._done)

    def _done(self, exc: BaseException | None) -> None:
        self.error = exc
        self.finished.set()

    def wait(self) -> Submitted:
        assert self.finished.wait(WAIT_S), "the committer never answered"
        return self

    @property
    def statuses(self) -> list[str]:
        return [r.status for r in self.batch]


@pytest.fixture
def lanes() -> Iterator[tuple[Committer, list[LanePublisher], SharedLog, Audit]]:
    log = SharedLog()
    publishers = [LanePublisher(log), LanePublisher(log)]
    audit = Audit()
    committer = Committer(audit, publishers, EventIdIndex(), GatewayMetrics())
    committer.start()
    yield committer, publishers, log, audit
    for p in publishers:
        p.hold.set()
    committer.stop()


def test_two_lanes_commit_two_groups_at_once(
    lanes: tuple[Committer, list[LanePublisher], SharedLog, Audit],
) -> None:
    committer, publishers, log, _ = lanes
    for p in publishers:
        p.hold.clear()
    first = Submitted(committer, records("a1", "a2"))
    assert any(p.publishing.wait(WAIT_S) for p in publishers)
    second = Submitted(committer, records("b1"))
    # Both lanes are inside publish at the same time: neither group waited for the other.
    assert all(p.publishing.wait(WAIT_S) for p in publishers)
    for p in publishers:
        p.hold.set()
    assert first.wait().error is None and second.wait().error is None
    assert first.statuses == ["accepted", "accepted"] and second.statuses == ["accepted"]
    assert sorted(log.committed) == ["a1", "a2", "b1"]


@pytest.mark.parametrize("original_outcome", ["committed", "lost"])
def test_a_retry_racing_its_original_waits_for_the_outcome_and_is_published_once(
    lanes: tuple[Committer, list[LanePublisher], SharedLog, Audit], original_outcome: str
) -> None:
    committer, publishers, log, audit = lanes
    for p in publishers:
        p.hold.clear()
    original = Submitted(committer, records("x", "y"))
    assert any(p.publishing.wait(WAIT_S) for p in publishers)
    busy = next(p for p in publishers if p.publishing.is_set())
    other = next(p for p in publishers if p is not busy)
    retry = Submitted(committer, records("x", "z"))
    # The other lane is free, yet it does not take the retry while "x" is in flight.
    assert not other.publishing.wait(0.3)
    if original_outcome == "lost":
        log.fail_next = "lost"
    busy.hold.set()
    original.wait()
    other.hold.set()
    assert retry.wait().error is None
    if original_outcome == "committed":
        assert original.error is None and retry.statuses == ["duplicate", "accepted"]
    else:
        assert isinstance(original.error, Unavailable)
        assert retry.statuses == ["accepted", "accepted"]
    assert sorted(log.committed) == (
        ["x", "y", "z"] if original_outcome == "committed" else ["x", "z"]
    )
    assert sorted(r["event_id"] for r in audit.records).count("x") == (
        1 if original_outcome == "committed" else 2  # decided (and audited) in both tries
    )


def test_the_same_id_twice_in_one_group_is_published_once(
    lanes: tuple[Committer, list[LanePublisher], SharedLog, Audit],
) -> None:
    committer, _, log, _ = lanes
    job = Submitted(committer, records("d", "d", "e")).wait()
    assert job.statuses == ["accepted", "duplicate", "accepted"]
    assert sorted(log.committed) == ["d", "e"]


@pytest.mark.parametrize("failure", ["lost", "kept"])
def test_after_a_failed_commit_the_tail_is_read_before_a_retry_is_decided(
    lanes: tuple[Committer, list[LanePublisher], SharedLog, Audit], failure: str
) -> None:
    committer, publishers, log, _ = lanes
    log.fail_next = failure
    failed = Submitted(committer, records("f1", "f2")).wait()
    assert isinstance(failed.error, Unavailable)
    retry = Submitted(committer, records("f1", "f2")).wait()
    assert retry.error is None
    # "kept": Kafka committed the group although the client saw an error; the rescan
    # finds it and the retry publishes nothing again. "lost": the retry publishes it.
    expected = "duplicate" if failure == "kept" else "accepted"
    assert retry.statuses == [expected, expected]
    assert sorted(log.committed) == ["f1", "f2"]
    assert sum(p.probes for p in publishers) >= 1  # the failed lane reconnected first


def test_a_committer_needs_a_publisher() -> None:
    with pytest.raises(ValueError, match="at least one publisher"):
        Committer(Audit(), [], EventIdIndex(), GatewayMetrics())


def test_one_group_mixing_new_published_repeated_unnamed_and_rejected_events() -> None:
    """The set-based path (distinct ids, none published) and the per-record one in one group."""
    log = SharedLog()
    publisher = LanePublisher(log)
    audit = Audit()
    committer = Committer(audit, publisher, EventIdIndex(), GatewayMetrics())
    committer.start()
    try:
        Submitted(committer, records("old")).wait()
        publisher.hold.clear()
        blocker = Submitted(committer, records("first"))
        assert publisher.publishing.wait(WAIT_S)
        # Queued behind the blocker, these three jobs make one group.
        fresh = Submitted(committer, records("n1", "n2"))
        mixed_batch = records("old", "n3", "n3", "n4", "refused")
        mixed_batch[3].event_id = None  # an event without an id is always new
        mixed_batch[3].audit = {"type": "decision", "event_id": None}
        mixed_batch[4].rejected = EventRejected("denied", "policy denies it", field="ssn")
        mixed_batch[4].message = None
        mixed = Submitted(committer, mixed_batch)
        late = Submitted(committer, records("n5"))
        publisher.hold.set()
        for job in (blocker, fresh, mixed, late):
            assert job.wait().error is None
    finally:
        committer.stop()
    assert fresh.statuses == ["accepted", "accepted"]
    assert mixed.statuses == ["duplicate", "accepted", "duplicate", "accepted", "pending"]
    assert late.statuses == ["accepted"]
    assert sorted(log.committed) == sorted(["old", "first", "n1", "n2", "n3", "n4", "n5"])
    audited = [r["event_id"] for r in audit.records]
    # A duplicate was audited when first decided; the refusal is audited, not published.
    assert sorted(audited, key=str) == sorted(
        ["old", "first", "n1", "n2", "n3", None, "refused", "n5"], key=str
    )
    assert committer._claimed == [set()]  # every claim released


def test_a_failed_audit_append_publishes_nothing_and_frees_the_ids() -> None:
    class FailingOnce(Audit):
        failed = False

        def append_many(self, records: Sequence[Mapping[str, Any]]) -> Sequence[Any]:
            if not self.failed:
                self.failed = True
                raise OSError("disk full")
            return super().append_many(records)

    log = SharedLog()
    audit = FailingOnce()
    committer = Committer(audit, LanePublisher(log), EventIdIndex(), GatewayMetrics())
    committer.start()
    try:
        failed = Submitted(committer, records("a", "b")).wait()
        assert isinstance(failed.error, Unavailable) and "audit" in str(failed.error)
        assert log.committed == [] and not committer.audit_ok
        retry = Submitted(committer, records("a", "b")).wait()
    finally:
        committer.stop()
    assert retry.error is None and retry.statuses == ["accepted", "accepted"]
    assert log.committed == ["a", "b"] and [r["event_id"] for r in audit.records] == ["a", "b"]
    assert committer.audit_ok
