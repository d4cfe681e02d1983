"""The audit log's append contract: durable receipts, chain, tree heads, key files, no update."""

from __future__ import annotations

import hashlib
import itertools
import os
import threading
from pathlib import Path

import orjson
import pytest

from audit import AuditError, AuditLog, KeyFileError, LogClosed, RecordRejected, SigningKey
from audit.segments import list_segments


def entries(log_dir: Path) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for _, path in list_segments(log_dir):
        out.extend(orjson.loads(line) for line in path.read_bytes().splitlines())
    return out


def records(log_dir: Path) -> list[dict[str, object]]:
    return [e for e in entries(log_dir) if e["type"] != "tree_head"]


def test_append_returns_receipt_of_record_on_disk(audit_log: AuditLog, log_dir: Path) -> None:
    receipt = audit_log.append({"type": "decision", "stream": "traffic", "outcome": "allow"})
    # Read back through a separate file handle before close: the record is already written.
    on_disk = records(log_dir)
    assert on_disk[-1]["seq"] == receipt.seq == 1
    line = next(
        raw
        for _, path in list_segments(log_dir)
        for raw in path.read_bytes().splitlines()
        if orjson.loads(raw).get("seq") == receipt.seq and b'"tree_head"' not in raw
    )
    assert hashlib.sha256(b"\x00" + line).hexdigest() == receipt.leaf_hash


def test_records_are_canonical_json_chained_by_prev(audit_log: AuditLog, log_dir: Path) -> None:
    audit_log.append_many([{"type": "decision", "z": 1, "a": "é"} for _ in range(5)])
    audit_log.close()
    for _, path in list_segments(log_dir):
        for raw in path.read_bytes().splitlines():
            assert raw == orjson.dumps(orjson.loads(raw), option=orjson.OPT_SORT_KEYS)
    chain = records(log_dir)
    assert chain[0]["type"] == "log_created"
    assert chain[0]["prev"] == "0" * 64
    raw_lines = [
        raw
        for _, path in list_segments(log_dir)
        for raw in path.read_bytes().splitlines()
        if orjson.loads(raw)["type"] != "tree_head"
    ]
    for before, after, raw in zip(chain, chain[1:], raw_lines, strict=False):
        assert after["seq"] == before["seq"] + 1  # type: ignore[operator]
        assert after["prev"] == hashlib.sha256(b"\x00" + raw).hexdigest()


def test_tree_head_written_every_n_records_and_at_close(
    log_dir: Path, signing_key: SigningKey
) -> None:
    log = AuditLog.open(log_dir, signing_key, tree_head_every=4, tree_head_ms=60_000)
    for i in range(9):
        log.append({"type": "decision", "i": i})
    log.close()
    heads = [e for e in entries(log_dir) if e["type"] == "tree_head"]
    sizes = [h["tree_size"] for h in heads]
    assert sizes[0] == 1  # the log_created record is signed at once
    assert heads[-1]["reason"] == "close" and sizes[-1] == 10
    assert all(b - a <= 4 for a, b in itertools.pairwise(sizes))


def test_reserved_fields_and_type_are_enforced(audit_log: AuditLog) -> None:
    from audit.log import RESERVED_FIELDS, RESERVED_TYPES

    for field in RESERVED_FIELDS:
        with pytest.raises(RecordRejected, match=field):
            audit_log.append({"type": "decision", field: 5})
    with pytest.raises(RecordRejected, match="type"):
        audit_log.append({"stream": "x"})
    for reserved in RESERVED_TYPES:
        with pytest.raises(RecordRejected, match="reserved"):
            audit_log.append({"type": reserved})
    with pytest.raises(RecordRejected, match="JSON"):
        audit_log.append({"type": "decision", "bad": {1, 2}})
    # A rejected record takes no sequence number.
    assert audit_log.append({"type": "decision"}).seq == 1


def test_log_has_no_update_or_delete_api() -> None:
    public = {name for name in dir(AuditLog) if not name.startswith("_")}
    assert not {n for n in public if any(w in n for w in ("delete", "update", "remove", "edit"))}


def test_concurrent_threads_lose_and_duplicate_nothing(
    log_dir: Path, signing_key: SigningKey
) -> None:
    log = AuditLog.open(log_dir, signing_key, batch_size=32, tree_head_every=50)
    threads_n, per_thread = 8, 250
    receipts: list[list[int]] = [[] for _ in range(threads_n)]

    def writer(t: int) -> None:
        for i in range(per_thread):
            receipts[t].append(log.append({"type": "decision", "writer": t, "i": i}).seq)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()
    written = [r for r in records(log_dir) if r["type"] == "decision"]
    pairs = [(r["writer"], r["i"]) for r in written]
    assert sorted(pairs) == sorted((t, i) for t in range(threads_n) for i in range(per_thread))
    all_seqs = [s for per in receipts for s in per]
    assert len(set(all_seqs)) == threads_n * per_thread
    assert sorted(all_seqs) == [r["seq"] for r in written]
    for t in range(threads_n):  # each thread's records keep its order
        assert [r["i"] for r in written if r["writer"] == t] == list(range(per_thread))


