"""Rebuilding a partition's state from its changelog when the partition is assigned here."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from processor.errors import StateError
from processor.state.base import PartitionState
from processor.state.changelog import META_COLUMN, split_changelog_key


def ensure_changelog_topic(
    bootstrap: str, topic: str, partitions: int, settings: Mapping[str, str] | None = None
) -> None:
    """Create the compacted changelog topic with one partition per source partition."""
    admin = AdminClient({"bootstrap.servers": bootstrap, **(settings or {})})
    new = NewTopic(topic, num_partitions=partitions, replication_factor=1,
                   config={"cleanup.policy": "compact"})  # fmt: skip
    try:
        admin.create_topics([new])[topic].result(60)
    except Exception as exc:
        err = exc.args[0] if exc.args else None
        if not (isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS):
            raise StateError(f"cannot create changelog topic {topic}: {exc}") from exc


def restore_from_changelog(
    bootstrap: str,
    topic: str,
    partition: int,
    state: PartitionState,
    settings: Mapping[str, str] | None = None,
) -> int:
    """Apply every committed record of one changelog partition to `state`; returns the count."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"fjordgate-restore-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            **(settings or {}),
        }
    )
    tp = TopicPartition(topic, partition)
    try:
        _low, high = consumer.get_watermark_offsets(tp, timeout=30, cached=False)
        if high <= 0:
            return 0
        consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)])
        applied = 0
        idle = 0
        while True:
            messages = consumer.consume(10_000, 0.5)
            batch = state.new_batch()
            for m in messages:
                err = m.error()
                if err is not None:
                    if err.fatal():
                        raise StateError(f"restoring {topic}[{partition}]: {err.str()}")
                    continue
                column, key = split_changelog_key(m.key() or b"")
                value = m.value()
                if column == META_COLUMN:
                    if value is not None:
                        batch.put_meta(key.decode(), value)
                elif value is None:
                    batch.delete(column, key)
                else:
                    batch.put(column, key, value)
                applied += 1
            state.commit(batch)
            position = consumer.position([tp])[0].offset
            idle = 0 if messages else idle + 1
            # A transaction's commit marker takes the last offset and is never delivered.
            if position >= high or (idle >= 3 and position >= high - 1):
                return applied
    finally:
        consumer.close()
