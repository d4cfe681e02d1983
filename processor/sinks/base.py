"""The sink interface: write results together with the source offsets they reflect.

A sink commits each batch of results atomically with the offsets the results
include and reports them back on restart; the runner then replays from its
checkpoint without re-emitting what the sink already holds. Results are an
upsert stream keyed by (window start, window end, key).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from processor.operators.base import WindowResult


@dataclass(frozen=True, slots=True)
class ResultColumns:
    """How a result row is named: the key column, the value column and its type."""

    key: str = "key"
    value: str = "value"
    value_type: Literal["float", "int", "json"] = "float"


def iso_ms(epoch_ms: int) -> str:
    """Epoch milliseconds as an ISO 8601 UTC string with millisecond precision."""
    dt = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Sink(ABC):
    """A destination for window results with an exactly-once effect."""

    kind: str

    @abstractmethod
    def destination(self) -> str:
        """The address checked against the policy's egress rules and audited."""

    @abstractmethod
    def open(self, job: str, columns: ResultColumns) -> None: ...

    def bind_source(self, topic: str) -> None:  # noqa: B027 - optional hook
        """Told the job's source topic before `open`; sinks that need it override."""

    @abstractmethod
    def committed_offsets(self) -> dict[int, int] | None:
        """Source offsets included in the last committed batch (None: never written)."""

    @abstractmethod
    def write(self, results: Sequence[WindowResult], offsets: Mapping[int, int]) -> None:
        """Upsert results (delete retractions) and record `offsets`, atomically."""

    @abstractmethod
    def close(self) -> None: ...


def last_per_window_key(
    results: Sequence[WindowResult],
) -> dict[tuple[int, int, str], WindowResult]:
    """Fold an ordered batch to the last result per (start, end, key), as upserts would."""
    out: dict[tuple[int, int, str], WindowResult] = {}
    for r in results:
        out[(r.window_start, r.window_end, r.key)] = r
    return out
