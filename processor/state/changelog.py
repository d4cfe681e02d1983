"""Changelog topics: every state change of a partition, mirrored to a compacted Kafka topic.

`ChangeloggedPartitionState` wraps a partition's local state; each committed
batch is also produced to partition p of the store's changelog topic, inside
the process's open Kafka transaction (which also commits the source offsets),
so the changelog and the consumer group's offsets always agree.
Record key: column name, NUL, state key; value: the state value, or none (a
tombstone) for a delete. Range deletes are expanded to per-key tombstones so
compaction can drop the dead keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from confluent_kafka import Producer

from processor.state.base import PartitionState, StateBatch

META_COLUMN = "__meta__"
_SEP = b"\x00"


def changelog_key(column: str, key: bytes) -> bytes:
    return column.encode() + _SEP + key


def split_changelog_key(raw: bytes) -> tuple[str, bytes]:
    column, _, key = raw.partition(_SEP)
    return column.decode(), key


class _RecordingBatch(StateBatch):
    """Applies mutations to the inner batch and remembers them, in order."""

    def __init__(self, inner: StateBatch) -> None:
        self.inner = inner
        self.ops: list[tuple[str, str, bytes, bytes | None]] = []

    def put(self, column: str, key: bytes, value: bytes) -> None:
        self.inner.put(column, key, value)
        self.ops.append(("put", column, key, value))

    def put_many(self, column: str, items: Iterable[tuple[bytes, bytes]]) -> None:
        for key, value in items:
            self.put(column, key, value)

    def delete(self, column: str, key: bytes) -> None:
        self.inner.delete(column, key)
        self.ops.append(("delete", column, key, None))

    def delete_range(self, column: str, lo: bytes, hi: bytes) -> None:
        self.inner.delete_range(column, lo, hi)
        self.ops.append(("range", column, lo, hi))

    def put_meta(self, key: str, value: bytes) -> None:
        self.inner.put_meta(key, value)
        self.ops.append(("put", META_COLUMN, key.encode(), value))

    def __len__(self) -> int:
        return len(self.inner)


class ChangeloggedPartitionState(PartitionState):
    """A partition state whose committed changes also go to its changelog partition."""

    def __init__(
        self, inner: PartitionState, producer: Producer, topic: str, partition: int
    ) -> None:
        self.inner = inner
        self.partition = partition
        self.producer = producer
        self.topic = topic

    def get_many(self, column: str, keys: Sequence[bytes]) -> list[bytes | None]:
        return self.inner.get_many(column, keys)

    def get(self, column: str, key: bytes) -> bytes | None:
        return self.inner.get(column, key)

    def scan(self, column: str, lo: bytes, hi: bytes | None) -> Iterator[tuple[bytes, bytes]]:
        return self.inner.scan(column, lo, hi)

    def new_batch(self) -> StateBatch:
        return _RecordingBatch(self.inner.new_batch())

    def commit(self, batch: StateBatch) -> None:
        assert isinstance(batch, _RecordingBatch)
        records: list[tuple[bytes, bytes | None]] = []
        pending: dict[tuple[str, bytes], bytes | None] = {}
        for op, column, key, value in batch.ops:
            if op == "range":
                assert value is not None
                # Keys in the range: those already stored, and those put earlier in this batch.
                doomed = {k for k, _ in self.inner.scan(column, key, value)}
                doomed |= {k for (c, k) in pending if c == column and key <= k < value}
                for k in sorted(doomed):
                    records.append((changelog_key(column, k), None))
                    pending[(column, k)] = None
            else:
                records.append((changelog_key(column, key), value))
                pending[(column, key)] = value
        self.inner.commit(batch.inner)
        produce = self.producer.produce
        for key, value in records:
            while True:
                try:
                    produce(self.topic, key=key, value=value, partition=self.partition)
                    break
                except BufferError:
                    self.producer.poll(0.05)

    def get_meta(self, key: str) -> bytes | None:
        return self.inner.get_meta(key)

    def checkpoint(self, destination: Path) -> None:
        self.inner.checkpoint(destination)

    def close(self) -> None:
        self.inner.close()
