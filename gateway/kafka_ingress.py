"""Kafka ingress: raw topic → the same pipeline → tagged topic (or dead-letter), exactly once.

Consume-transform-produce in Kafka transactions: for each polled batch the
audit records are appended durably first, then the minimised events (and
refusals, to the dead-letter topic with the reason in headers) are produced
and the consumer offsets are sent in the same transaction, which then
commits. A failure aborts the transaction and rewinds the consumer to its
committed offsets, so the batch is processed again, never half-published.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import structlog
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition

from gateway.committer import AuditSink
from gateway.metrics import GatewayMetrics
from gateway.pipeline import PolicyPipelines, Topics
from gateway.record import EventRecord

log = structlog.get_logger(__name__)


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
        self._busy_since: float | None = None
        # librdkafka's send_offsets_to_transaction can block past its timeout while the
        # group coordinator is away (confluentinc/librdkafka#5456, #5511); a batch that
        # takes this long marks the ingress stalled, so /readyz says so.
        self.stall_after_s = max(6 * timeout_s, 30.0)

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.run, name="fjordgate-kafka-ingress", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout_s * 2)

    def _consumer(self) -> Consumer:
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": self.group,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
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
        producer.init_transactions(self.timeout_s)
        return producer

    def run(self) -> None:
        """Loop until `stop()`; reconnects after failures with a short pause."""
        while not self._stop.is_set():
            consumer: Consumer | None = None
            try:
                producer = self._producer()
                consumer = self._consumer()
                while not self._stop.is_set():
                    messages = consumer.consume(self.batch_size, 0.5)
                    if messages:
                        self._process(consumer, producer, messages)
            except KafkaException as exc:
                self.metrics.kafka_delivery_errors.labels("ingress").inc()
                log.warning("kafka_ingress_failed", error=exc.args[0].str())
                self._stop.wait(1.0)
            except Exception as exc:
                log.exception("kafka_ingress_failed", error_type=type(exc).__name__)
                self._stop.wait(1.0)
            finally:
                if consumer is not None:
                    consumer.close()

    def healthy(self) -> bool:
        """False while one batch has been in progress longer than `stall_after_s`."""
        busy = self._busy_since
        return busy is None or time.monotonic() - busy < self.stall_after_s

    def _process(self, consumer: Consumer, producer: Producer, messages: list[Any]) -> None:
        self._busy_since = time.monotonic()
        try:
            self._process_batch(consumer, producer, messages)
        finally:
            self._busy_since = None

    def _process_batch(self, consumer: Consumer, producer: Producer, messages: list[Any]) -> None:
        current = self.pipelines()
        records: list[EventRecord] = []
        for i, msg in enumerate(messages):
            if msg.error() is not None:
                continue
            stream = self._stream_of.get(str(msg.topic()))
            pipeline = current.get(stream) if stream is not None else None
            if pipeline is None:
                continue
            value = msg.value()
            raw = value if isinstance(value, bytes) else b""
            record = EventRecord(stream=str(stream), index=i, raw=raw, source="kafka")
            started = time.perf_counter()
            pipeline.run(record)
            self.metrics.pipeline_seconds.labels("kafka").observe(time.perf_counter() - started)
            records.append(record)
        try:
            audits = [r.audit for r in records if r.audit is not None]
            if audits:
                started = time.perf_counter()
                self.audit.append_many(audits)  # durable before anything is committed
                self.metrics.audit_fsync_seconds.observe(time.perf_counter() - started)
            producer.begin_transaction()
            for r in records:
                m = r.message
                if m is not None:
                    producer.produce(m.topic, value=m.value, key=m.key, headers=m.headers)
            producer.send_offsets_to_transaction(
                consumer.position(consumer.assignment()),
                consumer.consumer_group_metadata(),
                self.timeout_s,
            )
            producer.commit_transaction(self.timeout_s)
        except Exception:
            self._abort_and_rewind(consumer, producer)
            raise
        self.batches_committed += 1
        for r in records:
            outcome = (
                "accepted"
                if r.rejected is None
                else ("denied" if r.rejected.code == "denied" else "rejected")
            )
            self.metrics.events.labels(r.stream, "kafka", outcome).inc()

    def _abort_and_rewind(self, consumer: Consumer, producer: Producer) -> None:
        # If the abort fails, the next producer's init_transactions fences this one.
        with contextlib.suppress(KafkaException):
            producer.abort_transaction(self.timeout_s)
        assignment = consumer.assignment()
        if not assignment:
            return
        committed = consumer.committed(assignment, timeout=self.timeout_s)
        for tp in committed:
            offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
            consumer.seek(TopicPartition(tp.topic, tp.partition, offset))
