"""A durable, append-only local log that stands in for Kafka in embedded mode.

Topics have partitions; each partition is one file of CRC-framed records with
dense offsets from 0. `append` returns only once the record is fsynced, and
concurrent appenders share one fsync (group commit). A torn tail left by a
crash is detected on open, cut back to the last whole record, and reported in
`LocalLog.recoveries`. Readers see only fsynced records, as a Kafka consumer
sees only records below the high watermark.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import mmap
import os
import re
import struct
import threading
import time
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from processor.errors import LocalLogError

# Frame: body length (u32), crc32 of body (u32); body: offset (u64),
# timestamp ms (i64), key length (i32, -1 = no key), key, value.
_FRAME = struct.Struct("<II")
_BODY_HEAD = struct.Struct("<Qqi")
_FRAME_SIZE = _FRAME.size
_BODY_HEAD_SIZE = _BODY_HEAD.size
_MAX_BODY = 64 * 1024 * 1024
# One sparse index entry every this many records keeps seeks cheap without
# holding a position per record in memory.
_INDEX_EVERY = 1024
_READ_CHUNK = 1 << 20
_TOPIC_META = "topic.json"
_LOCK_FILE = ".lock"
# Directories this process holds the exclusive flock of: realpath -> (fd, LocalLogs open).
_DIRECTORY_LOCKS: dict[str, tuple[int, int]] = {}
_DIRECTORY_LOCKS_GUARD = threading.Lock()


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One record read back from the local log."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes


@dataclass(frozen=True, slots=True)
class LogPosition:
    """Where an appended record landed; durable when returned."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class TailRecovery:
    """A torn tail found on open and cut back to the last whole record."""

    topic: str
    partition: int
    valid_bytes: int
    cut_bytes: int
    next_offset: int


def _frame_problem(data: memoryview, pos: int, size: int, expected: int) -> str | None:
    """What is wrong with the frame at `pos` (expected to carry `expected`), or None."""
    if pos + _FRAME_SIZE > size:
        return f"partial frame header ({size - pos} of {_FRAME_SIZE} bytes)"
    length, crc = _FRAME.unpack_from(data, pos)
    if length < _BODY_HEAD_SIZE or length > _MAX_BODY:
        return f"record length {length} outside {_BODY_HEAD_SIZE}..{_MAX_BODY}"
    end = pos + _FRAME_SIZE + length
    if end > size:
        return f"partial record ({size - pos - _FRAME_SIZE} of {length} bytes)"
    if zlib.crc32(data[pos + _FRAME_SIZE : end]) != crc:
        return "CRC mismatch"
    (offset,) = struct.unpack_from("<Q", data, pos + _FRAME_SIZE)
    if offset != expected:
        return f"record offset {offset} where {expected} was expected"
    return None


_NONZERO = re.compile(rb"[^\x00]")


def _whole_frame_after(data: memoryview, start: int, size: int) -> int | None:
    """The byte position of the first whole, CRC-valid frame at or after `start`, if any.

    The frame at `start` itself counts when only its offset is wrong (it is whole).
    """
    pos = start
    unpack = _FRAME.unpack_from
    while pos + _FRAME_SIZE + _BODY_HEAD_SIZE <= size:
        length, crc = unpack(data, pos)
        if length == 0 and crc == 0:
            # Skip runs of zeros (unwritten blocks) quickly.
            match = _NONZERO.search(data, pos)
            if match is None:
                return None
            pos = max(pos + 1, match.start() - _FRAME_SIZE + 1)
            continue
        end = pos + _FRAME_SIZE + length
        if (
            _BODY_HEAD_SIZE <= length <= _MAX_BODY
            and end <= size
            and zlib.crc32(data[pos + _FRAME_SIZE : end]) == crc
        ):
            return pos
        pos += 1
    return None


