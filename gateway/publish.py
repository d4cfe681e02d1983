"""Publishers: where minimised events go, durably, all-or-nothing per group.

`KafkaPublisher` writes each group in one Kafka transaction, so a group the
gateway could not confirm (broker gone, crash, kill -9) is aborted and never
seen by read-committed consumers. Retries of such a group are safe because the
event-id index is rebuilt from the committed tail of the topic.
`LocalLogPublisher` appends to the processor's durable local log (embedded mode).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import orjson
import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined,unused-ignore]

from gateway import native
from gateway.errors import PublishError
from gateway.metrics import GatewayMetrics
from gateway.record import Headers, Message, OutgoingMessage
from gateway.steps import EVENT_ID_HEADER

log = structlog.get_logger(__name__)


class Publisher(Protocol):
    """What the committer needs from a destination of minimised events."""

    destination: str

    def publish(self, messages: Sequence[Message]) -> None:
        """Make every message durable, or none visible; raise PublishError otherwise."""

    def recent_event_ids(self) -> Iterator[str]:
        """Event ids durably published since the last call (the whole tail on the first)."""

    def ready(self) -> bool:
        """Whether a publish is expected to succeed now."""

    def probe(self) -> bool:
        """Try to become ready (reconnect); cheap to call once a second."""

    def close(self) -> None:
        """Release connections and files."""


def ensure_topics(
    bootstrap: str,
    topics: Sequence[str],
    *,
    partitions: int = 3,
    replication: int = 1,
    timeout_s: float = 15.0,
) -> None:
    """Create the topics that do not exist yet (idempotent)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = admin.list_topics(timeout=timeout_s).topics
    missing = [t for t in dict.fromkeys(topics) if t not in existing]
    if not missing:
        return
    futures = admin.create_topics(
        [NewTopic(t, num_partitions=partitions, replication_factor=replication) for t in missing],
        operation_timeout=timeout_s,
    )
    for topic, future in futures.items():
        try:
            future.result(timeout=timeout_s)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise PublishError(
                    f"cannot create Kafka topic {topic!r}: {exc.args[0].str()}"
                ) from exc


def _raise(error: tuple[int, str, bool, bool, bool] | None) -> None:
    if error is not None:
        code, text, fatal, retriable, abortable = error
        raise KafkaException(
            KafkaError(code, text, fatal=fatal, retriable=retriable, txn_requires_abort=abortable)
        )


class NativeProducer:
    """The part of confluent-kafka's `Producer` that `KafkaPublisher` uses, on the
    compiled `TxnProducer` (native/src/kafka.rs: the same librdkafka, its C API), with
    one more call: `produce_all`, a group's messages produced without the GIL. Errors
    are confluent-kafka's `KafkaException`s, so the publisher handles both alike.

    Measured (bench/gateway, served, warm broker): confluent-kafka's `produce` per
    message, with the GIL held, was 15% of the gateway's GIL time."""

    def __init__(self, core: Any) -> None:
        self._core = core

    @staticmethod
    def create(config: dict[str, Any]) -> NativeProducer | None:
        """One with this configuration, or None when the compiled producer cannot take it
        (module off, library not found, a callback among the settings)."""
        core = native.txn_producer(config)
        return None if core is None else NativeProducer(core)

    def init_transactions(self, timeout_s: float) -> None:
        _raise(self._core.init_transactions(_ms(timeout_s)))

    def begin_transaction(self) -> None:
        _raise(self._core.begin_transaction())

    def commit_transaction(self, timeout_s: float) -> None:
        _raise(self._core.commit_transaction(_ms(timeout_s)))

    def abort_transaction(self, timeout_s: float) -> None:
        _raise(self._core.abort_transaction(_ms(timeout_s)))

    def produce_all(
        self,
        messages: Sequence[Message],
        when_full: Callable[[NativeProducer, Message], None],
    ) -> None:
        """Produce every message into the open transaction; `when_full(self, m)` takes a
        message the full queue refused."""
        group = messages if type(messages) is list else list(messages)
        at = 0
        while at < len(group):
            at, error = self._core.produce(group, at)
            if error is None:
                return
            if error[0] != native.fjordgate_native.KAFKA_QUEUE_FULL:
                _raise(error)
            when_full(self, group[at])
            at += 1

    def produce(
        self, topic: str, value: bytes, key: bytes | None = None, *, headers: Headers | None = None
    ) -> None:
        """One message, as confluent-kafka's `produce` (BufferError when the queue is full)."""
        message = OutgoingMessage(topic, key, value, headers or [], "")
        _, error = self._core.produce([message], 0)
        if error is not None and error[0] == native.fjordgate_native.KAFKA_QUEUE_FULL:
            raise BufferError(error[1])
        _raise(error)

    def poll(self, timeout_s: float) -> int:
        served: int = self._core.poll(_ms(timeout_s))
        return served

    def flush(self, timeout_s: float) -> int:
        """0 when every message was delivered in time, else 1 (confluent-kafka gives the
        count left; the publisher only tells zero from not)."""
        return 0 if self._core.flush(_ms(timeout_s)) is None else 1

    def list_topics(self, timeout: float) -> None:
        """A reachability check (confluent-kafka's returns the metadata, unused here)."""
        error = self._core.ping(_ms(timeout))
        if error is not None:
            raise KafkaException(KafkaError(error[0], error[1]))

    def close(self) -> None:
        self._core.close()


