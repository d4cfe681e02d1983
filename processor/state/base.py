"""The state interface the operators use, independent of where the bytes live.

State is partitioned like the input: one `PartitionState` per source partition,
holding one column per operator plus a small metadata area (source offsets,
watermarks) that is written in the same atomic batch as the operator state,
so a partition's state and the position it reflects never disagree.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path


class StateBatch(ABC):
    """Mutations applied atomically by `PartitionState.commit`."""

    @abstractmethod
    def put(self, column: str, key: bytes, value: bytes) -> None: ...

    def put_many(self, column: str, items: Iterable[tuple[bytes, bytes]]) -> None:
        """Put many (key, value) pairs; implementations make this cheaper than a loop of put."""
        for key, value in items:
            self.put(column, key, value)

    @abstractmethod
    def delete(self, column: str, key: bytes) -> None: ...

    @abstractmethod
    def delete_range(self, column: str, lo: bytes, hi: bytes) -> None:
        """Delete every key in `[lo, hi)` of a column."""

    @abstractmethod
    def put_meta(self, key: str, value: bytes) -> None: ...

    @abstractmethod
    def __len__(self) -> int: ...


class PartitionState(ABC):
    """The state of one source partition: operator columns and metadata."""

    partition: int

    @abstractmethod
    def get_many(self, column: str, keys: Sequence[bytes]) -> list[bytes | None]: ...

    @abstractmethod
    def get(self, column: str, key: bytes) -> bytes | None: ...

    @abstractmethod
    def scan(self, column: str, lo: bytes, hi: bytes | None) -> Iterator[tuple[bytes, bytes]]:
        """Keys in `[lo, hi)` in byte order (hi None = to the end)."""

    @abstractmethod
    def new_batch(self) -> StateBatch: ...

    @abstractmethod
    def commit(self, batch: StateBatch) -> None: ...

    @abstractmethod
    def get_meta(self, key: str) -> bytes | None: ...

    @abstractmethod
    def checkpoint(self, destination: Path) -> None:
        """Write a consistent, openable copy of this partition's state to `destination`."""

    @abstractmethod
    def close(self) -> None: ...


class StateBackend(ABC):
    """Opens partition states for a job's operators."""

    @abstractmethod
    def open_partition(self, partition: int, columns: Sequence[str]) -> PartitionState: ...

    @abstractmethod
    def restore_partition(self, partition: int, snapshot: Path) -> None:
        """Replace the partition's live state with a checkpointed copy (closed before)."""

    @abstractmethod
    def drop_partition(self, partition: int) -> None:
        """Delete the partition's live state (it moved away or is rebuilt)."""

    @abstractmethod
    def close(self) -> None: ...