class _Partition:
    """One partition file: the append side, the sync state and a sparse index."""

    def __init__(self, topic: str, number: int, path: Path, fsync: bool) -> None:
        self.topic = topic
        self.number = number
        self.path = path
        self.fsync = fsync
        self.write_lock = threading.Lock()
        self.sync_cond = threading.Condition()
        self.index: list[tuple[int, int]] = []  # (offset, file position)
        self.recovery: TailRecovery | None = None
        self.next_offset, self.written = self._scan_and_repair()
        self.synced = self.written
        self.synced_offset = self.next_offset
        self.syncing = False
        # Set once a write or fsync failed and the file could not be put back:
        # what is on disk is then unknown, so nothing more is appended.
        self.failed: str | None = None
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)

    def _scan_and_repair(self) -> tuple[int, int]:
        """Validate every frame; cut a torn tail back to the last whole record.

        Only a genuine torn tail is cut: damage after which nothing valid follows.
        Damage followed by a whole record (a flipped bit, a partial frame that later
        writes went past, frames from a second writer) is in the middle of the log,
        where records were acknowledged: opening is refused with a LocalLogError.
        """
        if not self.path.exists():
            self.path.touch(mode=0o640)
            return 0, 0
        size = self.path.stat().st_size
        if size == 0:
            return 0, 0
        pos = 0
        expected = 0
        problem: str | None = None
        with self.path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            data = memoryview(mm)
            try:
                while pos < size:
                    problem = _frame_problem(data, pos, size, expected)
                    if problem is not None:
                        break
                    length = _FRAME.unpack_from(data, pos)[0]
                    if expected % _INDEX_EVERY == 0:
                        self.index.append((expected, pos))
                    expected += 1
                    pos += _FRAME_SIZE + length
                if problem is not None:
                    follows = _whole_frame_after(data, pos, size)
                    if follows is not None:
                        raise LocalLogError(
                            f"{self.path}: damaged record at byte {pos} (offset {expected}): "
                            f"{problem}; a whole record follows at byte {follows}, so this is "
                            "damage in the middle of the log, not a torn tail left by a crash. "
                            "Refusing to cut acknowledged records: restore the file from a "
                            "copy, or move it aside to start this partition empty"
                        )
            finally:
                data.release()
        if pos < size:
            # A crash mid-append leaves a partial frame; it was never
            # acknowledged (append returns after fsync), so cutting it is safe.
            with self.path.open("r+b") as torn:
                torn.truncate(pos)
                torn.flush()
                os.fsync(torn.fileno())
            self.recovery = TailRecovery(self.topic, self.number, pos, size - pos, expected)
        return expected, pos

    def encode(self, records: Sequence[tuple[bytes | None, bytes, int]]) -> tuple[bytes, int]:
        """Frame records starting at the next offset; caller holds write_lock."""
        parts: list[bytes] = []
        offset = self.next_offset
        pos = self.written
        for key, value, ts in records:
            klen = -1 if key is None else len(key)
            body = _BODY_HEAD.pack(offset, ts, klen) + (key or b"") + value
            if len(body) > _MAX_BODY:
                raise LocalLogError(
                    f"record for {self.topic}[{self.number}] is {len(body)} bytes; "
                    f"the local log accepts at most {_MAX_BODY} bytes per record"
                )
            frame = _FRAME.pack(len(body), zlib.crc32(body)) + body
            if offset % _INDEX_EVERY == 0:
                self.index.append((offset, pos))
            parts.append(frame)
            pos += len(frame)
            offset += 1
        return b"".join(parts), offset

    def append(self, records: Sequence[tuple[bytes | None, bytes, int]]) -> int:
        """Write records and return the first offset once they are durable."""
        with self.write_lock:
            if self.failed is not None:
                raise LocalLogError(self.failed)
            first = self.next_offset
            indexed = len(self.index)
            blob, next_offset = self.encode(records)
            try:
                view = memoryview(blob)
                while view:
                    view = view[os.write(self.fd, view) :]
            except OSError as exc:
                # Put the file back to its last whole record, so that a later append
                # does not land behind a partial frame (damage in the middle).
                del self.index[indexed:]
                try:
                    os.ftruncate(self.fd, self.written)
                except OSError as cut:
                    self.failed = (
                        f"{self.path}: a write failed ({exc}) and the partial frame at byte "
                        f"{self.written} could not be cut ({cut}); reopen the log to repair it"
                    )
                raise LocalLogError(
                    f"cannot append to {self.topic}[{self.number}] ({self.path}): {exc}"
                ) from exc
            self.written += len(blob)
            self.next_offset = next_offset
            target = self.written
        self._sync_to(target, next_offset)
        return first

    def _sync_to(self, target: int, target_offset: int) -> None:
        """Group commit: one fsync makes every write issued before it durable."""
        with self.sync_cond:
            while self.synced < target:
                if self.failed is not None:
                    raise LocalLogError(self.failed)
                if self.syncing:
                    self.sync_cond.wait()
                    continue
                self.syncing = True
                with self.write_lock:
                    upto, upto_offset = self.written, self.next_offset
                self.sync_cond.release()
                try:
                    if self.fsync:
                        os.fdatasync(self.fd)
                except OSError as exc:
                    # After a failed fsync the kernel may have dropped the dirty pages:
                    # a retry could "succeed" without the data. Stop appending here.
                    with self.write_lock:
                        self.failed = (
                            f"{self.path}: fsync failed ({exc}); records after byte "
                            f"{self.synced} may not be durable; reopen the log to check it"
                        )
                    raise LocalLogError(self.failed) from exc
                finally:
                    self.sync_cond.acquire()
                    self.syncing = False
                    self.sync_cond.notify_all()
                self.synced = max(self.synced, upto)
                self.synced_offset = max(self.synced_offset, upto_offset, target_offset)
                self.sync_cond.notify_all()

    def position_of(self, offset: int) -> tuple[int, int]:
        """Nearest indexed (offset, file position) at or before `offset`."""
        best = (0, 0)
        lo, hi = 0, len(self.index) - 1
        while lo <= hi:
            mid = (lo + hi) // 2
            if self.index[mid][0] <= offset:
                best = self.index[mid]
                lo = mid + 1
            else:
                hi = mid - 1
        return best

    def close(self) -> None:
        os.close(self.fd)


