"""What every window operator shares: the result record, the late-event record,
how an event's time and key are read, and the operator interface the runner drives.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from processor.aggregations import Aggregation
from processor.state.base import PartitionState, StateBatch
from processor.watermarks import WatermarkTracker


class WindowResult(NamedTuple):
    """One (window, key) result; a later result for the same window and key replaces it.

    `retract` marks a session that no longer exists because a late event merged
    it into a larger one: sinks delete it. A NamedTuple, not a frozen dataclass:
    a window can emit a million results at once and tuples are built 4x faster.
    """

    window_start: int
    window_end: int
    key: str
    value: Any
    retract: bool = False


@dataclass(frozen=True, slots=True)
class LateEvent:
    """An input record not counted: too late for any window, or undecodable."""

    partition: int
    offset: int
    reason: str
    raw: bytes


@dataclass(frozen=True, slots=True)
class EventFields:
    """Where an event keeps its time and key."""

    time_field: str = "event_time"
    key_field: str | None = "region"
    key_fn: Callable[[dict[str, Any]], Any] | None = None


class WindowOperator(ABC):
    """Keyed windowed aggregation over one state column.

    The runner calls `ingest` for each partition's records of a batch, then
    `fire` once the watermark is known, and `flush` before a checkpoint.
    """

    column: str
    aggregation: Aggregation[Any]
    allowed_lateness_ms: int

    @abstractmethod
    def ingest(
        self,
        partition: int,
        first_offset: int,
        values: list[bytes],
        tracker: WatermarkTracker,
        late: list[LateEvent],
        offsets: list[int] | None = None,
    ) -> None:
        """Decode, window and pre-aggregate records; advances the partition's watermark."""

    @abstractmethod
    def fire(self, partition: int, state: PartitionState, watermark: int) -> list[WindowResult]:
        """Results of windows the watermark completed, and updates of fired windows."""

    @abstractmethod
    def flush(
        self, partition: int, state: PartitionState, batch: StateBatch, *, evict: bool = False
    ) -> None:
        """Put every cached change into `batch` so the state store holds it all;
        with `evict`, also release the memory the cache holds."""

    @abstractmethod
    def restore(self, partition: int, state: PartitionState) -> None:
        """Load what the operator keeps beside the store (fired watermark, live keys)."""

    @abstractmethod
    def drop(self, partition: int) -> None:
        """Forget the partition's cached state (revoked)."""

    @abstractmethod
    def cached_entries(self) -> int: ...
