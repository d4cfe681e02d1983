"""Runs a job: restore from the latest checkpoint, then poll → window → fire → sink, checkpointing.

Exactly-once effect: a restart restores state, watermarks and source offsets
from the latest checkpoint and replays from there. Every result is an upsert
keyed by (window, key) and a window's result depends only on the events it
accepted, so results re-emitted during the replay rewrite the same rows and
the sink ends exactly as if nothing had failed. Sinks also commit the source
offsets each batch includes (reported by `committed_offsets`), in the same
transaction, as the record of how far their rows reach.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from processor import metrics as prom
from processor.checkpoints import CheckpointInfo, CheckpointStore
from processor.config import ProcessorConfig
from processor.errors import JobDefinitionError
from processor.guard import RecordingGuard, StartGuard
from processor.job import Job
from processor.operators.base import LateEvent, WindowOperator, WindowResult
from processor.state.base import PartitionState
from processor.state.rocksdb import RocksDBStateBackend
from processor.watermarks import WatermarkTracker

log = structlog.get_logger(__name__)


@dataclass
class JobMetrics:
    """Counters of one run (exported by the CLI and the benchmark)."""

    events_in: int = 0
    too_late: int = 0
    undecodable: int = 0
    results_emitted: int = 0
    results_replayed: int = 0
    batches: int = 0
    checkpoints: int = 0
    state_flushes: int = 0
    watermark: int = 0
    restored_checkpoint: int | None = None
    restore_seconds: float = 0.0
    last_checkpoint_seconds: float = 0.0
    side_output_by_reason: dict[str, int] = field(default_factory=dict)


class JobRunner:
    """One process running one job over the source partitions it owns."""

    def __init__(
        self,
        job: Job,
        config: ProcessorConfig | None = None,
        *,
        guard: StartGuard | None = None,
    ) -> None:
        job.check()
        assert job.source_ is not None and job.sink_ is not None
        self.job = job
        self.config = config or ProcessorConfig()
        self.guard: StartGuard = guard or RecordingGuard()
        self.source = job.source_
        if self.config.kafka and hasattr(self.source, "configure"):
            self.source.configure(self.config.kafka)
        self.sink = job.sink_
        self.side_output = job.side_output_
        self.operator: WindowOperator = job.operator()
        self.metrics = JobMetrics()
        self.tracker = WatermarkTracker(job.out_of_orderness_ms, job.idle_timeout_ms)
        self.backend = RocksDBStateBackend(self.config, job.name)
        self.checkpoints = CheckpointStore(
            self.config.checkpoint_root / job.name,
            retained=self.config.checkpoints_retained,
            incremental=self.config.incremental,
        )
        self.states: dict[int, PartitionState] = {}
        self.positions: dict[int, int] = {}
        self._sink_offsets: dict[int, int] | None = None
        self._ends: dict[int, int] | None = None
        self._last_checkpoint = time.monotonic()
        self._started = False

    # -- lifecycle -------------------------------------------------------

    def start(self) -> None:
        """Check destinations and state placement, restore, open source and sink."""
        if self.job.consumer_group is not None:
            raise JobDefinitionError(
                f"job {self.job.name}: consumer-group scale-out is not supported by this runner"
            )
        name = self.job.name
        self.guard.check_state_dir(self.config.localdir, job=name)
        self.guard.check_destination(self.sink.destination(), job=name, role="sink")
        if self.side_output is not None:
            self.guard.check_destination(
                self.side_output.destination(), job=name, role="side-output"
            )
        began = time.monotonic()
        partitions = self.source.partitions()
        latest = self.checkpoints.latest()
        self._restore(partitions, latest)
        self.metrics.restore_seconds = time.monotonic() - began
        self.sink.bind_source(self.source.topic)
        self.sink.open(name, self.job.result_columns())
        self._sink_offsets = self.sink.committed_offsets()
        if self.side_output is not None:
            self.side_output.open(name)
        self.source.open(self.positions)
        self._started = True
        log.info(
            "job_started",
            job=name,
            partitions=partitions,
            checkpoint=latest.id if latest else None,
            restore_seconds=round(self.metrics.restore_seconds, 3),
        )

    def _restore(self, partitions: list[int], latest: CheckpointInfo | None) -> None:
        for p in partitions:
            if latest is not None and p in latest.offsets:
                self.backend.restore_partition(p, latest.partition_path(p))
            else:
                self.backend.drop_partition(p)
            state = self.backend.open_partition(p, [self.operator.column])
            self.states[p] = state
            self.operator.restore(p, state)
            self.positions[p] = latest.offsets.get(p, 0) if latest is not None else 0
        self.tracker.assign(partitions)
        if latest is not None:
            self.tracker.restore(latest.watermark, latest.partition_max)
            self.metrics.restored_checkpoint = latest.id
            self.guard.record(
                {
                    "type": "recovery",
                    "job": self.job.name,
                    "checkpoint": latest.id,
                    "offsets": {str(p): o for p, o in sorted(latest.offsets.items())},
                }
            )

    def close(self) -> None:
        for closer in (self.source.close, self.sink.close, self.backend.close):
            try:
                closer()
            except Exception as exc:  # closing must release everything it can
                log.warning("close_failed", what=closer.__qualname__, error=str(exc))
        if self.side_output is not None:
            self.side_output.close()
        self.states.clear()

    # -- the loop --------------------------------------------------------

    def step(self, *, stop_at_end: bool = False) -> bool:
        """Process one batch; returns False once a bounded run has consumed everything."""
        cfg = self.config
        batches = self.source.poll(cfg.batch_size, cfg.poll_timeout_ms / 1000)
        late: list[LateEvent] = []
        op = self.operator
        tracker = self.tracker
        for b in batches:
            tracker.touch(b.partition)
            op.ingest(b.partition, b.first_offset, b.values, tracker, late, b.offsets)
            self.positions[b.partition] = b.next_offset
            self.metrics.events_in += len(b.values)
        tracker.check_idle()
        finished = False
        if stop_at_end:
            if self._ends is None:
                self._ends = self.source.end_offsets()
            finished = self._reached_end(self._ends)
            if finished:
                tracker.end_of_input()
        results: list[WindowResult] = []
        for p, state in self.states.items():
            results.extend(op.fire(p, state, tracker.watermark))
        self._emit(results, late)
        self.metrics.batches += 1
        self.metrics.watermark = tracker.watermark
        name = self.job.name
        prom.EVENTS.labels(name).inc(sum(len(b.values) for b in batches))
        prom.RESULTS.labels(name).inc(len(results))
        if -(2**53) < tracker.watermark < 2**53:
            prom.WATERMARK.labels(name).set(tracker.watermark)
        if op.cached_entries() > cfg.state_cache_entries:
            self._flush_state(evict=True)
        if (
            finished
            or time.monotonic() - self._last_checkpoint >= cfg.checkpoint_interval_ms / 1000
        ):
            self.checkpoint()
        return not finished

    def _reached_end(self, ends: Mapping[int, int]) -> bool:
        known = self.source.positions()
        return all(
            max(self.positions.get(p, 0), known.get(p, -1)) >= end for p, end in ends.items()
        )

    def _emit(self, results: list[WindowResult], late: list[LateEvent]) -> None:
        sink_offsets = self._sink_offsets
        if sink_offsets is not None and all(
            pos <= sink_offsets.get(p, 0) for p, pos in self.positions.items()
        ):
            # Replaying input the sink already reflects: count the rewrites.
            self.metrics.results_replayed += len(results)
        else:
            self._sink_offsets = None
        if results:
            self.sink.write(results, self.positions)
            self.metrics.results_emitted += len(results)
        if late:
            for e in late:
                if e.reason == "too-late":
                    self.metrics.too_late += 1
                else:
                    self.metrics.undecodable += 1
                by = self.metrics.side_output_by_reason
                by[e.reason] = by.get(e.reason, 0) + 1
                prom.SIDE_OUTPUT.labels(self.job.name, e.reason).inc()
            if self.side_output is not None:
                self.side_output.write(late)

    def _flush_state(self, *, evict: bool) -> None:
        for p, state in self.states.items():
            batch = state.new_batch()
            self.operator.flush(p, state, batch, evict=evict)
            batch.put_meta("offset", str(self.positions[p]).encode())
            state.commit(batch)
        self.metrics.state_flushes += 1

    def checkpoint(self) -> CheckpointInfo:
        """Flush cached state and write a consistent checkpoint of state + offsets + watermarks."""
        began = time.monotonic()
        self._flush_state(evict=False)
        info = self.checkpoints.write(
            self.job.name,
            self.states,
            offsets=self.positions,
            watermark=self.tracker.watermark,
            partition_max={p: self.tracker.partition_max(p) for p in self.states},
        )
        self.source.commit(self.positions)
        self.metrics.checkpoints += 1
        self.metrics.last_checkpoint_seconds = time.monotonic() - began
        prom.CHECKPOINTS.labels(self.job.name).inc()
        prom.CHECKPOINT_SECONDS.labels(self.job.name).observe(self.metrics.last_checkpoint_seconds)
        self._last_checkpoint = time.monotonic()
        return info

    def run(self, *, stop_at_end: bool = False, stop: threading.Event | None = None) -> JobMetrics:
        """Start (if needed) and loop until a bounded input ends or `stop` is set.

        Raises the process's garbage-collector thresholds (`streaming_gc`): `run` is
        meant to own its process, as `fjordgate processor run` does.
        """
        streaming_gc()
        if not self._started:
            try:
                self.start()
            except BaseException:
                self.close()
                raise
        try:
            while stop is None or not stop.is_set():
                if not self.step(stop_at_end=stop_at_end):
                    break
            else:
                self.checkpoint()
        finally:
            self.close()
        return self.metrics


def streaming_gc() -> None:
    """Collect young objects 140x less often than CPython's default.

    A window that fires emits up to millions of results and frees as many
    accumulators; with the default thresholds the cyclic collector walks them
    again and again. Measured at 10 million keys: 35 % more events per second.
    The processor's objects hold no reference cycles, so nothing accumulates.
    """
    gc.set_threshold(100_000, 50, 100)


def make_runner(
    job: Job, config: ProcessorConfig | None = None, *, guard: StartGuard | None = None
) -> JobRunner:
    """A single-process runner, or a consumer-group member when the job scales out."""
    if job.consumer_group is not None:
        from processor.scaleout import GroupJobRunner

        return GroupJobRunner(job, config, guard=guard)
    return JobRunner(job, config, guard=guard)


def run_job(
    job: Job,
    config: ProcessorConfig | None = None,
    *,
    guard: StartGuard | None = None,
    stop_at_end: bool = False,
    stop: threading.Event | None = None,
) -> JobMetrics:
    """Run a job until its bounded input ends (`stop_at_end`) or `stop` is set."""
    return make_runner(job, config, guard=guard).run(stop_at_end=stop_at_end, stop=stop)


def describe_metrics(metrics: JobMetrics) -> dict[str, Any]:
    """Metrics as a JSON-able dict (for the CLI and logs)."""
    return {k: v for k, v in metrics.__dict__.items()}
