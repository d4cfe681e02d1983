"""The embedded local log: durable appends, group commit, readers, torn-tail repair."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processor import LocalLog, LocalLogError


def test_appended_records_read_back_in_offset_order(tmp_path: Path) -> None:
    with LocalLog.open(tmp_path, partitions=1) as log:
        positions = [log.append("t", f"v{i}".encode()) for i in range(5)]
        assert [p.offset for p in positions] == [0, 1, 2, 3, 4]
        with log.reader("t") as reader:
            records = reader.poll()
        assert [r.value for r in records] == [f"v{i}".encode() for i in range(5)]
        assert [r.offset for r in records] == [0, 1, 2, 3, 4]
        assert log.end_offset("t", 0) == 5


def test_records_survive_reopen(tmp_path: Path) -> None:
    with LocalLog.open(tmp_path, partitions=3) as log:
        log.append_many("t", [(f"k{i}".encode(), f"v{i}".encode()) for i in range(100)])
    with LocalLog.open(tmp_path) as log:
        assert log.partition_count("t") == 3
        assert log.recoveries == []
        with log.reader("t") as reader:
            got = []
            while batch := reader.poll(max_records=7):
                got.extend(batch)
        assert sorted(r.value for r in got) == sorted(f"v{i}".encode() for i in range(100))


def test_same_key_always_lands_in_the_same_partition(tmp_path: Path) -> None:
    with LocalLog.open(tmp_path, partitions=4) as log:
        first = log.append("t", b"a", key=b"region-7")
        again = log.append_many("t", [(b"region-7", b"b"), (b"region-7", b"c")])
        assert {p.partition for p in again} == {first.partition}
        assert [p.offset for p in again] == [first.offset + 1, first.offset + 2]


def test_reader_seeks_to_any_offset_beyond_the_sparse_index(tmp_path: Path) -> None:
    with LocalLog.open(tmp_path) as log:
        log.append_many("t", [(None, str(i).encode()) for i in range(3000)])
        with log.reader("t", start={0: 2500}) as reader:
            first = reader.poll(max_records=1)[0]
            assert (first.offset, first.value) == (2500, b"2500")
            reader.seek(0, 1024)
            assert reader.poll(max_records=1)[0].value == b"1024"
            assert reader.position(0) == 1025


def test_seek_past_the_durable_end_is_refused(tmp_path: Path) -> None:
    with LocalLog.open(tmp_path) as log:
        log.append("t", b"x")
        with log.reader("t") as reader, pytest.raises(LocalLogError, match="outside"):
            reader.seek(0, 2)


def test_keys_and_timestamps_round_trip(tmp_path: Path) -> None:
    with LocalLog.open(tmp_path) as log:
        log.append("t", b"v", key=b"k", timestamp_ms=1234)
        log.append("t", b"w")
        with log.reader("t") as reader:
            a, b = reader.poll()
        assert (a.key, a.timestamp_ms) == (b"k", 1234)
        assert b.key is None


def test_torn_tail_is_cut_back_and_recorded(tmp_path: Path) -> None:
    with LocalLog.open(tmp_path) as log:
        log.append_many("t", [(None, b"x" * 50) for _ in range(10)])
    path = tmp_path / "t" / "0.log"
    whole = path.stat().st_size
    with path.open("ab") as f:
        f.write(b"\x40\x00\x00\x00\x01\x02")  # a frame header cut mid-way
    with LocalLog.open(tmp_path) as log:
        assert len(log.recoveries) == 1
        rec = log.recoveries[0]
        assert (rec.topic, rec.partition, rec.valid_bytes, rec.cut_bytes) == ("t", 0, whole, 6)
        assert rec.next_offset == 10
        assert path.stat().st_size == whole
        assert log.append("t", b"after").offset == 10


def test_corrupt_last_record_is_cut_back(tmp_path: Path) -> None:
    with LocalLog.open(tmp_path) as log:
        log.append_many("t", [(None, b"abc"), (None, b"def")])
    path = tmp_path / "t" / "0.log"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))
    with LocalLog.open(tmp_path) as log:
        with log.reader("t") as reader:
            assert [r.value for r in reader.poll()] == [b"abc"]
        assert log.recoveries[0].next_offset == 1


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    values=st.lists(st.binary(min_size=0, max_size=40), min_size=1, max_size=20),
    cut=st.floats(min_value=0.0, max_value=1.0),
)
def test_a_crash_at_any_byte_leaves_a_whole_prefix(
    tmp_path_factory: pytest.TempPathFactory, values: list[bytes], cut: float
) -> None:
    root = tmp_path_factory.mktemp("log")
    with LocalLog.open(root) as log:
        log.append_many("t", [(None, v) for v in values])
    path = root / "t" / "0.log"
    size = path.stat().st_size
    os.truncate(path, int(size * cut))
    with LocalLog.open(root) as log, log.reader("t") as reader:
        got = [r.value for r in reader.poll(max_records=1000)]
    assert got == values[: len(got)]


def test_concurrent_appends_share_one_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = LocalLog.open(tmp_path)
    log.create_topic("t", 1)
    release = threading.Event()
    calls: list[int] = []
    real = os.fdatasync

    def slow_first_fsync(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 1:
            release.wait()
        real(fd)

    monkeypatch.setattr(os, "fdatasync", slow_first_fsync)
    threads = [threading.Thread(target=log.append, args=("t", b"r%d" % i)) for i in range(3)]
    threads[0].start()
    while not calls:
        threading.Event().wait(0.001)
    threads[1].start()
    threads[2].start()
    part = log._partition("t", 0)
    while part.next_offset < 3:  # the two followers have written and now wait for a sync
        threading.Event().wait(0.001)
    release.set()
    for t in threads:
        t.join()
    assert len(calls) == 2
    assert log.end_offset("t", 0) == 3
    log.close()


def test_consumer_group_offsets_are_committed_durably(tmp_path: Path) -> None:
    with LocalLog.open(tmp_path, partitions=2) as log:
        log.commit_offsets("g", "t", {0: 5})
        log.commit_offsets("g", "t", {1: 7})
    with LocalLog.open(tmp_path) as log:
        assert log.committed_offsets("g", "t") == {0: 5, 1: 7}
        assert log.committed_offsets("other", "t") == {}


def test_reader_waits_for_an_append_from_another_thread(tmp_path: Path) -> None:
    with LocalLog.open(tmp_path) as log:
        log.create_topic("t", 1)
        with log.reader("t") as reader:
            assert reader.poll(timeout_s=0) == []
            timer = threading.Timer(0.05, lambda: log.append("t", b"late"))
            timer.start()
            got: list[bytes] = []
            while not got:
                got = [r.value for r in reader.poll(timeout_s=1.0)]
            timer.join()
        assert got == [b"late"]


def test_values_poll_returns_runs_per_partition_with_their_first_offsets(tmp_path: Path) -> None:
    with LocalLog.open(tmp_path, partitions=2) as log:
        log.append_many("t", [(None, b"a"), (None, b"b"), (None, b"c")], partition=1)
        log.append("t", b"z", partition=0, key=b"k")
        with log.reader("t", start={1: 1}) as reader:
            runs = reader.poll_values(max_records=10)
        assert sorted(runs) == [(0, 0, [b"z"]), (1, 1, [b"b", b"c"])]
