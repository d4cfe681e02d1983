"""Session windows: per-key windows that grow while events arrive closer than the gap.

A late event that bridges two sessions merges them; a session already emitted
and now absorbed is retracted so upserting sinks delete it.
"""

from __future__ import annotations

import heapq
from typing import Any

from processor.aggregations import Aggregation
from processor.operators.base import EventFields, WindowResult
from processor.operators.keyed import KeyedBufferOperator
from processor.windows import SessionWindow

# A window is [start, end, accumulator, emitted (0/1)].


class SessionWindowOperator(KeyedBufferOperator):
    """Keyed aggregation over gap-based session windows."""

    def __init__(
        self,
        column: str,
        window: SessionWindow,
        aggregation: Aggregation[Any],
        fields: EventFields,
        allowed_lateness_ms: int = 0,
    ) -> None:
        super().__init__(column, aggregation, fields, allowed_lateness_ms)
        self.window = window
        self.gap = window.gap_ms

    def _too_late(self, t: int, watermark: int) -> bool:
        return t + self.gap - 1 + self.allowed_lateness_ms <= watermark

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
        start, end, acc = t, t + self.gap, agg.create(value)
        keep: list[list[Any]] = []
        absorbed: list[list[Any]] = []
        for w in windows:
            (absorbed if w[0] <= end and w[1] >= start else keep).append(w)
        for w in absorbed:
            start, end = min(start, w[0]), max(end, w[1])
            acc = agg.merge(w[2], acc)
        for w in absorbed:
            if w[3] and (w[0], w[1]) != (start, end):
                pending.append(WindowResult(w[0], w[1], key, None, retract=True))
        merged: list[Any] = [start, end, acc, 0]
        if end - 1 <= fired:
            pending.append(WindowResult(start, end, key, agg.result(acc)))
            merged[3] = 1
        else:
            heapq.heappush(timers, (end - 1, key))
        heapq.heappush(timers, (self._expiry(end), key))
        keep.append(merged)
        keep.sort(key=lambda w: w[0])
        windows[:] = keep

    def _expiry(self, end: int) -> int:
        # Kept until no acceptable event could still merge into it.
        return end - 1 + self.allowed_lateness_ms + self.gap

    def _due(self, windows: list[list[Any]], key: str, at: int) -> list[WindowResult]:
        out = []
        for w in windows:
            if not w[3] and w[1] - 1 <= at:
                w[3] = 1
                out.append(WindowResult(w[0], w[1], key, self.aggregation.result(w[2])))
        return out

    def _purge(self, windows: list[list[Any]], watermark: int) -> list[list[Any]]:
        return [w for w in windows if self._expiry(w[1]) > watermark]

    def _timers_of(self, windows: list[list[Any]], key: str) -> list[tuple[int, str]]:
        timers = [(self._expiry(w[1]), key) for w in windows]
        timers.extend((w[1] - 1, key) for w in windows if not w[3])
        return timers