class LocalLog:
    """A directory of topics; each topic a fixed number of partition files."""

    def __init__(self, directory: Path, default_partitions: int, fsync: bool) -> None:
        self.directory = directory
        self.default_partitions = default_partitions
        self.fsync = fsync
        self._topics: dict[str, list[_Partition]] = {}
        self._lock = threading.Lock()
        self._round_robin = itertools.count()
        self.recoveries: list[TailRecovery] = []
        self._closed = False
        self._lock_key: str | None = None

    @classmethod
    def open(cls, directory: Path | str, *, partitions: int = 1, fsync: bool = True) -> LocalLog:
        """Open (or create) a log directory, repairing torn tails of every partition."""
        if partitions < 1:
            raise LocalLogError(f"partitions must be at least 1, got {partitions}")
        root = Path(directory)
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LocalLogError(f"cannot create local log directory {root}: {exc}") from exc
        log = cls(root, partitions, fsync)
        log._lock_directory()
        try:
            for meta in sorted(root.glob(f"*/{_TOPIC_META}")):
                log._open_topic(meta.parent.name)
        except BaseException:
            log.close()
            raise
        return log

    def _lock_directory(self) -> None:
        """One writing process per directory: another process's appends would interleave
        frames with ours, and its open-time repair would cut records we are writing."""
        key = os.path.realpath(self.directory)
        with _DIRECTORY_LOCKS_GUARD:
            held = _DIRECTORY_LOCKS.get(key)
            if held is not None:
                # This process holds it already (LocalLogs opened in one process share it).
                _DIRECTORY_LOCKS[key] = (held[0], held[1] + 1)
            else:
                fd = os.open(self.directory / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError as exc:
                    os.close(fd)
                    raise LocalLogError(
                        f"{self.directory}: another process has this local log open; one "
                        "process owns a local log directory (its readers share its LocalLog)"
                    ) from exc
                _DIRECTORY_LOCKS[key] = (fd, 1)
        self._lock_key = key

    def _unlock_directory(self) -> None:
        key, self._lock_key = self._lock_key, None
        if key is None:
            return
        with _DIRECTORY_LOCKS_GUARD:
            fd, count = _DIRECTORY_LOCKS[key]
            if count > 1:
                _DIRECTORY_LOCKS[key] = (fd, count - 1)
            else:
                del _DIRECTORY_LOCKS[key]
                os.close(fd)

    def _open_topic(self, topic: str) -> list[_Partition]:
        tdir = self.directory / topic
        meta = json.loads((tdir / _TOPIC_META).read_text())
        parts: list[_Partition] = []
        try:
            for p in range(int(meta["partitions"])):
                parts.append(_Partition(topic, p, tdir / f"{p}.log", self.fsync))
        except BaseException:
            for part in parts:
                part.close()
            raise
        self.recoveries.extend(p.recovery for p in parts if p.recovery is not None)
        self._topics[topic] = parts
        return parts

    def create_topic(self, topic: str, partitions: int | None = None) -> None:
        """Create a topic with a fixed partition count; a no-op if it exists with that count."""
        if not topic or "/" in topic or topic.startswith("."):
            raise LocalLogError(f"bad topic name {topic!r}: use letters, digits, '-', '_' or '.'")
        count = partitions or self.default_partitions
        with self._lock:
            existing = self._topics.get(topic)
            if existing is not None:
                if partitions is not None and len(existing) != partitions:
                    raise LocalLogError(
                        f"topic {topic} exists with {len(existing)} partitions, not {partitions}"
                    )
                return
            tdir = self.directory / topic
            tdir.mkdir(parents=True, exist_ok=True)
            tmp = tdir / (_TOPIC_META + ".tmp")
            tmp.write_text(json.dumps({"partitions": count}))
            with tmp.open("rb") as f:
                os.fsync(f.fileno())
            tmp.replace(tdir / _TOPIC_META)
            self._fsync_dir(tdir)
            self._fsync_dir(self.directory)
            self._open_topic(topic)

    @staticmethod
    def _fsync_dir(path: Path) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _partitions_of(self, topic: str) -> list[_Partition]:
        parts = self._topics.get(topic)
        if parts is None:
            self.create_topic(topic)
            parts = self._topics[topic]
        return parts

    def topics(self) -> list[str]:
        return sorted(self._topics)

    def partition_count(self, topic: str) -> int:
        return len(self._partitions_of(topic))

    def _choose(self, parts: list[_Partition], key: bytes | None, partition: int | None) -> int:
        if partition is not None:
            if not 0 <= partition < len(parts):
                raise LocalLogError(
                    f"partition {partition} does not exist in topic {parts[0].topic} "
                    f"(it has {len(parts)})"
                )
            return partition
        if key is not None:
            # Stable across processes and runs, so one key always lands in one partition.
            return zlib.crc32(key) % len(parts)
        return next(self._round_robin) % len(parts)

    def append(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> LogPosition:
        """Append one record; returns once it is fsynced."""
        return self.append_many(
            topic, [(key, value)], partition=partition, timestamp_ms=timestamp_ms
        )[0]

    def append_many(
        self,
        topic: str,
        records: Iterable[tuple[bytes | None, bytes]],
        *,
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> list[LogPosition]:
        """Append a batch of (key, value) records with one fsync per partition touched."""
        if self._closed:
            raise LocalLogError(f"local log {self.directory} is closed")
        parts = self._partitions_of(topic)
        ts = timestamp_ms if timestamp_ms is not None else int(time.time() * 1000)
        by_partition: dict[int, list[tuple[bytes | None, bytes, int]]] = {}
        order: list[tuple[int, int]] = []
        for key, value in records:
            p = self._choose(parts, key, partition)
            bucket = by_partition.setdefault(p, [])
            order.append((p, len(bucket)))
            bucket.append((key, value, ts))
        firsts = {p: parts[p].append(batch) for p, batch in by_partition.items()}
        return [LogPosition(topic, p, firsts[p] + i) for p, i in order]

    def end_offset(self, topic: str, partition: int) -> int:
        """The offset the next durable record will get (Kafka's high watermark)."""
        part = self._partitions_of(topic)[partition]
        with part.sync_cond:
            return part.synced_offset

    def reader(
        self,
        topic: str,
        partitions: Sequence[int] | None = None,
        *,
        start: Mapping[int, int] | None = None,
    ) -> LocalLogReader:
        """A reader over some partitions of a topic, from `start` offsets (default 0)."""
        parts = self._partitions_of(topic)
        chosen = list(range(len(parts))) if partitions is None else list(partitions)
        return LocalLogReader(self, topic, chosen, dict(start or {}))

    def commit_offsets(self, group: str, topic: str, offsets: Mapping[int, int]) -> None:
        """Durably record a consumer group's next offsets (write, fsync, rename)."""
        gdir = self.directory / ".groups"
        gdir.mkdir(exist_ok=True)
        current = self.committed_offsets(group, topic)
        current.update({int(p): int(o) for p, o in offsets.items()})
        path = gdir / f"{group}--{topic}.json"
        tmp = path.with_suffix(".tmp")
        with tmp.open("w") as f:
            json.dump({str(p): o for p, o in sorted(current.items())}, f)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
        self._fsync_dir(gdir)

    def committed_offsets(self, group: str, topic: str) -> dict[int, int]:
        path = self.directory / ".groups" / f"{group}--{topic}.json"
        if not path.exists():
            return {}
        return {int(p): int(o) for p, o in json.loads(path.read_text()).items()}

    def _partition(self, topic: str, number: int) -> _Partition:
        return self._partitions_of(topic)[number]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for parts in self._topics.values():
            for part in parts:
                part.close()
        self._unlock_directory()

    def __enter__(self) -> LocalLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalLogReader:
    """Reads durable records of some partitions of one topic, tracking next offsets."""

    def __init__(
        self, log: LocalLog, topic: str, partitions: list[int], start: dict[int, int]
    ) -> None:
        self._log = log
        self.topic = topic
        self._parts = {p: log._partition(topic, p) for p in partitions}
        self._fds = {p: os.open(part.path, os.O_RDONLY) for p, part in self._parts.items()}
        self._next: dict[int, int] = {}
        self._pos: dict[int, int] = {}
        self._turn = 0
        for p in partitions:
            self.seek(p, start.get(p, 0))

    def assignment(self) -> list[int]:
        return sorted(self._parts)

    def position(self, partition: int) -> int:
        """The offset of the next record this reader returns for `partition`."""
        return self._next[partition]

    def positions(self) -> dict[int, int]:
        return dict(self._next)

    def seek(self, partition: int, offset: int) -> None:
        """Position the reader so the next record returned for `partition` is `offset`."""
        part = self._parts[partition]
        with part.sync_cond:
            durable = part.synced_offset
        if offset < 0 or offset > durable:
            raise LocalLogError(
                f"offset {offset} is outside {self.topic}[{partition}] (0..{durable})"
            )
        idx_offset, pos = part.position_of(offset)
        self._next[partition] = idx_offset
        self._pos[partition] = pos
        while self._next[partition] < offset:
            self._read_partition(partition, offset - self._next[partition], skip=True)

    def _read_partition(self, partition: int, limit: int, *, skip: bool = False) -> list[LogRecord]:
        part = self._parts[partition]
        with part.sync_cond:
            end = part.synced
        pos = self._pos[partition]
        if pos >= end or limit <= 0:
            return []
        data = os.pread(self._fds[partition], min(end - pos, _READ_CHUNK), pos)
        out: list[LogRecord] = []
        rel = 0
        count = 0
        offset = self._next[partition]
        while count < limit and rel + _FRAME_SIZE <= len(data):
            length, _crc = _FRAME.unpack_from(data, rel)
            stop = rel + _FRAME_SIZE + length
            if stop > len(data):
                if rel == 0:
                    # A frame bigger than one chunk: read exactly that frame.
                    data = os.pread(self._fds[partition], _FRAME_SIZE + length, pos)
                    stop = _FRAME_SIZE + length
                else:
                    break
            if not skip:
                offset, ts, klen = _BODY_HEAD.unpack_from(data, rel + _FRAME_SIZE)
                kstart = rel + _FRAME_SIZE + _BODY_HEAD_SIZE
                if klen < 0:
                    key = None
                    vstart = kstart
                else:
                    key = data[kstart : kstart + klen]
                    vstart = kstart + klen
                out.append(LogRecord(self.topic, partition, offset, ts, key, data[vstart:stop]))
            rel = stop
            count += 1
        self._pos[partition] = pos + rel
        self._next[partition] += count
        return out

    def _read_values(self, partition: int, limit: int) -> list[bytes]:
        """Like `_read_partition` but only the values: no record objects in the hot path."""
        part = self._parts[partition]
        with part.sync_cond:
            end = part.synced
        pos = self._pos[partition]
        if pos >= end or limit <= 0:
            return []
        data = os.pread(self._fds[partition], min(end - pos, _READ_CHUNK), pos)
        out: list[bytes] = []
        rel = 0
        size = len(data)
        frame_unpack = _FRAME.unpack_from
        head_unpack = _BODY_HEAD.unpack_from
        while len(out) < limit and rel + _FRAME_SIZE <= size:
            length, _crc = frame_unpack(data, rel)
            stop = rel + _FRAME_SIZE + length
            if stop > size:
                if rel:
                    break
                data = os.pread(self._fds[partition], _FRAME_SIZE + length, pos)
                size = stop = _FRAME_SIZE + length
            klen = head_unpack(data, rel + _FRAME_SIZE)[2]
            out.append(data[rel + _FRAME_SIZE + _BODY_HEAD_SIZE + max(klen, 0) : stop])
            rel = stop
        self._pos[partition] = pos + rel
        self._next[partition] += len(out)
        return out

    def poll_values(
        self, max_records: int = 10_000, timeout_s: float = 0.0
    ) -> list[tuple[int, int, list[bytes]]]:
        """Like `poll`, as (partition, first offset, values) runs: the processor's fast path."""
        deadline = time.monotonic() + timeout_s
        while True:
            out: list[tuple[int, int, list[bytes]]] = []
            taken = 0
            partitions = self.assignment()
            for i in range(len(partitions)):
                p = partitions[(self._turn + i) % len(partitions)]
                first = self._next[p]
                values = self._read_values(p, max_records - taken)
                if values:
                    out.append((p, first, values))
                    taken += len(values)
                if taken >= max_records:
                    break
            self._turn += 1
            remaining = deadline - time.monotonic()
            if out or remaining <= 0:
                return out
            self._wait_for_data(min(remaining, 0.05))

    def poll(self, max_records: int = 10_000, timeout_s: float = 0.0) -> list[LogRecord]:
        """Up to `max_records` durable records across partitions; waits up to `timeout_s`.

        Like a Kafka poll it may return fewer records than are available (at most one
        read chunk per partition): to read everything, poll until it returns [].
        """
        deadline = time.monotonic() + timeout_s
        while True:
            out: list[LogRecord] = []
            partitions = self.assignment()
            # Rotate the starting partition so one busy partition cannot starve the others.
            for i in range(len(partitions)):
                p = partitions[(self._turn + i) % len(partitions)]
                out.extend(self._read_partition(p, max_records - len(out)))
                if len(out) >= max_records:
                    break
            self._turn += 1
            remaining = deadline - time.monotonic()
            if out or remaining <= 0:
                return out
            self._wait_for_data(min(remaining, 0.05))

    def _wait_for_data(self, timeout_s: float) -> None:
        for p, part in self._parts.items():
            with part.sync_cond:
                if part.synced > self._pos[p]:
                    return
        # Wait on one partition's condition; the short timeout covers the others.
        first = next(iter(self._parts.values()))
        with first.sync_cond:
            first.sync_cond.wait(timeout_s)

    def lag(self) -> dict[int, int]:
        """Records not yet read, per partition."""
        return {p: self._log.end_offset(self.topic, p) - self._next[p] for p in self._parts}

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def __enter__(self) -> LocalLogReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
