"""The job API: source → watermarks → key_by → window → aggregate → sink.

A `Job` is built fluently and validated by `build()` (also done by `run_job`):

    job = (Job("norway-traffic-max-speed")
           .source(KafkaSource("127.0.0.1:9092", "norway-traffic"))
           .watermarks(out_of_orderness_ms=5_000, idle_timeout_ms=30_000)
           .key_by("region")
           .window(TumblingWindow(60_000))
           .aggregate(Max("speed"))
           .sink(PostgresSink(dsn, "max_speed_per_region")))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from processor.aggregations import Aggregation, Count, Max, Mean, Min, Sum
from processor.errors import JobDefinitionError
from processor.operators.base import EventFields, WindowOperator
from processor.operators.fixed import FixedWindowOperator
from processor.operators.session import SessionWindowOperator
from processor.operators.sliding import SlidingWindowOperator
from processor.sideoutput import SideOutput
from processor.sinks.base import ResultColumns, Sink
from processor.sources.base import Source
from processor.windows import HoppingWindow, SessionWindow, SlidingWindow, TumblingWindow, Window


@dataclass(frozen=True, slots=True)
class Job:
    """An immutable job description; each builder method returns a new Job."""

    name: str
    source_: Source | None = None
    out_of_orderness_ms: int = 0
    idle_timeout_ms: int | None = None
    time_field: str = "event_time"
    key_field: str | None = None
    key_fn: Callable[[dict[str, Any]], Any] | None = None
    window_: Window | None = None
    allowed_lateness_ms: int = 0
    aggregation: Aggregation[Any] | None = None
    sink_: Sink | None = None
    side_output_: SideOutput | None = None
    key_column: str | None = None
    value_column: str | None = None
    consumer_group: str | None = None

    def source(self, source: Source) -> Job:
        return replace(self, source_=source)

    def watermarks(
        self,
        *,
        out_of_orderness_ms: int,
        idle_timeout_ms: int | None = None,
        time_field: str = "event_time",
    ) -> Job:
        if out_of_orderness_ms < 0:
            raise JobDefinitionError("out_of_orderness_ms must be zero or positive")
        return replace(
            self,
            out_of_orderness_ms=out_of_orderness_ms,
            idle_timeout_ms=idle_timeout_ms,
            time_field=time_field,
        )

    def key_by(self, key: str | Callable[[dict[str, Any]], Any]) -> Job:
        if isinstance(key, str):
            return replace(self, key_field=key, key_fn=None)
        return replace(self, key_field=None, key_fn=key)

    def window(self, window: Window, *, allowed_lateness_ms: int = 0) -> Job:
        if allowed_lateness_ms < 0:
            raise JobDefinitionError("allowed_lateness_ms must be zero or positive")
        return replace(self, window_=window, allowed_lateness_ms=allowed_lateness_ms)

    def aggregate(self, aggregation: Aggregation[Any]) -> Job:
        return replace(self, aggregation=aggregation)

    reduce = aggregate

    def sink(
        self, sink: Sink, *, key_column: str | None = None, value_column: str | None = None
    ) -> Job:
        return replace(self, sink_=sink, key_column=key_column, value_column=value_column)

    def side_output(self, side_output: SideOutput) -> Job:
        return replace(self, side_output_=side_output)

    def scale_out(self, consumer_group: str) -> Job:
        """Run as one member of a Kafka consumer group (state per partition, changelogs)."""
        return replace(self, consumer_group=consumer_group)

    # -- derived -------------------------------------------------------------

    def check(self) -> None:
        """Raise JobDefinitionError naming every missing piece."""
        missing = [
            what
            for what, value in (
                ("source", self.source_),
                ("window", self.window_),
                ("aggregate", self.aggregation),
                ("sink", self.sink_),
            )
            if value is None
        ]
        if self.key_field is None and self.key_fn is None:
            missing.append("key_by")
        if missing:
            raise JobDefinitionError(f"job {self.name!r} has no {', '.join(missing)}")
        if not self.name.replace("-", "").replace("_", "").isalnum():
            raise JobDefinitionError(
                f"job name {self.name!r}: use letters, digits, '-' and '_' (it names directories)"
            )

    @property
    def column(self) -> str:
        return "window-agg"

    def operator(self) -> WindowOperator:
        self.check()
        assert self.window_ is not None and self.aggregation is not None
        fields = EventFields(self.time_field, self.key_field, self.key_fn)
        w = self.window_
        if isinstance(w, TumblingWindow | HoppingWindow):
            return FixedWindowOperator(
                self.column, w, self.aggregation, fields, self.allowed_lateness_ms
            )
        if isinstance(w, SessionWindow):
            return SessionWindowOperator(
                self.column, w, self.aggregation, fields, self.allowed_lateness_ms
            )
        if isinstance(w, SlidingWindow):
            return SlidingWindowOperator(
                self.column, w, self.aggregation, fields, self.allowed_lateness_ms
            )
        raise JobDefinitionError(f"unknown window type {type(w).__name__}")

    def result_columns(self) -> ResultColumns:
        agg = self.aggregation
        value_type: Any = "json"
        if isinstance(agg, Max | Min | Sum | Mean):
            value_type = "float"
        elif isinstance(agg, Count):
            value_type = "int"
        return ResultColumns(
            key=self.key_column or self.key_field or "key",
            value=self.value_column or (agg.name if agg is not None else "value"),
            value_type=value_type,
        )