def _ms(seconds: float) -> int:
    return max(0, int(seconds * 1000))


class KafkaPublisher:
    """Transactional Kafka producer for the tagged topic: one transaction per group.

    Not thread-safe by design: only the committer thread publishes.
    """

    def __init__(
        self,
        bootstrap: str,
        topics: Sequence[str],
        *,
        transactional_id: str,
        metrics: GatewayMetrics | None = None,
        timeout_s: float = 10.0,
        index_window: int = 1_000_000,
        extra_config: dict[str, Any] | None = None,
        compiled: bool = True,
    ) -> None:
        self.bootstrap = bootstrap
        self.compiled = compiled  # NativeProducer when it can, else confluent-kafka's
        self.topics = list(topics)
        self.destination = f"kafka://{bootstrap}"
        self.transactional_id = transactional_id
        self.timeout_s = timeout_s
        self.index_window = index_window
        self._metrics = metrics
        self._extra = dict(extra_config or {})
        self._producer: Producer | NativeProducer | None = None
        self._scanned: dict[tuple[str, int], int] = {}  # (topic, partition) -> next offset
        self._lock = threading.Lock()
        self._healthy = False
        self._last_init_failure = 0.0
        self.retry_s = 1.0

    def _config(self) -> dict[str, Any]:
        timeout_ms = int(self.timeout_s * 1000)
        return {
            "bootstrap.servers": self.bootstrap,
            "transactional.id": self.transactional_id,
            "enable.idempotence": True,
            "acks": "all",
            # Messages go out when the transaction commits (a commit flushes at once,
            # whatever the linger), in few large requests. With 2 ms they went out in many
            # small ones while a group was produced: under bench/gateway's load the broker
            # spent 50-73 µs of CPU per event, 17-44 µs with 50 ms, and the gateway took
            # 1.08-1.13x the events/s (two lanes). A bare transactional producer, 500
            # messages per transaction: 29-47 µs per event with 2 ms, 20 µs with 20 ms.
            "linger.ms": 50,
            "message.timeout.ms": timeout_ms,
            "transaction.timeout.ms": max(timeout_ms * 3, 30_000),
            "socket.connection.setup.timeout.ms": min(timeout_ms, 10_000),
            **self._extra,
        }

    def start(self) -> None:
        """Create the producer and fence any earlier instance with the same transactional id.

        `init_transactions` aborts a transaction a crashed predecessor left open,
        so that nothing it did not commit ever becomes visible.
        """
        with self._lock:
            self._ensure_producer()

    def _ensure_producer(self) -> Producer | NativeProducer:
        if self._producer is not None:
            return self._producer
        if time.monotonic() - self._last_init_failure < self.retry_s:
            # Fail fast while the broker is known to be away; probe() reconnects.
            raise PublishError(f"Kafka at {self.bootstrap} not reachable (retrying)")
        config = self._config()
        producer = (NativeProducer.create(config) if self.compiled else None) or Producer(config)
        try:
            producer.init_transactions(self.timeout_s)
        except KafkaException as exc:
            self._count("init")
            self._healthy = False
            self._last_init_failure = time.monotonic()
            _close(producer)
            raise PublishError(
                f"Kafka at {self.bootstrap} not reachable: {exc.args[0].str()}"
            ) from exc
        self._producer = producer
        self._healthy = True
        return producer

    def _count(self, kind: str) -> None:
        if self._metrics is not None:
            self._metrics.kafka_delivery_errors.labels(kind).inc()

    def _reset(self) -> None:
        # A producer whose transaction state is unknown is thrown away; the next
        # one's init_transactions resolves that state with the coordinator.
        if self._producer is not None:
            _close(self._producer)
        self._producer = None
        self._healthy = False

    def publish(self, messages: Sequence[Message]) -> None:
        if not messages:
            return
        with self._lock:
            producer = self._ensure_producer()
            try:
                producer.begin_transaction()
                if type(producer) is NativeProducer:
                    producer.produce_all(messages, self._produce_when_room)
                else:
                    produce = producer.produce
                    for m in messages:
                        try:
                            produce(m.topic, m.value, m.key, headers=m.headers)
                        except BufferError:
                            self._produce_when_room(producer, m)
                producer.commit_transaction(self.timeout_s)
            except KafkaException as exc:
                error = exc.args[0]
                self._count("commit" if not error.fatal() else "fatal")
                self._abort(producer)
                raise PublishError(f"Kafka transaction not committed: {error.str()}") from exc
            except BufferError as exc:
                self._count("queue_full")
                self._abort(producer)
                raise PublishError("Kafka producer queue stayed full") from exc
            self._healthy = True

    def _produce_when_room(self, producer: Producer | NativeProducer, m: Message) -> None:
        """The producer's queue is full: serve it until `m` fits, or time is up."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            producer.poll(0.05)
            try:
                producer.produce(m.topic, m.value, m.key, headers=m.headers)
                return
            except BufferError:
                if time.monotonic() > deadline:
                    raise

    def _abort(self, producer: Producer | NativeProducer) -> None:
        try:
            producer.abort_transaction(self.timeout_s)
        except KafkaException:
            self._reset()
            return
        self._healthy = False

    def recent_event_ids(self) -> Iterator[str]:
        """Read the committed tail of every tagged topic from where the last call stopped."""
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"{self.transactional_id}-index",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
            }
        )
        try:
            assignments: list[TopicPartition] = []
            metadata = consumer.list_topics(timeout=self.timeout_s)
            for topic in self.topics:
                topic_md = metadata.topics.get(topic)
                if topic_md is None or topic_md.error is not None:
                    continue
                for partition in topic_md.partitions:
                    low, high = consumer.get_watermark_offsets(
                        TopicPartition(topic, partition), timeout=self.timeout_s
                    )
                    start = self._scanned.get(
                        (topic, partition), max(low, high - self.index_window)
                    )
                    if start < high:
                        assignments.append(TopicPartition(topic, partition, start))
            if not assignments:
                return
            consumer.assign(assignments)
            open_partitions = {(tp.topic, tp.partition) for tp in assignments}
            idle_deadline = time.monotonic() + self.timeout_s
            while open_partitions and time.monotonic() < idle_deadline:
                for msg in consumer.consume(1000, 0.5):
                    where = (str(msg.topic()), int(msg.partition() or 0))
                    error = msg.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            open_partitions.discard(where)
                            self._scanned[where] = int(msg.offset() or 0)
                        continue
                    idle_deadline = time.monotonic() + self.timeout_s
                    self._scanned[where] = int(msg.offset() or 0) + 1
                    for header in msg.headers() or ():
                        name, value = header[0], header[1]
                        if name == EVENT_ID_HEADER and isinstance(value, bytes):
                            yield value.decode("utf-8")
            if open_partitions:
                raise PublishError(
                    "could not read the tagged topics' tail to rebuild the event-id index"
                )
        except KafkaException as exc:
            raise PublishError(f"cannot read the tagged topics: {exc.args[0].str()}") from exc
        finally:
            consumer.close()

    def ready(self) -> bool:
        return self._healthy

    def probe(self) -> bool:
        with self._lock:
            try:
                producer = self._ensure_producer()
                producer.list_topics(timeout=min(self.timeout_s, 2.0))
            except (PublishError, KafkaException):
                self._healthy = False
                return False
            self._healthy = True
            return True

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                self._producer.flush(self.timeout_s)
                _close(self._producer)
                self._producer = None


def _close(producer: Producer | NativeProducer) -> None:
    """Release a compiled producer's handle now (confluent-kafka's goes with its object)."""
    if type(producer) is NativeProducer:
        producer.close()


class LocalLogPublisher:
    """Embedded mode: append to the processor's durable local log (fsync per group).

    The local log has no headers, so the event id travels in the value (the
    gateway always writes it there) and the index is rebuilt by reading it back.
    """

    def __init__(
        self,
        log: Any,
        topics: Sequence[str],
        *,
        event_id_field: str = "event_id",
        partitions: int = 1,
        index_window: int = 1_000_000,
    ) -> None:
        self.log = log  # processor.LocalLog
        self.topics = list(topics)
        self.event_id_field = event_id_field
        self.index_window = index_window
        self.destination = "local://127.0.0.1/" + str(log.directory).lstrip("/")
        self._scanned: dict[tuple[str, int], int] = {}
        self._healthy = True
        for topic in self.topics:
            log.create_topic(topic, partitions)

    def publish(self, messages: Sequence[Message]) -> None:
        by_topic: dict[str, list[tuple[bytes | None, bytes]]] = {}
        for m in messages:
            by_topic.setdefault(m.topic, []).append((m.key, m.value))
        try:
            for topic, records in by_topic.items():
                self.log.append_many(topic, records)
        except Exception as exc:
            self._healthy = False
            raise PublishError(f"the local log did not take the events: {exc}") from exc
        self._healthy = True

    def recent_event_ids(self) -> Iterator[str]:
        for topic in self.topics:
            count = self.log.partition_count(topic)
            for partition in range(count):
                end = self.log.end_offset(topic, partition)
                start = self._scanned.get((topic, partition), max(0, end - self.index_window))
                if start >= end:
                    continue
                reader = self.log.reader(topic, [partition], start={partition: start})
                try:
                    while reader.position(partition) < end:
                        batch = reader.poll(10_000)
                        if not batch:
                            break
                        for rec in batch:
                            try:
                                value = orjson.loads(rec.value)
                            except orjson.JSONDecodeError:
                                continue
                            event_id = value.get(self.event_id_field)
                            if isinstance(event_id, str):
                                yield event_id
                    self._scanned[(topic, partition)] = reader.position(partition)
                finally:
                    reader.close()

    def ready(self) -> bool:
        return self._healthy

    def probe(self) -> bool:
        self._healthy = True
        return True

    def close(self) -> None:
        """The local log belongs to whoever opened it (the demo closes it)."""
