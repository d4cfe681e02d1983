"""Window assignment and watermarks, as properties and as specific cases."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from processor import MIN_WATERMARK, HoppingWindow, TumblingWindow, WatermarkTracker
from processor.eventtime import to_epoch_ms

times = st.integers(min_value=-(10**13), max_value=10**13)


@given(ts=times, size=st.integers(min_value=1, max_value=10**7), offset=st.integers(0, 10**6))
def test_a_tumbling_window_is_the_one_aligned_window_holding_the_event(
    ts: int, size: int, offset: int
) -> None:
    ((start, end),) = TumblingWindow(size, offset).assign(ts)
    assert start <= ts < end
    assert end - start == size
    assert (start - offset) % size == 0


@given(ts=times, advance=st.integers(min_value=1, max_value=10_000), k=st.integers(1, 8))
def test_hopping_windows_are_every_aligned_window_holding_the_event(
    ts: int, advance: int, k: int
) -> None:
    size = advance * k
    windows = HoppingWindow(size, advance).assign(ts)
    assert len(windows) == k
    assert all(s <= ts < e and e - s == size and s % advance == 0 for s, e in windows)


@given(ms=st.integers(min_value=0, max_value=4_102_444_800_000))
def test_iso_8601_and_epoch_milliseconds_name_the_same_instant(ms: int) -> None:
    from processor.sinks.base import iso_ms

    assert to_epoch_ms(iso_ms(ms)) == ms
    assert to_epoch_ms(ms) == ms


def test_watermark_is_the_lowest_partition_bound() -> None:
    tracker = WatermarkTracker(out_of_orderness_ms=5_000)
    tracker.assign([0, 1])
    tracker.observe(0, 100_000)
    assert tracker.watermark == MIN_WATERMARK  # partition 1 has said nothing yet
    tracker.observe(1, 50_000)
    assert tracker.watermark == 50_000 - 5_001
    tracker.observe(1, 40_000)
    assert tracker.watermark == 50_000 - 5_001  # never goes back


def test_an_idle_partition_stops_holding_the_watermark_back() -> None:
    now = [0.0]
    tracker = WatermarkTracker(out_of_orderness_ms=0, idle_timeout_ms=30_000, clock=lambda: now[0])
    tracker.assign([0, 1])
    tracker.observe(0, 10_000)
    tracker.observe(1, 2_000)
    assert tracker.watermark == 1_999
    now[0] = 20.0
    tracker.touch(0)
    tracker.observe(0, 90_000)
    assert tracker.check_idle() == []
    now[0] = 31.0
    assert tracker.check_idle() == [1]
    assert tracker.watermark == 89_999
    tracker.touch(1)  # it speaks again and counts again, without moving the watermark back
    tracker.observe(1, 3_000)
    assert tracker.watermark == 89_999


def test_rebase_steps_back_to_a_newly_assigned_partition() -> None:
    tracker = WatermarkTracker(out_of_orderness_ms=0)
    tracker.assign([0])
    tracker.observe(0, 100_000)
    tracker.assign([1])
    tracker.restore(MIN_WATERMARK, {1: 40_000})
    tracker.rebase()
    assert tracker.watermark == 39_999


def test_a_quiet_partition_does_not_stall_the_job_after_the_idle_timeout(tmp_path: Path) -> None:
    import orjson

    from processor import Job, JobRunner, JsonlSink, LocalLog, LocalLogSource, Max, ProcessorConfig

    log = LocalLog.open(tmp_path / "log", partitions=2)
    log.append_many(
        "in",
        [
            (None, orjson.dumps({"event_time": t, "region": "oslo", "speed": t}))
            for t in (1, 70_000)
        ],
        partition=0,
    )  # partition 1 never sends anything
    job = (
        Job("idle")
        .source(LocalLogSource(log, "in"))
        .watermarks(out_of_orderness_ms=0, idle_timeout_ms=30_000)
        .key_by("region")
        .window(TumblingWindow(60_000))
        .aggregate(Max("speed"))
        .sink(JsonlSink(tmp_path / "out.jsonl"))
    )
    runner = JobRunner(job, ProcessorConfig(localdir=tmp_path / "state", poll_timeout_ms=0))
    now = [0.0]
    runner.tracker = WatermarkTracker(0, 30_000, clock=lambda: now[0])
    runner.start()
    runner.step()
    assert runner.metrics.results_emitted == 0  # held back by the silent partition
    now[0] = 31.0
    runner.step()
    assert runner.metrics.results_emitted == 1  # [0, 60 s) fired without partition 1
    runner.close()


def test_when_every_partition_is_idle_the_watermark_moves_to_the_furthest() -> None:
    now = [0.0]
    tracker = WatermarkTracker(out_of_orderness_ms=0, idle_timeout_ms=1_000, clock=lambda: now[0])
    tracker.assign([0, 1])
    tracker.observe(0, 5_000)
    tracker.observe(1, 9_000)
    assert tracker.watermark == 4_999
    now[0] = 2.0
    assert tracker.check_idle() == [0, 1]
    assert tracker.watermark == 8_999
