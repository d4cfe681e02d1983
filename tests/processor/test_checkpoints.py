"""Checkpoints: consistent (state + offsets + watermarks), retained N, restored on start."""

from __future__ import annotations

from pathlib import Path

import orjson

from processor import (
    Job,
    JobRunner,
    JsonlSink,
    LocalLog,
    LocalLogSource,
    Max,
    ProcessorConfig,
    TumblingWindow,
)

BASE = 1_764_000_000_000


def fill(log: LocalLog, start: int, n: int) -> None:
    log.append_many(
        "in",
        [
            (
                None,
                orjson.dumps({"event_time": BASE + i * 1_000, "region": f"r{i % 7}", "speed": i}),
            )
            for i in range(start, start + n)
        ],
    )


def job(log: LocalLog, tmp: Path) -> Job:
    return (
        Job("chk")
        .source(LocalLogSource(log, "in"))
        .watermarks(out_of_orderness_ms=0)
        .key_by("region")
        .window(TumblingWindow(3_600_000))  # one long window: everything stays in state
        .aggregate(Max("speed"))
        .sink(JsonlSink(tmp / "out.jsonl"))
    )


def test_checkpoints_are_retained_n_and_carry_offsets_and_watermark(tmp_path: Path) -> None:
    log = LocalLog.open(tmp_path / "log")
    fill(log, 0, 100)
    config = ProcessorConfig(localdir=tmp_path / "state", checkpoints_retained=2, batch_size=30,
                             poll_timeout_ms=0)  # fmt: skip
    runner = JobRunner(job(log, tmp_path), config)
    runner.start()
    for _ in range(4):
        runner.step()
        runner.checkpoint()
    found = runner.checkpoints.list()
    assert [c.id for c in found] == [3, 4]
    latest = found[-1]
    assert latest.offsets == {0: 100}
    assert latest.watermark == BASE + 99_000 - 1
    runner.close()


def test_a_restart_restores_state_from_the_latest_checkpoint(tmp_path: Path) -> None:
    log = LocalLog.open(tmp_path / "log")
    fill(log, 0, 50)
    config = ProcessorConfig(localdir=tmp_path / "state", batch_size=1_000, poll_timeout_ms=0)
    first = JobRunner(job(log, tmp_path), config)
    first.start()
    first.step()
    first.checkpoint()
    first.close()  # nothing fired: the one-hour window is still open

    fill(log, 50, 10)
    second = JobRunner(job(log, tmp_path), config)
    second.start()
    assert second.metrics.restored_checkpoint == 1
    assert second.positions == {0: 50}
    second.run(stop_at_end=True)
    assert second.metrics.events_in == 10  # only the new events were read
    rows = [orjson.loads(line) for line in (tmp_path / "out.jsonl").read_bytes().splitlines()]
    maxima = {r["region"]: r["max_speed"] for r in rows if "region" in r}
    assert maxima == {f"r{k}": max(i for i in range(60) if i % 7 == k) for k in range(7)}


def test_full_checkpoints_do_not_share_files_with_the_live_state(tmp_path: Path) -> None:
    log = LocalLog.open(tmp_path / "log")
    fill(log, 0, 20)
    config = ProcessorConfig(localdir=tmp_path / "state", incremental=False, poll_timeout_ms=0)
    runner = JobRunner(job(log, tmp_path), config)
    runner.start()
    runner.step()
    info = runner.checkpoint()
    runner.close()
    ssts = list(info.path.rglob("*.sst"))
    assert ssts
    assert all(f.stat().st_nlink == 1 for f in ssts)


def test_the_state_cache_count_returns_to_zero_once_every_window_fired(tmp_path: Path) -> None:
    log = LocalLog.open(tmp_path / "log")
    fill(log, 0, 300)
    config = ProcessorConfig(localdir=tmp_path / "state", batch_size=50, poll_timeout_ms=0)
    runner = JobRunner(job(log, tmp_path), config)
    runner.start()
    runner.step()
    runner._flush_state(evict=True)  # keys now live in RocksDB, later partials in the cache
    while runner.step(stop_at_end=True):
        pass
    assert runner.operator.cached_entries() == 0
    runner.close()
