"""Shared machinery of the per-key window operators (session and sliding).

These windows depend on each key's own event history, so the operator keeps
each live key's windows in memory, persists changed keys to its state column
(JSON per key) on flush, reloads them on restore, and fires through a heap of
(time, key) timers.
"""

from __future__ import annotations

import heapq
from abc import abstractmethod
from typing import Any

import orjson

from processor.aggregations import Aggregation
from processor.errors import EventDecodeError
from processor.eventtime import to_epoch_ms
from processor.operators.base import EventFields, LateEvent, WindowOperator, WindowResult
from processor.state.base import PartitionState, StateBatch
from processor.watermarks import MIN_WATERMARK, WatermarkTracker


class KeyedBufferOperator(WindowOperator):
    """Decode loop, per-key in-memory windows, timers and persistence."""

    def __init__(
        self,
        column: str,
        aggregation: Aggregation[Any],
        fields: EventFields,
        allowed_lateness_ms: int = 0,
    ) -> None:
        self.column = column
        self.aggregation = aggregation
        self.fields = fields
        self.allowed_lateness_ms = allowed_lateness_ms
        # Per partition: key -> list of windows (operator-specific lists).
        self._keys: dict[int, dict[str, list[list[Any]]]] = {}
        self._timers: dict[int, list[tuple[int, str]]] = {}
        self._changed: dict[int, set[str]] = {}
        self._pending: dict[int, list[WindowResult]] = {}
        self._fired: dict[int, int] = {}

    def ingest(
        self,
        partition: int,
        first_offset: int,
        values: list[bytes],
        tracker: WatermarkTracker,
        late: list[LateEvent],
        offsets: list[int] | None = None,
    ) -> None:
        agg = self.aggregation
        tf = self.fields.time_field
        kf = self.fields.key_field
        key_fn = self.fields.key_fn
        bound = tracker.bound
        wm = tracker.watermark
        others = tracker.others_min(partition)
        pmax = tracker.partition_max(partition)
        fired = self._fired.get(partition, MIN_WATERMARK)
        keys = self._keys.setdefault(partition, {})
        timers = self._timers.setdefault(partition, [])
        changed = self._changed.setdefault(partition, set())
        pending = self._pending.setdefault(partition, [])
        for i, raw in enumerate(values):
            try:
                event = orjson.loads(raw)
                t = event[tf]
                if type(t) is not int:
                    t = to_epoch_ms(t)
                k = event[kf] if key_fn is None else key_fn(event)
                if type(k) is not str:
                    k = str(k)
                x = agg.extract(event)
                agg.create(x)  # validates the value before any state changes
            except (EventDecodeError, KeyError, TypeError, ValueError, orjson.JSONDecodeError):
                late.append(
                    LateEvent(
                        partition, offsets[i] if offsets else first_offset + i, "undecodable", raw
                    )
                )
                continue
            if self._too_late(t, wm):
                late.append(
                    LateEvent(
                        partition, offsets[i] if offsets else first_offset + i, "too-late", raw
                    )
                )
                continue
            windows = keys.setdefault(k, [])
            self._accept(windows, t, k, x, fired, timers, pending)
            changed.add(k)
            if t > pmax:
                pmax = t
                candidate = t - bound
                if candidate > others:
                    candidate = others
                if candidate > wm:
                    wm = candidate
        tracker.observe(partition, pmax)

    @abstractmethod
    def _too_late(self, t: int, watermark: int) -> bool: ...

    @abstractmethod
    def _accept(
        self,
        windows: list[list[Any]],
        t: int,
        key: str,
        value: Any,
        fired: int,
        timers: list[tuple[int, str]],
        pending: list[WindowResult],
    ) -> None:
        """Add one accepted event to a key's windows; queue re-emissions of fired windows."""

    @abstractmethod
    def _due(self, windows: list[list[Any]], key: str, at: int) -> list[WindowResult]:
        """Results of the key's windows that complete at timer time `at`."""

    @abstractmethod
    def _purge(self, windows: list[list[Any]], watermark: int) -> list[list[Any]]:
        """The key's windows still needed once the watermark is `watermark`."""

    def fire(self, partition: int, state: PartitionState, watermark: int) -> list[WindowResult]:
        results = self._pending.pop(partition, [])
        fired = self._fired.get(partition, MIN_WATERMARK)
        if watermark <= fired:
            return results
        keys = self._keys.setdefault(partition, {})
        timers = self._timers.setdefault(partition, [])
        changed = self._changed.setdefault(partition, set())
        due_keys: set[str] = set()
        while timers and timers[0][0] <= watermark:
            at, key = heapq.heappop(timers)
            windows = keys.get(key)
            if windows:
                results.extend(self._due(windows, key, at))
                due_keys.add(key)
        # Purging is driven by the same timers: only keys that fired can expire.
        for key in due_keys | {k for k in changed if k in keys}:
            kept = self._purge(keys[key], watermark)
            if kept:
                keys[key] = kept
            else:
                del keys[key]
            changed.add(key)
        self._fired[partition] = watermark
        return results

    def flush(
        self, partition: int, state: PartitionState, batch: StateBatch, *, evict: bool = False
    ) -> None:
        # Live keys stay in memory (they are the timers' working set); `evict` cannot apply.
        keys = self._keys.get(partition, {})
        for key in self._changed.pop(partition, set()):
            windows = keys.get(key)
            raw_key = key.encode()
            if windows:
                batch.put(self.column, raw_key, orjson.dumps(windows))
            else:
                batch.delete(self.column, raw_key)
        batch.put_meta(
            f"fired:{self.column}", str(self._fired.get(partition, MIN_WATERMARK)).encode()
        )

    def restore(self, partition: int, state: PartitionState) -> None:
        self.drop(partition)
        fired = state.get_meta(f"fired:{self.column}")
        if fired is not None:
            self._fired[partition] = int(fired)
        keys: dict[str, list[list[Any]]] = {}
        timers: list[tuple[int, str]] = []
        for raw_key, raw_value in state.scan(self.column, b"", None):
            key = raw_key.decode()
            windows = orjson.loads(raw_value)
            keys[key] = windows
            timers.extend(self._timers_of(windows, key))
        heapq.heapify(timers)
        self._keys[partition] = keys
        self._timers[partition] = timers

    @abstractmethod
    def _timers_of(self, windows: list[list[Any]], key: str) -> list[tuple[int, str]]: ...

    def drop(self, partition: int) -> None:
        for store in (self._keys, self._timers, self._changed, self._pending, self._fired):
            store.pop(partition, None)

    def cached_entries(self) -> int:
        return sum(len(k) for k in self._keys.values())
