"""Bounded out-of-orderness watermarks, tracked per source partition.

A partition's watermark is `max event time seen - out_of_orderness - 1`
(Flink's BoundedOutOfOrdernessWatermarks). The job's watermark is the minimum
over active partitions and never goes back; a partition that has been silent
for `idle_timeout_ms` of wall-clock time stops holding it back until it sends
again; when every partition is idle the watermark moves to the furthest one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

#: Watermark before any event; far from int64 limits so key encodings stay simple.
MIN_WATERMARK = -(2**62)
#: Watermark at the end of a bounded input: every window fires.
MAX_WATERMARK = 2**62


@dataclass(slots=True)
class _PartitionClock:
    max_ts: int = MIN_WATERMARK
    last_active: float = 0.0
    idle: bool = False


class WatermarkTracker:
    """Per-partition maxima, idleness and the job watermark derived from them."""

    def __init__(
        self,
        out_of_orderness_ms: int,
        idle_timeout_ms: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if out_of_orderness_ms < 0:
            raise ValueError("out_of_orderness_ms must be zero or positive")
        self.bound = out_of_orderness_ms + 1
        self.idle_timeout_s = None if idle_timeout_ms is None else idle_timeout_ms / 1000
        self._clock = clock
        self._parts: dict[int, _PartitionClock] = {}
        self.watermark = MIN_WATERMARK

    def assign(self, partitions: Iterable[int]) -> None:
        now = self._clock()
        for p in partitions:
            self._parts.setdefault(p, _PartitionClock(last_active=now))

    def revoke(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            self._parts.pop(p, None)

    def rebase(self) -> None:
        """Recompute the job watermark from the partitions owned now.

        After a rebalance a newly assigned partition may be behind: the watermark
        steps back to it, so its events are not judged late by other partitions'
        progress. Windows already fired stay fired (operators keep that per partition).
        """
        active = [self.partition_watermark(p) for p, c in self._parts.items() if not c.idle]
        self.watermark = min(active) if active else MIN_WATERMARK

    def partitions(self) -> list[int]:
        return sorted(self._parts)

    def partition_max(self, partition: int) -> int:
        return self._parts[partition].max_ts

    def partition_watermark(self, partition: int) -> int:
        clock = self._parts[partition]
        return MIN_WATERMARK if clock.max_ts == MIN_WATERMARK else clock.max_ts - self.bound

    def others_min(self, partition: int) -> int:
        """The lowest watermark of the other active partitions (MAX if none)."""
        low = MAX_WATERMARK
        for p, clock in self._parts.items():
            if p != partition and not clock.idle:
                wm = self.partition_watermark(p)
                if wm < low:
                    low = wm
        return low

    def touch(self, partition: int) -> None:
        """The partition delivered records now: it is active again."""
        clock = self._parts.setdefault(partition, _PartitionClock())
        clock.last_active = self._clock()
        clock.idle = False

    def observe(self, partition: int, max_ts: int) -> None:
        """Record the largest event time seen on a partition and advance the watermark."""
        clock = self._parts.setdefault(partition, _PartitionClock(last_active=self._clock()))
        if max_ts > clock.max_ts:
            clock.max_ts = max_ts
        self._advance()

    def check_idle(self) -> list[int]:
        """Mark partitions silent for longer than the idle timeout; returns them."""
        if self.idle_timeout_s is None:
            return []
        now = self._clock()
        newly = []
        for p, clock in self._parts.items():
            if not clock.idle and now - clock.last_active >= self.idle_timeout_s:
                clock.idle = True
                newly.append(p)
        if newly:
            self._advance()
        return newly

    def _advance(self) -> None:
        active = [self.partition_watermark(p) for p, c in self._parts.items() if not c.idle]
        if active:
            candidate = min(active)
        elif self._parts:
            # Every partition is idle: as Flink's watermark valve does, move to the
            # furthest partition, so the last windows fire when input stops.
            candidate = max(self.partition_watermark(p) for p in self._parts)
        else:
            return
        if candidate > self.watermark:
            self.watermark = candidate

    def end_of_input(self) -> None:
        """A bounded input is exhausted: every window may fire."""
        self.watermark = MAX_WATERMARK

    def snapshot(self) -> dict[str, object]:
        return {
            "watermark": self.watermark,
            "partition_max": {str(p): c.max_ts for p, c in self._parts.items()},
        }

    def restore(self, watermark: int, partition_max: Mapping[int, int]) -> None:
        now = self._clock()
        self.watermark = max(self.watermark, watermark)
        for p, max_ts in partition_max.items():
            clock = self._parts.setdefault(p, _PartitionClock(last_active=now))
            clock.max_ts = max(clock.max_ts, max_ts)
