"""The Kafka sink: results produced in a Kafka transaction that also commits the
source offsets they include (to the consumer group `fjordgate-sink-<job>`).

Consumers reading with `isolation.level=read_committed` see each batch whole
or not at all; the record key is `[key, window_start, window_end]`, so a
compacted output topic keeps exactly the final result per window and key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import structlog
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from processor.errors import SinkError
from processor.operators.base import WindowResult
from processor.sinks.base import ResultColumns, Sink, iso_ms

log = structlog.get_logger(__name__)


class KafkaSink(Sink):
    """Transactional producer of window results to one topic."""

    kind = "kafka"

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        *,
        settings: Mapping[str, str] | None = None,
        transactional_id: str | None = None,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.settings = dict(settings or {})
        self.transactional_id = transactional_id
        self.source_topic: str | None = None
        self._producer: Producer | None = None
        self._consumer: Consumer | None = None
        self._columns = ResultColumns()

    def destination(self) -> str:
        return f"kafka://{self.bootstrap_servers}/{self.topic}"

    def bind_source(self, topic: str) -> None:
        self.source_topic = topic

    def open(self, job: str, columns: ResultColumns) -> None:
        if self.source_topic is None:
            raise SinkError("the Kafka sink needs the job's Kafka source topic (bind_source)")
        self._columns = columns
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            # One stable id per job and output: a restarted process fences its
            # previous incarnation's open transaction.
            "transactional.id": self.transactional_id or f"fjordgate-{job}-{self.topic}",
            "linger.ms": 5,
            "compression.type": "lz4",
        }
        conf.update(self.settings)
        try:
            self._producer = Producer(conf)
            self._producer.init_transactions(60)
            self._consumer = Consumer(
                {
                    "bootstrap.servers": self.bootstrap_servers,
                    "group.id": f"fjordgate-sink-{job}",
                    "enable.auto.commit": False,
                    "isolation.level": "read_committed",
                }
            )
        except KafkaException as exc:
            raise SinkError(f"Kafka sink {self.destination()}: {exc.args[0]}") from exc

    def committed_offsets(self) -> dict[int, int] | None:
        assert self._consumer is not None and self.source_topic is not None
        meta = self._consumer.list_topics(self.source_topic, timeout=30)
        parts = sorted(meta.topics[self.source_topic].partitions)
        tps = self._consumer.committed(
            [TopicPartition(self.source_topic, p) for p in parts], timeout=30
        )
        out = {tp.partition: tp.offset for tp in tps if tp.offset >= 0}
        return out or None

    def write(self, results: Sequence[WindowResult], offsets: Mapping[int, int]) -> None:
        producer = self._producer
        assert producer is not None and self._consumer is not None and self.source_topic
        kc, vc = self._columns.key, self._columns.value
        try:
            producer.begin_transaction()
            for r in results:
                key = orjson.dumps([r.key, r.window_start, r.window_end])
                value = (
                    None
                    if r.retract
                    else orjson.dumps(
                        {
                            "window_start": iso_ms(r.window_start),
                            "window_end": iso_ms(r.window_end),
                            kc: r.key,
                            vc: r.value,
                        }
                    )
                )
                while True:
                    try:
                        producer.produce(self.topic, value=value, key=key)
                        break
                    except BufferError:
                        producer.poll(0.05)
            producer.send_offsets_to_transaction(
                [TopicPartition(self.source_topic, p, o) for p, o in sorted(offsets.items())],
                self._consumer.consumer_group_metadata(),
                60,
            )
            producer.commit_transaction(60)
        except KafkaException as exc:
            err = exc.args[0]
            if err.txn_requires_abort():
                producer.abort_transaction(60)
            raise SinkError(
                f"Kafka sink {self.destination()} could not commit a transaction: {err.str()}"
            ) from exc

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(30)
            self._producer = None
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
