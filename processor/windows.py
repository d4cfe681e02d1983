"""Event-time window definitions and their assignment of a timestamp to windows.

Windows are half-open `[start, end)` in epoch milliseconds. A window fires when
the watermark reaches `end - 1` and is late (its state purged, new events for
it sent to the side output) once the watermark reaches `end - 1 + lateness`.
"""

from __future__ import annotations

from dataclasses import dataclass

from processor.errors import JobDefinitionError


def _positive(name: str, value: int) -> None:
    if value <= 0:
        raise JobDefinitionError(f"{name} must be a positive number of milliseconds, got {value}")


@dataclass(frozen=True, slots=True)
class TumblingWindow:
    """Fixed, non-overlapping windows of `size_ms`, aligned to epoch + `offset_ms`."""

    size_ms: int
    offset_ms: int = 0

    def __post_init__(self) -> None:
        _positive("tumbling window size", self.size_ms)

    def assign(self, ts: int) -> list[tuple[int, int]]:
        start = ts - (ts - self.offset_ms) % self.size_ms
        return [(start, start + self.size_ms)]


@dataclass(frozen=True, slots=True)
class HoppingWindow:
    """Overlapping windows of `size_ms` starting every `advance_ms` (Flink's sliding windows)."""

    size_ms: int
    advance_ms: int
    offset_ms: int = 0

    def __post_init__(self) -> None:
        _positive("hopping window size", self.size_ms)
        _positive("hopping window advance", self.advance_ms)
        if self.advance_ms > self.size_ms:
            raise JobDefinitionError(
                f"hopping window advance ({self.advance_ms} ms) is larger than its size "
                f"({self.size_ms} ms): events between windows would be lost; use a smaller advance"
            )

    def assign(self, ts: int) -> list[tuple[int, int]]:
        last = ts - (ts - self.offset_ms) % self.advance_ms
        out = []
        start = last
        while start > ts - self.size_ms:
            out.append((start, start + self.size_ms))
            start -= self.advance_ms
        return out


@dataclass(frozen=True, slots=True)
class SlidingWindow:
    """One window per distinct event time `t` of a key, covering `[t - size_ms + 1, t]`.

    The result at `t` aggregates every event of the key in the `size_ms` that end
    with it (Kafka Streams' and Quix Streams' sliding windows, keyed on the
    event that closes the window).
    """

    size_ms: int

    def __post_init__(self) -> None:
        _positive("sliding window size", self.size_ms)

    def assign(self, ts: int) -> list[tuple[int, int]]:
        return [(ts - self.size_ms + 1, ts + 1)]


@dataclass(frozen=True, slots=True)
class SessionWindow:
    """Per-key activity sessions: events closer than `gap_ms` share a window.

    An event at `t` opens `[t, t + gap_ms)`; windows that overlap or touch merge.
    """

    gap_ms: int

    def __post_init__(self) -> None:
        _positive("session gap", self.gap_ms)

    def assign(self, ts: int) -> list[tuple[int, int]]:
        return [(ts, ts + self.gap_ms)]


Window = TumblingWindow | HoppingWindow | SlidingWindow | SessionWindow
