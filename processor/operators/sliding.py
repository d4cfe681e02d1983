"""Sliding windows: for each distinct event time t of a key, the aggregate of (t - size, t].

Each key keeps its recent events grouped by timestamp; a window's result is
computed when the watermark passes t and recomputed if a late event lands in it.
"""

from __future__ import annotations

import bisect
import heapq
from typing import Any

from processor.aggregations import Aggregation
from processor.operators.base import EventFields, WindowResult
from processor.operators.keyed import KeyedBufferOperator
from processor.windows import SlidingWindow

# An entry is [timestamp, accumulator of the events at that timestamp, emitted (0/1)].


def _ts(entry: list[Any]) -> int:
    value: int = entry[0]
    return value


class SlidingWindowOperator(KeyedBufferOperator):
    """Keyed aggregation over event-anchored sliding windows."""

    def __init__(
        self,
        column: str,
        window: SlidingWindow,
        aggregation: Aggregation[Any],
        fields: EventFields,
        allowed_lateness_ms: int = 0,
    ) -> None:
        super().__init__(column, aggregation, fields, allowed_lateness_ms)
        self.window = window
        self.size = window.size_ms

    def _too_late(self, t: int, watermark: int) -> bool:
        return t + self.allowed_lateness_ms <= watermark

    def _window_value(self, entries: list[list[Any]], t: int) -> Any:
        lo = bisect.bisect_left(entries, t - self.size + 1, key=_ts)
        hi = bisect.bisect_right(entries, t, key=_ts)
        agg = self.aggregation
        acc = entries[lo][1]
        for e in entries[lo + 1 : hi]:
            acc = agg.merge(acc, e[1])
        return agg.result(acc)

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
        agg = self.aggregation
        i = bisect.bisect_left(windows, t, key=_ts)
        if i < len(windows) and windows[i][0] == t:
            windows[i][1] = agg.merge(windows[i][1], agg.create(value))
        else:
            windows.insert(i, [t, agg.create(value), 0])
            heapq.heappush(timers, (t, key))
            heapq.heappush(timers, (self._expiry(t), key))
        # Windows already emitted that now contain this event are emitted again.
        j = i
        while j < len(windows) and windows[j][0] <= t + self.size - 1:
            u = windows[j][0]
            if u <= fired:
                windows[j][2] = 1
                pending.append(
                    WindowResult(u - self.size + 1, u + 1, key, self._window_value(windows, u))
                )
            j += 1

    def _expiry(self, t: int) -> int:
        # An event is needed while a window containing it may still change.
        return t + self.size - 1 + self.allowed_lateness_ms

    def _due(self, windows: list[list[Any]], key: str, at: int) -> list[WindowResult]:
        out = []
        for entry in windows:
            if entry[0] > at:
                break
            if not entry[2]:
                entry[2] = 1
                u = entry[0]
                out.append(
                    WindowResult(u - self.size + 1, u + 1, key, self._window_value(windows, u))
                )
        return out

    def _purge(self, windows: list[list[Any]], watermark: int) -> list[list[Any]]:
        return [e for e in windows if self._expiry(e[0]) > watermark]

    def _timers_of(self, windows: list[list[Any]], key: str) -> list[tuple[int, str]]:
        timers = [(self._expiry(e[0]), key) for e in windows]
        timers.extend((e[0], key) for e in windows if not e[2])
        return timers
