"""The Kafka source (confluent-kafka): explicit partition assignment, or a consumer group.

With explicit assignment the runner owns the offsets (from its checkpoints);
in a consumer group each process gets some partitions and the group's
committed offsets say where a moved partition resumes.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import structlog
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from processor.errors import ProcessorError
from processor.sources.base import PartitionBatch, RebalanceListener, Source

log = structlog.get_logger(__name__)


class KafkaSource(Source):
    """Reads one Kafka topic; `read_committed` so aborted transactional writes are skipped."""

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        *,
        group_id: str | None = None,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.group_id = group_id
        conf: dict[str, Any] = {
            "bootstrap.servers": bootstrap_servers,
            # Manual assignment still needs a group id in librdkafka; a private one
            # keeps this process out of any real group.
            "group.id": group_id or f"fjordgate-processor-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "enable.partition.eof": False,
            "fetch.wait.max.ms": 100,
            "queued.min.messages": 200_000,
            "partition.assignment.strategy": "cooperative-sticky",
        }
        conf.update(settings or {})
        self._conf = conf
        self._consumer: Consumer | None = None
        self._assigned: list[int] = []

    def configure(self, settings: Mapping[str, str]) -> None:
        """Extra librdkafka consumer settings (the config file's `kafka.*` keys), before start."""
        if self._consumer is not None:
            raise ProcessorError("configure the Kafka source before it connects")
        self._conf.update(settings)

    def _client(self) -> Consumer:
        if self._consumer is None:
            self._consumer = Consumer(self._conf)
        return self._consumer

    def partitions(self) -> list[int]:
        meta = self._client().list_topics(self.topic, timeout=30)
        topic = meta.topics.get(self.topic)
        if topic is None or topic.error is not None or not topic.partitions:
            raise ProcessorError(
                f"Kafka topic {self.topic!r} not found on {self.bootstrap_servers}; "
                "create it (or check the job's topic name)"
            )
        return sorted(topic.partitions)

    def open(self, positions: Mapping[int, int]) -> None:
        consumer = self._client()
        tps = [
            TopicPartition(self.topic, p, o if o >= 0 else OFFSET_BEGINNING)
            for p, o in sorted(positions.items())
        ]
        consumer.assign(tps)
        self._assigned = sorted(positions)

    def subscribe(self, listener: RebalanceListener) -> None:
        if self.group_id is None:
            raise ProcessorError("a consumer group needs the source's group_id")
        consumer = self._client()

        def on_assign(c: Consumer, tps: list[TopicPartition]) -> None:
            added = sorted(tp.partition for tp in tps)
            self._assigned = sorted(set(self._assigned) | set(added))
            listener(added, [])

        def on_revoke(c: Consumer, tps: list[TopicPartition]) -> None:
            removed = sorted(tp.partition for tp in tps)
            self._assigned = sorted(set(self._assigned) - set(removed))
            listener([], removed)

        consumer.subscribe(
            [self.topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_revoke
        )

    def seek(self, partition: int, offset: int) -> None:
        self._client().seek(TopicPartition(self.topic, partition, offset))

    def assigned(self) -> list[int]:
        return list(self._assigned)

    def poll(self, max_records: int, timeout_s: float) -> list[PartitionBatch]:
        messages = self._client().consume(num_messages=max_records, timeout=timeout_s)
        out: list[PartitionBatch] = []
        part = -1
        values: list[bytes] = []
        run: list[Message] = []
        for m in messages:
            if m.error() is not None:
                self._on_error(m)
                continue
            p = m.partition()
            if p != part:
                if run:
                    out.append(self._batch(part, run, values))
                part, values, run = p if p is not None else 0, [], []
            value = m.value()
            # A tombstone (no value) reaches the operator as an undecodable record.
            values.append(value if value is not None else b"")
            run.append(m)
        if run:
            out.append(self._batch(part, run, values))
        return out

    @staticmethod
    def _batch(partition: int, run: list[Message], values: list[bytes]) -> PartitionBatch:
        first = run[0].offset() or 0
        last = run[-1].offset() or 0
        # Offsets are dense unless the topic holds transaction markers; only then
        # does the batch carry each record's offset (for side-output records).
        offsets = None if last - first + 1 == len(run) else [m.offset() or 0 for m in run]
        return PartitionBatch(partition, first, last + 1, values, offsets)

    def _on_error(self, m: Message) -> None:
        err = m.error()
        assert err is not None
        if err.code() == KafkaError._PARTITION_EOF:
            return
        if err.fatal():
            raise ProcessorError(f"Kafka consumer failed: {err.str()}")
        # Broker restarts and leader moves are retried by librdkafka.
        log.warning("kafka_consume_error", code=err.name(), retriable=err.retriable())

    def positions(self) -> dict[int, int]:
        tps = self._client().position([TopicPartition(self.topic, p) for p in self._assigned])
        return {tp.partition: tp.offset for tp in tps}

    def end_offsets(self) -> dict[int, int]:
        consumer = self._client()
        out = {}
        for p in self.partitions():
            _low, high = consumer.get_watermark_offsets(
                TopicPartition(self.topic, p), timeout=30, cached=False
            )
            out[p] = high
        return out

    def commit(self, positions: Mapping[int, int]) -> None:
        if self.group_id is None or not positions:
            return
        tps = [TopicPartition(self.topic, p, o) for p, o in positions.items()]
        try:
            self._client().commit(offsets=tps, asynchronous=False)
        except KafkaException as exc:
            log.warning("kafka_commit_failed", error=str(exc.args[0]))

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def describe(self) -> str:
        return f"kafka://{self.bootstrap_servers}/{self.topic}"
