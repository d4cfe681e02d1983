"""Helpers of the processor tests: feed events through a LocalLog, run a job, read results."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from processor import (
    Aggregation,
    FileSideOutput,
    Job,
    JobMetrics,
    JsonlSink,
    LocalLog,
    LocalLogSource,
    ProcessorConfig,
    Window,
    run_job,
)
from processor.sinks.jsonl import read_jsonl_results

Event = tuple[int, str, int]  # (event time ms, key, value)
_counter = itertools.count()


def _run_events(
    root: Path,
    events: Sequence[Event],
    window: Window,
    aggregation: Aggregation[Any],
    *,
    out_of_orderness_ms: int,
    allowed_lateness_ms: int = 0,
    batch_size: int = 10_000,
    partitions: int = 1,
    partition_of: Callable[[Event], int] | None = None,
    cache_entries: int = 2_000_000,
    checkpoint_interval_ms: int = 10_000,
) -> tuple[dict[tuple[str, str, str], object], JobMetrics, Path]:
    """Run a bounded job over `events` in this arrival order; final result per window and key."""
    run = root / f"run{next(_counter)}"
    log = LocalLog.open(run / "log", partitions=partitions)
    log.create_topic("in", partitions)
    for e in events:
        p = 0 if partitions == 1 else (partition_of(e) if partition_of else hash(e[1]) % partitions)
        body = orjson.dumps({"event_time": e[0], "k": e[1], "v": e[2]})
        log.append("in", body, partition=p)
    job = (
        Job("prop")
        .source(LocalLogSource(log, "in"))
        .watermarks(out_of_orderness_ms=out_of_orderness_ms)
        .key_by("k")
        .window(window, allowed_lateness_ms=allowed_lateness_ms)
        .aggregate(aggregation)
        .sink(JsonlSink(run / "out.jsonl"))
        .side_output(FileSideOutput(run / "late.jsonl"))
    )
    config = ProcessorConfig(
        localdir=run / "state",
        batch_size=batch_size,
        poll_timeout_ms=0,
        state_cache_entries=cache_entries,
        checkpoint_interval_ms=checkpoint_interval_ms,
    )
    metrics = run_job(job, config, stop_at_end=True)
    log.close()
    out = run / "out.jsonl"
    results = read_jsonl_results(out, "k") if out.exists() else {}
    return results, metrics, run


RunEvents = Callable[..., tuple[dict[tuple[str, str, str], object], JobMetrics, Path]]


@pytest.fixture
def run_events() -> RunEvents:
    """Runs a bounded job over events fed through a LocalLog (see `_run_events`)."""
    return _run_events


@pytest.fixture
def processor_config(tmp_path: Path) -> ProcessorConfig:
    return ProcessorConfig(localdir=tmp_path / "state", batch_size=100, poll_timeout_ms=0)