def test_append_after_close_is_refused(audit_log: AuditLog) -> None:
    audit_log.close()
    with pytest.raises(LogClosed):
        audit_log.append({"type": "decision"})


def test_second_process_cannot_open_the_same_directory(
    audit_log: AuditLog, log_dir: Path, signing_key: SigningKey
) -> None:
    with pytest.raises(AuditError, match="another process"):
        AuditLog.open(log_dir, signing_key)


def test_segments_rotate_by_size_and_each_ends_with_a_tree_head(
    log_dir: Path, signing_key: SigningKey
) -> None:
    log = AuditLog.open(log_dir, signing_key, segment_max_bytes=2000, tree_head_every=1000)
    for i in range(60):
        log.append({"type": "decision", "i": i})
    log.close()
    segments = list_segments(log_dir)
    assert len(segments) > 3
    for _, path in segments:
        last = orjson.loads(path.read_bytes().splitlines()[-1])
        assert last["type"] == "tree_head"
    sealed = [orjson.loads(p.read_bytes().splitlines()[-1]) for _, p in segments[:-1]]
    assert {h["reason"] for h in sealed} == {"segment_sealed"}


def test_segments_rotate_by_age(log_dir: Path, signing_key: SigningKey) -> None:
    log = AuditLog.open(log_dir, signing_key, segment_max_age_s=0.0)
    log.append({"type": "decision"})
    log.append({"type": "decision"})
    log.close()
    assert len(list_segments(log_dir)) == 3


def test_reopen_continues_the_chain(log_dir: Path, signing_key: SigningKey) -> None:
    with AuditLog.open(log_dir, signing_key) as log:
        log.append({"type": "decision"})
    with AuditLog.open(log_dir, signing_key) as log:
        assert log.append({"type": "decision"}).seq == 2
    seqs = [r["seq"] for r in records(log_dir)]
    assert seqs == [0, 1, 2]


def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "signing.pem"
    SigningKey.create(path)
    assert SigningKey.load(path).key_id.startswith("ed25519:")
    os.chmod(path, 0o640)
    with pytest.raises(KeyFileError, match="chmod 600"):
        SigningKey.load(path)


def test_key_file_is_created_private_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "signing.pem"
    key = SigningKey.create(path)
    assert path.stat().st_mode & 0o077 == 0
    with pytest.raises(KeyFileError, match="exists"):
        SigningKey.create(path)
    assert "PRIVATE" not in repr(key)


def test_public_key_export_round_trips(tmp_path: Path, signing_key: SigningKey) -> None:
    from audit import PublicKey

    path = tmp_path / "public.pem"
    signing_key.public_key.export(path)
    assert PublicKey.load(path) == signing_key.public_key


def test_opening_with_another_key_is_refused_unless_rotating(
    log_dir: Path, signing_key: SigningKey
) -> None:
    with AuditLog.open(log_dir, signing_key) as log:
        log.append({"type": "decision"})
    other = SigningKey.generate()
    with pytest.raises(AuditError, match="previous_key"):
        AuditLog.open(log_dir, other)
    with AuditLog.open(log_dir, other, previous_key=signing_key) as log:
        log.append({"type": "decision"})
    rotation = [r for r in records(log_dir) if r["type"] == "signing_key_rotation"]
    assert rotation and rotation[0]["new_key_id"] == other.key_id
    heads = [e for e in entries(log_dir) if e["type"] == "tree_head"]
    assert heads[-1]["key_id"] == other.key_id


def test_rotate_key_is_recorded_and_endorsed_by_the_old_key(
    audit_log: AuditLog, log_dir: Path, signing_key: SigningKey
) -> None:
    new_key = SigningKey.generate()
    audit_log.append({"type": "decision"})
    audit_log.rotate_key(new_key)
    audit_log.append({"type": "decision"})
    audit_log.close()
    all_entries = entries(log_dir)
    index = next(i for i, e in enumerate(all_entries) if e["type"] == "signing_key_rotation")
    handover = all_entries[index + 1]
    assert handover["type"] == "tree_head" and handover["key_id"] == signing_key.key_id
    assert all_entries[-1]["key_id"] == new_key.key_id


def test_write_error_fails_closed_and_wakes_every_appender(
    log_dir: Path, signing_key: SigningKey
) -> None:
    log = AuditLog.open(log_dir, signing_key)
    log.append({"type": "decision"})
    os.close(log._segment_fd)  # the disk goes away under the writer
    with pytest.raises(LogClosed, match="writer failed"):
        log.append({"type": "decision"})
    with pytest.raises(LogClosed):
        log.append({"type": "decision"})
    log._segment_fd = -1
    log.close()
    # Nothing acknowledged is missing: the one record that returned is on disk.
    assert [r["seq"] for r in records(log_dir)] == [0, 1]


