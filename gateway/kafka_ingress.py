"""Kafka ingress: raw topic → the same pipeline → tagged topic (or dead-letter), exactly once.

Consume-transform-produce in Kafka transactions: for each polled batch the
audit records are appended durably first, then the minimised events (and
refusals, to the dead-letter topic with the reason in headers) are produced
and the consumer offsets are sent in the same transaction, which then
commits. A failure aborts the transaction and starts over with a fresh
producer and consumer from the committed offsets, so the batch is processed
again, never half-published. A transactional call that does not return in
time is left behind on its thread (see `_call_with_deadline`).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import structlog
from confluent_kafka import Consumer, KafkaException, Producer

from audit.errors import RecordRejected
from audit.log import ENCODED, AuditRecord, CanonicalRecord
from gateway.committer import AuditSink
from gateway.metrics import GatewayMetrics
from gateway.pipeline import PolicyPipelines, Topics
from gateway.record import EventRecord

log = structlog.get_logger(__name__)

T = TypeVar("T")

# (topic, partition, offset) of a raw message.
Position = tuple[str, int, int]

# Audit records kept for messages whose transaction did not commit (see
# `KafkaIngress._audited_uncommitted`); past this many the memory is dropped.
MAX_REMEMBERED_AUDITS = 100_000


class _Overran(Exception):
    """A Kafka call did not return by its deadline; its producer/consumer pair is abandoned."""


def _call_with_deadline(call: Callable[[], T], deadline_s: float, what: str) -> T:
    """Run `call` on its own daemon thread; `_Overran` if it has not returned by the deadline.

    librdkafka's send_offsets_to_transaction can block far past its timeout while the group
    coordinator is away (confluentinc/librdkafka#5456, #5511: the coordinator request's timeout
    is never checked), and commit/abort wait on the same coordinator. Such a call cannot be
    interrupted: its thread is left to finish on its own (once the producer is fenced or the
    coordinator found), and the caller abandons the producer it holds.
    """
    done = threading.Event()
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(call())
        except BaseException as exc:  # handed to the caller
            error.append(exc)
        finally:
            done.set()

    threading.Thread(target=target, name=f"fjordgate-kafka-ingress-{what}", daemon=True).start()
    if not done.wait(deadline_s):
        raise _Overran(f"Kafka {what} did not return within {deadline_s:g} s")
    if error:
        raise error[0]
    return result[0]


class KafkaIngress:
    """One consumer-group member turning raw topics into tagged ones."""

    def __init__(
        self,
        bootstrap: str,
        streams: Sequence[str],
        *,
        pipelines: Callable[[], PolicyPipelines],
        audit: AuditSink,
        topics: Topics,
        transactional_id: str,
        group: str,
        metrics: GatewayMetrics,
        timeout_s: float = 10.0,
        batch_size: int = 500,
        extra_config: dict[str, Any] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.streams = list(streams)
        self.pipelines = pipelines
        self.audit = audit
        self.topics = topics
        self.transactional_id = transactional_id
        self.group = group
        self.metrics = metrics
        self.timeout_s = timeout_s
        self.batch_size = batch_size
        self.extra = dict(extra_config or {})
        self._stream_of = {topics.raw_for(s): s for s in self.streams}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.batches_committed = 0
        # A transaction makes two coordinator round trips (offsets, commit), each given
        # timeout_s; past this deadline the producer/consumer pair is abandoned.
        self.deadline_s = 3 * timeout_s
        self._busy_since: float | None = None
        self._failing_since: float | None = None
        # Backstop for what the deadline does not cover (an audit append, the pipeline,
        # a reconnect that keeps failing): this long marks the ingress not ready.
        self.stall_after_s = max(6 * timeout_s, 30.0)
        # Audit records already durable for messages whose transaction did not commit:
        # reprocessing such a message with the same decision does not append it again,
        # so a decision is recorded once per event however often the gateway retries.
        self._audited_uncommitted: dict[Position, AuditRecord] = {}
        self.pairs_abandoned = 0

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.run, name="fjordgate-kafka-ingress", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            # At worst: a transaction overruns, then its abort and the consumer's close.
            self._thread.join(timeout=self.deadline_s * 3 + self.timeout_s)

    def _consumer(self) -> Consumer:
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": self.group,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                # A consumer that could not be closed in time is dropped without leaving
                # the group; it is evicted after this long without a poll instead of the
                # default five minutes, which would hold up its successor's assignment.
                "max.poll.interval.ms": int(max(self.stall_after_s * 2, 60) * 1000),
                **self.extra,
            }
        )
        consumer.subscribe(list(self._stream_of))
        return consumer

    def _producer(self) -> Producer:
        producer = Producer(
            {
                "bootstrap.servers": self.bootstrap,
                "transactional.id": self.transactional_id,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 2,
                # A transaction left open by a failure blocks the group's offsets
                # (read-committed consumers wait for it): keep the broker's limit short.
                "transaction.timeout.ms": int(max(self.timeout_s * 3, 10) * 1000),
                **self.extra,
            }
        )
        # Fences any earlier producer of this transactional id, abandoned or crashed, and
        # aborts its open transaction, before the new consumer reads the committed offsets.
        _call_with_deadline(
            lambda: producer.init_transactions(self.timeout_s), self.deadline_s, "init"
        )
        return producer

    def run(self) -> None:
        """Loop until `stop()`; starts over with a fresh producer and consumer after a failure."""
        while not self._stop.is_set():
            producer: Producer | None = None
            consumer: Consumer | None = None
            stuck = False
            try:
                producer = self._producer()
                consumer = self._consumer()
                while not self._stop.is_set():
                    messages = consumer.consume(self.batch_size, 0.5)
                    if messages:
                        self._process(consumer, producer, messages)
                    self._failing_since = None
            except _Overran as exc:
                stuck = True
                self._failed("ingress_stuck", str(exc))
            except KafkaException as exc:
                self._failed("ingress", exc.args[0].str())
            except Exception as exc:
                self._failed("ingress", type(exc).__name__, exc)
            finally:
                self._release(producer, consumer, stuck=stuck)
            self._stop.wait(1.0)

    def _failed(self, kind: str, error: str, exc: Exception | None = None) -> None:
        if self._failing_since is None:
            self._failing_since = time.monotonic()
        self.metrics.kafka_delivery_errors.labels(kind).inc()
        fields: dict[str, Any] = {"error": error}
        if exc is not None and exc.__traceback__ is not None:
            # Where it failed, not the traceback: its frames hold the events' values.
            tb = exc.__traceback__
            while tb.tb_next is not None:
                tb = tb.tb_next
            fields["at"] = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"
        log.warning(
            "kafka_ingress_stuck" if kind == "ingress_stuck" else "kafka_ingress_failed", **fields
        )

    def _release(
        self, producer: Producer | None, consumer: Consumer | None, *, stuck: bool
    ) -> None:
        """Abort and close what a failed round holds; what does not return in time is dropped."""
        if stuck:
            # A call of this producer is still blocked on its thread: the next producer's
            # init_transactions fences it and aborts its transaction.
            self.pairs_abandoned += 1
        elif producer is not None:
            # No transaction open, or stuck too: either way the next producer fences this one.
            with contextlib.suppress(KafkaException, _Overran):
                _call_with_deadline(
                    lambda: producer.abort_transaction(self.timeout_s), self.deadline_s, "abort"
                )
        if consumer is not None:
            try:
                _call_with_deadline(consumer.close, self.deadline_s, "close")
            except _Overran:
                log.warning("kafka_ingress_consumer_dropped", deadline_s=self.deadline_s)
            except KafkaException as exc:
                log.warning("kafka_ingress_close_failed", error=exc.args[0].str())

    def healthy(self) -> bool:
        """False while one batch, or a failing reconnect, has lasted longer than `stall_after_s`."""
        now = time.monotonic()
        busy, failing = self._busy_since, self._failing_since
        return all(t is None or now - t < self.stall_after_s for t in (busy, failing))

    def _process(self, consumer: Consumer, producer: Producer, messages: list[Any]) -> None:
        self._busy_since = time.monotonic()
        try:
            self._process_batch(consumer, producer, messages)
        finally:
            self._busy_since = None

    def _process_batch(self, consumer: Consumer, producer: Producer, messages: list[Any]) -> None:
        current = self.pipelines()
        records: list[EventRecord] = []
        positions: list[Position] = []
        by_stream: dict[str, list[EventRecord]] = {}
        for i, msg in enumerate(messages):
            if msg.error() is not None:
                continue
            stream = self._stream_of.get(str(msg.topic()))
            if stream is None or current.get(stream) is None:
                continue
            value = msg.value()
            raw = value if isinstance(value, bytes) else b""
            record = EventRecord(stream=str(stream), index=i, raw=raw, source="kafka")
            by_stream.setdefault(stream, []).append(record)
            records.append(record)
            positions.append((str(msg.topic()), int(msg.partition()), int(msg.offset())))
        for stream, batch in by_stream.items():
            pipeline = current.get(stream)
            assert pipeline is not None
            started = time.perf_counter()
            pipeline.run_batch(batch)
            self.metrics.pipeline_seconds.labels("kafka").observe(time.perf_counter() - started)
        audited = self._append_audits(records, positions)
        try:
            offsets = consumer.position(consumer.assignment())
            group = consumer.consumer_group_metadata()
            _call_with_deadline(
                lambda: self._transaction(producer, records, offsets, group),
                self.deadline_s,
                "transaction",
            )
        except BaseException:
            self._remember_audits(audited)
            raise
        self.batches_committed += 1
        if self._audited_uncommitted:
            self._forget_audits(offsets)
        counts: Counter[tuple[str, str]] = Counter()
        for r in records:
            outcome = (
                "accepted"
                if r.rejected is None
                else ("denied" if r.rejected.code == "denied" else "rejected")
            )
            counts[r.stream, outcome] += 1
        for (stream, outcome), count in counts.items():
            self.metrics.events.labels(stream, "kafka", outcome).inc(count)

    def _append_audits(
        self, records: list[EventRecord], positions: list[Position]
    ) -> list[tuple[Position, AuditRecord]]:
        """Append the batch's audit records durably, except those already appended for the
        same message with the same decision by an attempt that did not commit."""
        audited: list[tuple[Position, AuditRecord]] = []
        remembered = self._audited_uncommitted
        fresh: list[AuditRecord] = []
        for position, r in zip(positions, records, strict=True):
            if r.audit is None:
                continue
            audited.append((position, r.audit))
            if not remembered or not _same_record(remembered.get(position), r.audit):
                fresh.append(r.audit)
        if fresh:
            started = time.perf_counter()
            self.audit.append_many(fresh)  # durable before anything is committed
            self.metrics.audit_fsync_seconds.observe(time.perf_counter() - started)
        return audited

    def _remember_audits(self, audited: list[tuple[Position, AuditRecord]]) -> None:
        if len(self._audited_uncommitted) + len(audited) > MAX_REMEMBERED_AUDITS:
            self._audited_uncommitted.clear()  # re-appended if reprocessed: at least once
        self._audited_uncommitted.update(audited)

    def _forget_audits(self, committed: list[Any]) -> None:
        """Drop what is remembered for messages below the offsets just committed."""
        upto = {(tp.topic, tp.partition): tp.offset for tp in committed}
        self._audited_uncommitted = {
            (topic, partition, offset): audit
            for (topic, partition, offset), audit in self._audited_uncommitted.items()
            if offset >= upto.get((topic, partition), -1)
        }

    def _transaction(
        self, producer: Producer, records: list[EventRecord], offsets: list[Any], group: Any
    ) -> None:
        producer.begin_transaction()
        for r in records:
            m = r.message
            if m is not None:
                producer.produce(m.topic, value=m.value, key=m.key, headers=m.headers)
        producer.send_offsets_to_transaction(offsets, group, self.timeout_s)
        producer.commit_transaction(self.timeout_s)


def _same_record(before: AuditRecord | None, now: AuditRecord) -> bool:
    """Whether two audit records are the same, as the log would write them: one may be
    encoded already (the compiled core's `Staged`) and the other not, and records of
    memoised decisions name shared members (written as their reference)."""
    if before is None:
        return False
    if before == now:
        return True
    try:
        return _encoded(before) == _encoded(now)
    except RecordRejected:
        return False  # appended again, and refused as it was the first time


def _encoded(record: AuditRecord) -> bytes:
    if type(record) in ENCODED:
        body: bytes = record.body  # type: ignore[union-attr]  # an EncodedRecord
        return body
    return CanonicalRecord.of(record).body  # type: ignore[arg-type]  # a mapping
