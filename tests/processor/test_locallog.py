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


def test_one_poll_returns_one_read_chunk_so_reading_everything_polls_until_empty(
    tmp_path: Path,
) -> None:
    """The kill -9 test of the embedded gateway once 'lost' 406 acknowledged events: its
    check read each partition with one `poll(10_000_000)`, which returns at most one 1 MiB
    read chunk, so every record past the first MiB of a partition looked missing. The
    records were in the log; reading until `poll` returns [] finds every one."""
    values = [f'{{"event_id": "e-{i}", "pad": "{"x" * 300}"}}'.encode() for i in range(8_000)]
    with LocalLog.open(tmp_path, partitions=1) as log:
        log.append_many("t", [(None, v) for v in values])
    assert (tmp_path / "t" / "0.log").stat().st_size > 2 * (1 << 20)
    with LocalLog.open(tmp_path) as log:
        with log.reader("t", [0]) as reader:
            one = reader.poll(10_000_000)
        assert 0 < len(one) < len(values)  # the old check's view: the tail "missing"
        got: list[bytes] = []
        with log.reader("t", [0]) as reader:
            while batch := reader.poll(100_000):
                got.extend(r.value for r in batch)
        assert got == values


def test_the_gateway_index_rebuild_reads_past_the_first_read_chunk(tmp_path: Path) -> None:
    """recent_event_ids (the duplicate index after a restart) must see every event id."""
    from gateway.publish import LocalLogPublisher

    ids = [f"e-{i}" for i in range(6_000)]
    with LocalLog.open(tmp_path, partitions=2) as log:
        publisher = LocalLogPublisher(log, ["t"], partitions=2)
        log.append_many(
            "t",
            [(i.encode(), f'{{"event_id": "{i}", "pad": "{"y" * 400}"}}'.encode()) for i in ids],
        )
    with LocalLog.open(tmp_path) as log:
        publisher = LocalLogPublisher(log, ["t"], partitions=2)
        assert sorted(publisher.recent_event_ids()) == sorted(ids)


def _three_records(tmp_path: Path) -> tuple[Path, list[int]]:
    """A one-partition log of three 100-byte-value records; returns its file and frame starts."""
    with LocalLog.open(tmp_path) as log:
        log.append_many("t", [(None, bytes([65 + i]) * 100) for i in range(3)])
    path = tmp_path / "t" / "0.log"
    frame = path.stat().st_size // 3
    return path, [0, frame, 2 * frame]


def test_a_flipped_bit_in_the_middle_is_refused_not_cut(tmp_path: Path) -> None:
    path, starts = _three_records(tmp_path)
    raw = bytearray(path.read_bytes())
    raw[starts[1] + 40] ^= 0x01  # inside the second record's value
    path.write_bytes(bytes(raw))
    with pytest.raises(LocalLogError) as err:
        LocalLog.open(tmp_path)
    message = str(err.value)
    assert str(path) in message and f"byte {starts[1]}" in message and "CRC mismatch" in message
    assert f"follows at byte {starts[2]}" in message
    assert path.read_bytes() == bytes(raw)  # nothing was cut
    # The refusal released the directory: it opens again once repaired.
    raw[starts[1] + 40] ^= 0x01
    path.write_bytes(bytes(raw))
    with LocalLog.open(tmp_path) as log:
        assert log.recoveries == [] and log.end_offset("t", 0) == 3


def test_a_partial_frame_followed_by_whole_frames_is_refused(tmp_path: Path) -> None:
    """A partial frame (a write cut short) that later appends went past is not a torn tail:
    cutting it would take the acknowledged records behind it."""
    path, starts = _three_records(tmp_path)
    raw = path.read_bytes()
    damaged = raw[: starts[2]] + raw[starts[2] : starts[2] + 30] + raw[starts[2] :]
    path.write_bytes(damaged)
    with pytest.raises(LocalLogError, match=rf"byte {starts[2]} \(offset 2\)"):
        LocalLog.open(tmp_path)
    assert path.read_bytes() == damaged


def test_a_record_with_the_wrong_offset_is_refused(tmp_path: Path) -> None:
    """Whole frames with offsets out of sequence: a second writer was at work."""
    path, starts = _three_records(tmp_path)
    raw = path.read_bytes()
    path.write_bytes(raw + raw[starts[1] :])  # offsets 0 1 2 1 2
    with pytest.raises(LocalLogError, match="record offset 1 where 3 was expected"):
        LocalLog.open(tmp_path)
    assert path.read_bytes() == raw + raw[starts[1] :]


def test_a_tail_of_zeros_and_a_partial_frame_is_still_cut(tmp_path: Path) -> None:
    path, starts = _three_records(tmp_path)
    raw = path.read_bytes()
    path.write_bytes(raw + raw[starts[1] : starts[1] + 50] + b"\x00" * 5000)
    with LocalLog.open(tmp_path) as log:
        assert log.recoveries[0].cut_bytes == 5050
        assert log.end_offset("t", 0) == 3
    assert path.read_bytes() == raw


def test_another_process_cannot_open_a_log_this_process_has_open(tmp_path: Path) -> None:
    """Its open-time repair would cut what we are writing, its appends interleave ours."""
    import subprocess
    import sys

    probe = [
        sys.executable,
        "-c",
        "import sys; from processor import LocalLog, LocalLogError\n"
        "try:\n    LocalLog.open(sys.argv[1]).close()\n"
        "except LocalLogError as e:\n    print(e); sys.exit(3)\n",
        str(tmp_path),
    ]
    root = Path(__file__).resolve().parents[2]
    with LocalLog.open(tmp_path) as log:
        log.append("t", b"x")
        with LocalLog.open(tmp_path) as same_process:  # shares the lock
            assert same_process.end_offset("t", 0) == 1
        refused = subprocess.run(probe, cwd=root, capture_output=True, text=True)
        assert refused.returncode == 3, refused.stderr
        assert "another process has this local log open" in refused.stdout
        log.append("t", b"y")  # still ours after the same-process LocalLog closed
        assert subprocess.run(probe, cwd=root, capture_output=True).returncode == 3
    assert subprocess.run(probe, cwd=root, capture_output=True).returncode == 0


def test_a_failed_write_is_cut_back_so_later_appends_stay_readable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.write
    calls = []

    def short_then_fail(fd: int, data: bytes) -> int:
        calls.append(len(data))
        if len(calls) == 1:
            real_write(fd, bytes(data)[:10])  # part of the frame reaches the file
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    with LocalLog.open(tmp_path) as log:
        log.append("t", b"before")
        monkeypatch.setattr(os, "write", short_then_fail)
        with pytest.raises(LocalLogError, match="No space left"):
            log.append("t", b"lost")
        assert log.append("t", b"after").offset == 1
        monkeypatch.undo()
    with LocalLog.open(tmp_path) as log:
        assert log.recoveries == []
        with log.reader("t") as reader:
            assert [r.value for r in reader.poll()] == [b"before", b"after"]


def test_a_failed_fsync_stops_appends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(fd: int) -> None:
        raise OSError(5, "Input/output error")

    with LocalLog.open(tmp_path) as log:
        log.append("t", b"kept")
        monkeypatch.setattr(os, "fdatasync", failing)
        with pytest.raises(LocalLogError, match="fsync failed"):
            log.append("t", b"unsure")
        monkeypatch.undo()
        with pytest.raises(LocalLogError, match="fsync failed"):
            log.append("t", b"refused")
        assert log.end_offset("t", 0) == 1