def test_linger_gathers_concurrent_appends_into_one_commit(
    log_dir: Path, signing_key: SigningKey
) -> None:
    log = AuditLog.open(log_dir, signing_key, batch_size=4, linger_ms=5_000)
    before = log.commits
    threads = [
        threading.Thread(target=log.append, args=({"type": "decision", "n": n},)) for n in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # The batch filled before the linger ran out: four records, one write and one fsync.
    assert log.commits - before == 1
    log.close()
    assert len([r for r in records(log_dir) if r["type"] == "decision"]) == 4


def test_interrupted_committer_withdraws_its_batch_and_the_log_goes_on(
    log_dir: Path, signing_key: SigningKey
) -> None:
    import ctypes

    log = AuditLog.open(log_dir, signing_key, batch_size=10, linger_ms=3_000)
    outcomes: dict[str, BaseException | None] = {}

    def append(name: str) -> None:
        try:
            log.append({"type": "decision", "who": name})
            outcomes[name] = None
        except BaseException as exc:
            outcomes[name] = exc

    creator = threading.Thread(target=append, args=("creator",))
    creator.start()
    while log._open_batch is None:  # the creator opened the batch and lingers on it
        threading.Event().wait(0.001)
    follower = threading.Thread(target=append, args=("follower",))
    follower.start()
    while log._open_batch is not None and len(log._open_batch.records) < 2:
        threading.Event().wait(0.001)
    assert creator.ident is not None
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(creator.ident), ctypes.py_object(KeyboardInterrupt)
    )
    creator.join()
    follower.join()
    assert isinstance(outcomes["creator"], KeyboardInterrupt)
    assert isinstance(outcomes["follower"], AuditError)
    assert "withdrawn" in str(outcomes["follower"])
    assert log.append({"type": "decision", "who": "after"}).seq == 1  # nothing was written
    log.close()
    assert [r.get("who") for r in records(log_dir)] == [None, "after"]


def test_short_writes_are_resumed_and_the_group_lands_whole(
    log_dir: Path, signing_key: SigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A group's lines and its tree head go out in one writev; the kernel may take less
    # (a signal, a full disk that frees up): the rest follows, in order, before the fsync.
    from audit.verify import verify_log

    real_writev = os.writev
    calls: list[int] = []

    def short_writev(fd: int, buffers: list[memoryview]) -> int:
        calls.append(len(buffers))
        # At most 1,000 bytes, cut inside a buffer or at its end.
        taken: list[memoryview] = []
        room = 1_000
        for buffer in buffers:
            if room == 0:
                break
            taken.append(buffer[:room])
            room -= len(taken[-1])
        return real_writev(fd, taken)

    monkeypatch.setattr(os, "writev", short_writev)
    log = AuditLog.open(log_dir, signing_key, tree_head_every=7)
    try:
        receipts = log.append_many(
            [{"type": "decision", "n": n, "pad": "x" * 90} for n in range(40)]
        )
    finally:
        log.close()
    assert len(calls) > 5 and max(calls) >= 2  # short writes happened, of several buffers
    decisions = [r for r in records(log_dir) if r["type"] == "decision"]
    assert [r["n"] for r in decisions] == list(range(40))
    assert [r.seq for r in receipts] == [r["seq"] for r in decisions]
    report = verify_log(log_dir, [signing_key.public_key])
    assert report.ok, report.problem


def _resident_pages(path: Path) -> tuple[int, int]:
    """(pages of `path` in the page cache, pages of the file), by mincore(2)."""
    import ctypes
    import mmap

    libc = ctypes.CDLL(None, use_errno=True)
    size = path.stat().st_size
    pages = -(-size // mmap.PAGESIZE)
    with path.open("rb") as f, mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY) as mapped:
        address = ctypes.addressof(ctypes.c_char.from_buffer(mapped))
        vector = (ctypes.c_ubyte * pages)()
        if libc.mincore(ctypes.c_void_p(address), ctypes.c_size_t(size), vector) != 0:
            raise OSError(ctypes.get_errno(), "mincore")
        return sum(v & 1 for v in vector), pages


@pytest.mark.parametrize("drop", [True, False])
def test_written_pages_leave_the_page_cache_once_fsynced(
    log_dir: Path, signing_key: SigningKey, drop: bool
) -> None:
    # What is written and fsynced is dropped from the page cache, but for a partial last
    # page (the next write fills it); with drop_written_pages=False it stays.
    log = AuditLog.open(log_dir, signing_key, drop_written_pages=drop)
    try:
        for n in range(20):
            log.append_many([{"type": "decision", "n": n, "pad": "x" * 400} for _ in range(100)])
        [(_, segment)] = list_segments(log_dir)
        resident, pages = _resident_pages(segment)
    finally:
        log.close()
    assert pages > 200  # about 1 MB written
    if drop:
        assert resident <= 1
    else:
        assert resident > pages - 2
    assert len([r for r in records(log_dir) if r["type"] == "decision"]) == 2_000
