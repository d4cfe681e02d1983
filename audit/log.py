"""The append-only audit log: group-committed, fsynced appends into segment files, a hash chain,
an incremental Merkle tree and signed tree heads; torn tails are cut back on open and recorded."""

from __future__ import annotations

import bisect
import contextlib
import fcntl
import functools
import hashlib
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeAlias, overload

import structlog

from audit.canonical import canonical_json, parse_json, parse_timestamp, utc_timestamp
from audit.errors import AuditError, LogClosed, LogCorrupted, RecordRejected
from audit.keys import SigningKey
from audit.merkle import LEAF_PREFIX, MerkleFrontier, leaf_hash
from audit.segments import LOCK_FILE, list_segments, segment_name, split_entries
from audit.shared import SHARED, SharedMembers
from audit.tree_head import TREE_HEAD_TYPE, SignedTreeHead

FORMAT = "fjordgate-audit/1"
GENESIS_PREV = "0" * 64
RESERVED_FIELDS = frozenset({"seq", "ts", "prev"})
LOG_CREATED = "log_created"
SIGNING_KEY_ROTATION = "signing_key_rotation"
RESERVED_TYPES = frozenset({TREE_HEAD_TYPE, LOG_CREATED, SIGNING_KEY_ROTATION, SHARED})

_log = structlog.get_logger(__name__)

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass(slots=True, eq=False, repr=False)
class CanonicalRecord(Mapping[str, Any]):
    """An audit record already encoded, for a caller that writes many alike: the parts
    joined are its canonical JSON without the fields the log adds (`prev`, `seq`, `ts`);
    each of those goes before the part its entry in `cuts` names (in that order; a cut
    of `len(parts)` is the end, before nothing). The log splices them in instead of
    encoding the record.

    Parts, not one body, so that records of one decision share what they have in common
    (every part but the event's id and pseudonyms) and an event costs two small strings.
    Made by `CanonicalRecord.of`, which checks the record as the log checks a mapping.
    The gateway's compiled core stages its decision records encoded the same way, in the
    object that is also the event's message (`fjordgate_native.Staged`, an
    `EncodedRecord`; held to the Python steps' records byte for byte by
    tests/gateway/test_native.py): encoding a decision record of 12 members held the
    served gateway's GIL about 2 µs per event, half as long as the compiled pipeline.
    Read as a mapping, it is decoded on each access (tests, tools), which is slow but
    exact. `shared` is what its member `shared` names (audit/shared.py), when it has one.
    """

    parts: Sequence[bytes]
    cuts: tuple[int, int, int]
    shared: SharedMembers | None = None

    @classmethod
    def of(cls, record: Mapping[str, Any]) -> CanonicalRecord:
        """`record` encoded; raises RecordRejected as `AuditLog.append` would."""
        _check_record(record)
        keys = sorted(record)  # orjson's sort: by code point, which is UTF-8 byte order
        shared = record.get(SHARED)
        body = bytearray(b"{")
        ends = []
        for key in keys:
            if len(body) > 1:
                body += b","
            value = shared.ref if key == SHARED and shared is not None else record[key]
            try:
                body += canonical_json(key) + b":" + canonical_json(value)
            except TypeError as exc:
                raise RecordRejected(f"record is not JSON-serialisable ({exc})") from None
            ends.append(len(body))
        body += b"}"
        at = [ends[n - 1] if n else 1 for n in (bisect.bisect(keys, k) for k in _SPLICED)]
        parts = (body[: at[0]], body[at[0] : at[1]], body[at[1] : at[2]], body[at[2] :])
        return cls(tuple(bytes(p) for p in parts), (1, 2, 3), shared)

    @property
    def body(self) -> bytes:
        """The record's canonical JSON, without the fields the log adds."""
        return b"".join(self.parts)

    def decoded(self) -> dict[str, Any]:
        """The record as a new dict."""
        return decoded(self)

    def __getitem__(self, key: str) -> Any:
        return self.decoded()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.decoded())

    def __len__(self) -> int:
        return len(self.decoded())

    def __eq__(self, other: object) -> bool:
        if type(other) in ENCODED:
            body: bytes = other.body  # type: ignore[attr-defined]  # an EncodedRecord
            return self.body == body
        if isinstance(other, Mapping):
            return self.decoded() == dict(other.items())
        return NotImplemented

    def __repr__(self) -> str:
        # Field names and pseudonyms only, but a repr has no business showing either.
        return f"CanonicalRecord(<{len(self.body)} bytes>)"


class EncodedRecord(Protocol):
    """An audit record already encoded, as the log reads it: a `CanonicalRecord`, or an
    event the gateway's compiled core staged (`fjordgate_native.Staged`, one object for
    the event's message and its audit record, where a `CanonicalRecord` and its parts
    were two more objects per event to make and free)."""

    @property
    def parts(self) -> Sequence[bytes]: ...
    @property
    def cuts(self) -> tuple[int, int, int]: ...
    @property
    def shared(self) -> SharedMembers | None: ...
    @property
    def body(self) -> bytes: ...


AuditRecord: TypeAlias = Mapping[str, Any] | EncodedRecord
"""What the log appends: a mapping, or a record already encoded."""


def _encoded_types() -> frozenset[type]:
    try:
        from fjordgate_native import Staged
    except ImportError:
        return frozenset({CanonicalRecord})
    return frozenset({CanonicalRecord, Staged})


ENCODED: frozenset[type] = _encoded_types()
"""The types of records already encoded (`EncodedRecord`s), looked up by exact type."""


def decoded(record: EncodedRecord) -> dict[str, Any]:
    """An encoded record as a new dict (without the fields the log adds)."""
    value: dict[str, Any] = parse_json(record.body)
    return value


# The fields the log adds to every record, in the sorted order `CanonicalRecord.cuts` uses.
_SPLICED = ("prev", "seq", "ts")
assert sorted(_SPLICED) == list(_SPLICED) and frozenset(_SPLICED) == RESERVED_FIELDS


@dataclass(frozen=True, slots=True)
class AuditReceipt:
    """Proof of a durable append: the record's position and its RFC 6962 leaf hash (hex)."""

    seq: int
    leaf_hash: str


class Receipts(Sequence[AuditReceipt]):
    """The receipts of records appended in a row, made when they are read: a frozen
    receipt per record cost 0.35 µs to make, and the gateway's committer reads none. The
    leaf hashes are the compiled loop's, in hex one after the other (64 bytes each): not
    a str per record either."""

    __slots__ = ("_count", "_first", "_hexes", "_seq")

    def __init__(self, seq: int, hexes: bytes, first: int = 0, count: int | None = None) -> None:
        self._seq = seq
        self._hexes = hexes
        self._first = first  # the first receipt's hash in `hexes`
        self._count = len(hexes) // 64 - first if count is None else count

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> AuditReceipt: ...

    @overload
    def __getitem__(self, index: slice) -> Receipts: ...

    def __getitem__(self, index: int | slice) -> AuditReceipt | Receipts:
        if isinstance(index, slice):
            start, stop, step = index.indices(self._count)
            if step != 1:
                raise ValueError("receipts are sliced with a step of 1")
            return Receipts(
                self._seq + start, self._hexes, self._first + start, max(stop - start, 0)
            )
        if index < 0:
            index += self._count
        if not 0 <= index < self._count:
            raise IndexError("receipt index out of range")
        at = 64 * (self._first + index)
        return AuditReceipt(self._seq + index, self._hexes[at : at + 64].decode("ascii"))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return list(self) == list(other)

    def __add__(self, other: Sequence[AuditReceipt]) -> list[AuditReceipt]:
        return [*self, *other]  # as a list of receipts would (`receipts += more`)

    def __radd__(self, other: Sequence[AuditReceipt]) -> list[AuditReceipt]:
        return [*other, *self]

    __hash__ = None  # type: ignore[assignment]  # a sequence compared by value

    def __repr__(self) -> str:
        return f"Receipts({list(self)!r})"


@dataclass(slots=True, eq=False)
class _Batch:
    """Records that share one write and one fsync.

    Its creator waits on `turn` and commits it when it reaches the head of the queue; its
    other appenders wait on `settled`. Both conditions share the log's lock, so a commit wakes
    exactly the threads it concerns.
    """

    turn: threading.Condition
    settled: threading.Condition
    records: list[AuditRecord] = field(default_factory=list)
    receipts: Sequence[AuditReceipt | AuditError] = field(default_factory=list)
    error: BaseException | None = None
    action: Callable[[], None] | None = None  # a control step committed instead of records
    finished: bool = False


@dataclass(slots=True)
class _Replay:
    """What reading an existing log tells the writer."""

    log_id: str | None = None
    key_id: str | None = None
    size: int = 0
    prev: str = GENESIS_PREV
    covered: int = 0  # tree size of the last tree head
    segment_index: int = 0
    segment_bytes: int = 0
    segment_started: float = 0.0
    last_time: float = 0.0  # of the last entry read, seconds since the epoch
    cut: tuple[Path, int, int] | None = None  # segment, offset, bytes discarded
    frontier: MerkleFrontier = field(default_factory=MerkleFrontier)


def _compiled_chain() -> Callable[..., Any] | None:
    """The compiled encode-and-chain loop (native/src/audit.rs), unless it is not built or
    FJORDGATE_NATIVE=0. It writes the same bytes as `AuditLog._encode` and hashes a group of
    64 KiB or more with the GIL released: that loop held the GIL 3.7-6.1 µs per gateway
    decision record."""
    if os.environ.get("FJORDGATE_NATIVE", "1") == "0":
        return None
    try:
        from fjordgate_native import chain_records
    except ImportError:
        return None
    return functools.partial(chain_records, canonical=CanonicalRecord)


def _now() -> datetime:
    return datetime.now(UTC)


def _note(level: str, event: str, **fields: object) -> None:
    """Log an event; a broken log sink must never break a commit in progress (that would leave
    appenders waiting), so its errors are swallowed here."""
    with contextlib.suppress(Exception):
        getattr(_log, level)(event, **fields)


def _check_record(record: AuditRecord) -> None:
    if type(record) in ENCODED:
        return  # checked when it was made
    if (
        type(record) is dict
        and type(kind := record.get("type")) is str
        and kind
        and kind not in RESERVED_TYPES
        and "seq" not in record  # RESERVED_FIELDS, spelled out (the test goes through them)
        and "ts" not in record
        and "prev" not in record
        and (SHARED not in record or type(record[SHARED]) is SharedMembers)
    ):
        return  # the common case, decided without the ABC check and a set intersection
    if not isinstance(record, Mapping):
        raise RecordRejected(f"an audit record must be a mapping, not {type(record).__name__}")
    kind = record.get("type")
    if not isinstance(kind, str) or not kind:
        raise RecordRejected("an audit record needs a non-empty string field 'type'")
    if kind in RESERVED_TYPES:
        raise RecordRejected(
            f"record type {kind!r} is reserved for the entries the log writes itself"
        )
    clash = RESERVED_FIELDS.intersection(record)
    if clash:
        raise RecordRejected(
            f"record of type {kind!r} sets {sorted(clash)}, which the log assigns itself; "
            "leave them out"
        )
    if SHARED in record and not isinstance(record[SHARED], SharedMembers):
        raise RecordRejected(
            f"record of type {kind!r}: the member {SHARED!r} names members written once per "
            "segment; give an audit.SharedMembers there"
        )


class AuditLog:
    """One process's audit log in one directory. Thread-safe; there is no update or delete.

    Concurrent appends are gathered into a batch (up to `batch_size` records; the committing
    thread waits at most `linger_ms` for it to fill) that is written with one `write` and one
    `fsync`; only then do its appenders return.
    """

    def __init__(
        self,
        directory: Path,
        signing_key: SigningKey,
        *,
        batch_size: int,
        linger_ms: float,
        tree_head_every: int,
        tree_head_ms: float,
        segment_max_bytes: int,
        segment_max_age_s: float,
        drop_written_pages: bool = True,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if tree_head_every < 1:
            raise ValueError("tree_head_every must be at least 1")
        self.directory = directory
        self._key = signing_key
        self._batch_size = batch_size
        self._linger = max(0.0, linger_ms) / 1000.0
        self._tree_head_every = tree_head_every
        self._tree_head_interval = max(0.001, tree_head_ms / 1000.0)
        self._segment_max_bytes = segment_max_bytes
        self._segment_max_age = segment_max_age_s
        self._drop_written_pages = drop_written_pages and hasattr(os, "posix_fadvise")
        self._clock = clock or _now

        self._lock_ = threading.Lock()
        self._cond = threading.Condition(self._lock_)  # the ticker sleeps here
        self._idle = threading.Condition(self._lock_)  # close waits here for commits to end
        self._queue: deque[_Batch] = deque()
        self._open_batch: _Batch | None = None
        self._closing = False
        self._failed: BaseException | None = None

        # Writer state: touched only by the thread that holds the commit (see _lead).
        self._log_id = ""
        self._frontier = MerkleFrontier()
        self._prev = GENESIS_PREV
        self._chain = _compiled_chain()
        self._covered = 0
        self._last_tree_head_at = time.monotonic()
        self._segment_index = 0
        self._segment_fd = -1
        self._segment_bytes = 0
        self._pages_dropped_to = 0  # the segment's bytes before this are out of the page cache
        self._segment_started = 0.0  # set when a segment is opened
        self._shared_written: set[str] = set()  # refs of the shared members in this segment
        self._latest_tree_head: SignedTreeHead | None = None
        self._lock_fd = -1
        self._ticker: threading.Thread | None = None
        self._committing = False  # a leader is writing; the writer state below is its alone
        self.commits = 0  # write + fsync pairs so far (records / commits = mean batch size)

    # ----------------------------------------------------------------- opening

    @classmethod
    def open(
        cls,
        directory: Path,
        signing_key: SigningKey,
        *,
        batch_size: int = 256,
        linger_ms: float = 0.0,
        tree_head_every: int = 1000,
        tree_head_ms: float = 1000.0,
        segment_max_bytes: int = 64 * 1024 * 1024,
        segment_max_age_s: float = 24 * 3600.0,
        previous_key: SigningKey | None = None,
        drop_written_pages: bool = True,
        clock: Callable[[], datetime] | None = None,
    ) -> AuditLog:
        """Open (or create) the log in `directory` for appending.

        A torn tail (a partial last entry after a crash) is cut back and a `recovery` record
        says so. When the log's tree heads are signed by `previous_key`, the log rotates to
        `signing_key` and records the rotation; any other key mismatch is refused.
        Once fsynced, what was written is dropped from the page cache (`drop_written_pages`):
        the log is read back only by verification and reports, and its pages would otherwise
        crowd out what is read (the processor's state); PostgreSQL drops its write-ahead log's
        pages for the same reason. Pass False when a reader tails the live log on this machine.
        `clock` gives the time stamped on records and tree heads (default: the system clock in
        UTC); tests use it to spread records over time.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        log = cls(
            directory,
            signing_key,
            batch_size=batch_size,
            linger_ms=linger_ms,
            tree_head_every=tree_head_every,
            tree_head_ms=tree_head_ms,
            segment_max_bytes=segment_max_bytes,
            segment_max_age_s=segment_max_age_s,
            drop_written_pages=drop_written_pages,
            clock=clock,
        )
        log._lock()
        try:
            log._start(previous_key)
        except BaseException:
            log._release()
            raise
        return log

    def _lock(self) -> None:
        fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            raise AuditError(
                f"{self.directory}: another process has this audit log open; each process "
                "keeps its own log directory (for example one subdirectory per instance)"
            ) from exc
        self._lock_fd = fd

    def _release(self) -> None:
        if self._segment_fd >= 0:
            os.close(self._segment_fd)
            self._segment_fd = -1
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def _start(self, previous_key: SigningKey | None) -> None:
        replay = _replay(self.directory)
        first: list[dict[str, Any]] = []
        if replay.log_id is None:
            self._log_id = uuid.uuid4().hex
            self._segment_index = 1
            self._open_segment(new=True)
            first.append(
                {
                    "type": "log_created",
                    "format": FORMAT,
                    "log_id": self._log_id,
                    "key_id": self._key.key_id,
                    "public_key": self._key.public_key.base64,
                    "hash": "sha256",
                    "signature_scheme": "ed25519",
                }
            )
        else:
            self._log_id = replay.log_id
            self._frontier = replay.frontier
            self._prev = replay.prev
            self._covered = replay.covered
            self._segment_index = replay.segment_index
            self._segment_started = replay.segment_started
            if replay.cut is not None:
                path, offset, discarded = replay.cut
                with open(path, "r+b") as torn:
                    torn.truncate(offset)
                    torn.flush()
                    os.fsync(torn.fileno())
                _note(
                    "warning",
                    "audit.torn_tail_cut",
                    segment=path.name,
                    offset=offset,
                    bytes_discarded=discarded,
                )
                first.append(
                    {
                        "type": "recovery",
                        "reason": "torn_tail",
                        "segment": path.name,
                        "offset": offset,
                        "bytes_discarded": discarded,
                        "records_before": replay.size,
                    }
                )
            elif replay.covered != replay.size:
                first.append(
                    {
                        "type": "recovery",
                        "reason": "unclean_shutdown",
                        "segment": segment_name(replay.segment_index),
                        "offset": replay.segment_bytes,
                        "bytes_discarded": 0,
                        "records_before": replay.size,
                    }
                )
            self._open_segment(new=False)
            if replay.key_id != self._key.key_id:
                if previous_key is None or previous_key.key_id != replay.key_id:
                    raise AuditError(
                        f"{self.directory}: the log's tree heads are signed by {replay.key_id}, "
                        f"but the key given is {self._key.key_id}; open it with that key, or "
                        "pass the old key as previous_key to rotate to the new one"
                    )
                # Records before the rotation are committed under the old key.
                new_key, self._key = self._key, previous_key
                if first:
                    self._commit_records(first, reason="recovery", force_tree_head=True)
                    first = []
                self._rotate_key_now(new_key)
        if first:
            self._commit_records(first, reason="open", force_tree_head=True)
        self._last_tree_head_at = time.monotonic()
        self._ticker = threading.Thread(
            target=self._run_ticker, name=f"audit-tree-heads:{self.directory.name}", daemon=True
        )
        self._ticker.start()

    def _open_segment(self, *, new: bool) -> None:
        path = self.directory / segment_name(self._segment_index)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
        fd = os.open(path, flags, 0o640)
        self._segment_fd = fd
        self._segment_bytes = os.fstat(fd).st_size
        self._pages_dropped_to = 0
        # Reopened, it may hold definitions already; a second one of a ref is the same.
        self._shared_written = set()
        if new:
            self._segment_started = self._clock().timestamp()
            # A new file is durable only once its directory entry is.
            dir_fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    # ----------------------------------------------------------------- appending

    def append(self, record: AuditRecord) -> AuditReceipt:
        """Append one record; returns once it is fsynced. Raises RecordRejected or LogClosed."""
        return self._submit([record])[0]

    def append_many(self, records: Iterable[AuditRecord]) -> Sequence[AuditReceipt]:
        """Append several records in one group commit (one write, one fsync)."""
        return self._submit(list(records), whole=True)

    def _submit(self, records: list[AuditRecord], whole: bool = False) -> Sequence[AuditReceipt]:
        if not records:
            return []
        for record in records:
            _check_record(record)
        with self._cond:
            if self._closing or self._failed is not None:
                raise LogClosed(self._closed_message())
            batch = self._open_batch
            creator = bool(
                batch is None
                or len(batch.records) >= self._batch_size
                or (
                    whole and len(batch.records) + len(records) > self._batch_size and batch.records
                )
            )
            if creator:
                batch = self._new_batch()
                self._open_batch = batch
            assert batch is not None
            start = len(batch.records)
            batch.records.extend(records)
            if len(batch.records) >= self._batch_size:
                batch.turn.notify()  # its creator may be lingering for it to fill
            self._wait_for(batch, creator)
        if batch.error is not None:
            if self._failed is None and not self._closing:
                raise AuditError(
                    f"{self.directory}: the append was withdrawn, not written: the thread "
                    "committing its batch was interrupted; retry it"
                ) from batch.error
            raise LogClosed(self._closed_message()) from batch.error
        receipts = batch.receipts
        if type(receipts) is Receipts:  # the compiled loop's: it refuses no record
            return receipts[start : start + len(records)]
        results = receipts[start : start + len(records)]
        for result in results:
            if isinstance(result, AuditError):
                raise result
        return results  # type: ignore[return-value]

    def _new_batch(self, action: Callable[[], None] | None = None) -> _Batch:
        """Under the lock: a batch at the end of the queue."""
        batch = _Batch(
            threading.Condition(self._lock_), threading.Condition(self._lock_), action=action
        )
        self._queue.append(batch)
        return batch

    def _run_as_commit(self, action: Callable[[], None]) -> None:
        """Run a control step as a commit of its own, in order with the appends before it."""
        with self._cond:
            if self._closing or self._failed is not None:
                raise LogClosed(self._closed_message())
            batch = self._new_batch(action)
            self._open_batch = None
            self._wait_for(batch, True)
        if batch.error is not None:
            raise LogClosed(self._closed_message()) from batch.error

    def rotate_key(self, new_key: SigningKey) -> None:
        """Switch to `new_key`: a `key_rotation` record, endorsed by a tree head signed with
        the current key; every later tree head is signed with `new_key`."""
        if new_key.key_id == self._key.key_id:
            raise AuditError(f"{self.directory}: the log already signs with {new_key.key_id}")
        self._run_as_commit(lambda: self._rotate_key_now(new_key))

    def seal_segment(self) -> None:
        """Close the current segment with a final signed tree head now (for archiving)."""
        self._run_as_commit(self._seal_segment)

    def write_tree_head(self) -> SignedTreeHead:
        """Write a signed tree head over everything appended so far and return it."""

        def step() -> None:
            if self._frontier.size > self._covered or self._latest_tree_head is None:
                self._write(self._tree_head_line("requested"))

        self._run_as_commit(step)
        assert self._latest_tree_head is not None
        return self._latest_tree_head

    def _closed_message(self) -> str:
        if self._failed is not None:
            return (
                f"{self.directory}: the audit log's writer failed ({self._failed!r}); "
                "nothing more is appended: restart the process to reopen the log"
            )
        return f"{self.directory}: the audit log is closed"

    # ----------------------------------------------------------------- group commit

    def _wait_for(self, batch: _Batch, leads: bool) -> None:
        """Under the lock: wait until `batch` is committed; its creator commits it.

        Leader/follower group commit: the thread that opened a batch writes and fsyncs it
        itself once every older batch is done, so no thread hand-off stands between an
        append and its fsync, and commits stay in arrival order.
        """
        try:
            while not batch.finished:
                if not leads:
                    batch.settled.wait()
                elif not self._committing and self._queue[0] is batch:
                    self._lead(batch)
                else:
                    batch.turn.wait()
        except BaseException as exc:
            if leads and not batch.finished:
                self._abandon(batch, exc)
            raise

    def _abandon(self, batch: _Batch, exc: BaseException) -> None:
        """Under the lock: the creator of a batch not yet written was interrupted (e.g. by
        KeyboardInterrupt): withdraw the batch so no one waits for a leader that is gone.
        Nothing of it was written; its other appenders get an error saying so."""
        if batch in self._queue:
            self._queue.remove(batch)
        if batch is self._open_batch:
            self._open_batch = None
        batch.error = exc
        batch.finished = True
        batch.settled.notify_all()
        self._hand_over()

    def _lead(self, batch: _Batch) -> None:
        """Under the lock: commit `batch`, the head of the queue (the lock is released while
        writing)."""
        self._committing = True
        try:
            if self._linger > 0 and batch is self._open_batch:
                deadline = time.monotonic() + self._linger
                while len(batch.records) < self._batch_size and not self._closing:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    batch.turn.wait(remaining)
            self._queue.popleft()
            if batch is self._open_batch:
                self._open_batch = None
            self._cond.release()
            try:
                if batch.action is not None:
                    batch.action()
                else:
                    batch.receipts = self._commit_records(batch.records, reason="interval")
            except BaseException as exc:
                self._cond.acquire()
                self._fail(exc, [batch])
                return
            self._cond.acquire()
            batch.finished = True
            batch.settled.notify_all()
        finally:
            self._committing = False
            self._hand_over()

    def _hand_over(self) -> None:
        """Under the lock, after a commit: wake the creator of the next batch, and `close`
        if it waits for the log to be idle. The ticker is not woken: on a busy machine
        every extra runnable thread costs the appenders a GIL hand-off (measured)."""
        if self._queue:
            self._queue[0].turn.notify()
        if self._closing or self._failed is not None:
            self._idle.notify_all()

    def _fail(self, exc: BaseException, taken: list[_Batch]) -> None:
        """Under the lock: fail closed; every waiting appender gets LogClosed."""
        self._failed = exc
        pending = taken + list(self._queue)
        self._queue.clear()
        self._open_batch = None
        for waiting in pending:
            waiting.error = exc
            waiting.finished = True
            waiting.settled.notify_all()
            waiting.turn.notify_all()
        self._cond.notify_all()  # the ticker stops
        _note("error", "audit.writer_failed", error=repr(exc))

    def _run_ticker(self) -> None:
        """Background thread: a signed tree head when records wait longer than tree_head_ms."""
        with self._cond:
            while not self._closing and self._failed is None:
                if self._frontier.size == self._covered:
                    self._cond.wait(self._tree_head_interval)
                    continue
                remaining = self._last_tree_head_at + self._tree_head_interval - time.monotonic()
                if remaining > 0 or self._committing or self._queue:
                    self._cond.wait(max(remaining, 0.001))
                    continue
                self._committing = True
                self._cond.release()
                try:
                    self._write(self._tree_head_line("interval"))
                except BaseException as exc:
                    self._cond.acquire()
                    self._committing = False
                    self._fail(exc, [])
                    self._hand_over()
                    return
                self._cond.acquire()
                self._committing = False
                self._hand_over()

    def _commit_records(
        self, records: Sequence[AuditRecord], *, reason: str, force_tree_head: bool = False
    ) -> Sequence[AuditReceipt | AuditError]:
        """Encode, chain and write `records` with one write and one fsync (the committing
        thread only)."""
        if self._segment_bytes > 0 and (
            self._segment_bytes >= self._segment_max_bytes
            or self._clock().timestamp() - self._segment_started >= self._segment_max_age
        ):
            self._seal_segment()
        records, defined = self._with_shared(records)
        ts = utc_timestamp(self._clock())
        # The lines and any tree head, written as they are (one writev): joined first,
        # a group's megabyte was copied twice more into new memory (perf, bench/gateway).
        chunks: list[bytes | bytearray] = []
        results: Sequence[AuditReceipt | AuditError]
        frontier = self._frontier
        seq = frontier.size
        chained = None
        if self._chain is not None and records:
            group = records if type(records) is list else list(records)
            chained = self._chain(group, seq, ts, self._prev, frontier.subtrees())
        if chained is not None:
            lines, hexes, subtrees = chained
            self._frontier = MerkleFrontier.from_subtrees(seq + len(hexes) // 64, subtrees)
            self._prev = hexes[-64:].decode("ascii")
            # The receipts are the caller's records', not the definitions' before them.
            results = Receipts(seq + defined, hexes, defined)
            chunks.append(lines)
        else:
            out = bytearray()
            results = self._encode(records, seq, ts, out)[defined:]
            chunks.append(out)
        uncovered = self._frontier.size - self._covered
        if uncovered >= self._tree_head_every:
            chunks.append(self._tree_head_line("count"))
        elif uncovered and (
            force_tree_head
            or time.monotonic() - self._last_tree_head_at >= self._tree_head_interval
        ):
            chunks.append(self._tree_head_line(reason))
        self._write(*chunks)
        return results

    def _with_shared(self, records: Sequence[AuditRecord]) -> tuple[Sequence[AuditRecord], int]:
        """`records` after the definitions of the shared members they name that this segment
        does not hold yet, with references in place of `SharedMembers` in dicts; and how
        many definitions come first."""
        definitions: list[AuditRecord] = []
        written = self._shared_written
        plain: list[AuditRecord] | None = None
        for index, record in enumerate(records):
            # (Exact types, not isinstance: this runs once per record, under the GIL.)
            if type(record) in ENCODED:
                shared = record.shared  # type: ignore[union-attr]  # an EncodedRecord
            else:
                mapping: Mapping[str, Any] = record  # type: ignore[assignment]  # checked
                shared = mapping.get(SHARED)
                if shared is not None:
                    if plain is None:
                        plain = list(records)
                    plain[index] = {**mapping, SHARED: shared.ref}
            if shared is not None and shared.ref not in written:
                written.add(shared.ref)
                definitions.append(shared.definition())
        if plain is not None:
            records = plain
        if definitions:
            return [*definitions, *records], len(definitions)
        return records, 0

    def _encode(
        self, records: Sequence[AuditRecord], seq: int, ts: str, out: bytearray
    ) -> list[AuditReceipt | AuditError]:
        """Encode and chain `records` into `out`: the reference for `fjordgate_native.
        chain_records`, and what runs when it is not built or declines a group."""
        results: list[AuditReceipt | AuditError] = []
        frontier = self._frontier
        prev = self._prev
        # The hot loop of every append: names bound locally, hashing inline (measured in
        # bench/audit; a function call per step costs about a fifth of the loop).
        sha256 = hashlib.sha256
        for record in records:
            fields: Mapping[str, Any] = (
                decoded(record)  # type: ignore[arg-type]  # an EncodedRecord
                if type(record) in ENCODED
                else record  # type: ignore[assignment]  # a mapping: checked on append
            )
            entry = {**fields, "seq": seq, "ts": ts, "prev": prev}
            try:
                line = canonical_json(entry)
            except TypeError as exc:
                results.append(
                    RecordRejected(
                        f"record of type {fields.get('type')!r} is not JSON-serialisable ({exc}); "
                        "use only str, int, float, bool, None, lists and string-keyed mappings"
                    )
                )
                continue
            digest = sha256(LEAF_PREFIX + line).digest()
            frontier.append(digest)
            prev = digest.hex()
            out += line
            out += b"\n"
            results.append(AuditReceipt(seq, prev))
            seq += 1
        self._prev = prev
        return results

    def _tree_head_line(self, reason: str) -> bytes:
        head = SignedTreeHead.sign(
            self._key,
            log_id=self._log_id,
            tree_size=self._frontier.size,
            root_hash=self._frontier.root(),
            timestamp=utc_timestamp(self._clock()),
            reason=reason,
            segment=self._segment_index,
        )
        self._covered = head.tree_size
        self._last_tree_head_at = time.monotonic()
        self._latest_tree_head = head
        return head.to_line() + b"\n"

    def _write(self, *chunks: bytes | bytearray) -> None:
        """Append `chunks` in order and fsync (nothing when they are all empty)."""
        views = [memoryview(c) for c in chunks if c]
        if not views:
            return
        size = sum(len(v) for v in views)
        while views:
            written = os.writev(self._segment_fd, views)
            while written and written >= len(views[0]):
                written -= len(views.pop(0))
            if written:
                views[0] = views[0][written:]
        os.fsync(self._segment_fd)
        self._segment_bytes += size
        self.commits += 1
        if self._drop_written_pages:
            # Whole pages only: the kernel keeps a partial last page, which the next write
            # fills. Measured in bench/gateway (served, alternating pairs): 1.06x, 1.08x,
            # 1.11x end to end, the gateway's CPU 9.1 -> 8.3 µs per event. Without it the
            # copy into new page-cache pages was 9% of the gateway's CPU, several times its
            # cost in isolation; probably because the benchmark's VM hands free memory back
            # to its host, and pages freed here are reused before they are handed back.
            start = self._pages_dropped_to
            os.posix_fadvise(
                self._segment_fd, start, self._segment_bytes - start, os.POSIX_FADV_DONTNEED
            )
            self._pages_dropped_to = self._segment_bytes - self._segment_bytes % _PAGE_SIZE

    def _seal_segment(self) -> None:
        """Close the current segment with its final signed tree head and start the next."""
        self._write(self._tree_head_line("segment_sealed"))
        os.close(self._segment_fd)
        self._segment_fd = -1
        self._segment_index += 1
        self._open_segment(new=True)

    def _rotate_key_now(self, new_key: SigningKey) -> None:
        record = {
            "type": SIGNING_KEY_ROTATION,
            "old_key_id": self._key.key_id,
            "new_key_id": new_key.key_id,
            "new_public_key": new_key.public_key.base64,
        }
        # The old key endorses the rotation: its tree head covers the rotation record.
        self._commit_records([record], reason="key_rotation", force_tree_head=True)
        self._key = new_key
        _note(
            "info", "audit.key_rotated", old_key_id=record["old_key_id"], new_key_id=new_key.key_id
        )

    # ----------------------------------------------------------------- control

    @property
    def log_id(self) -> str:
        return self._log_id

    @property
    def key_id(self) -> str:
        return self._key.key_id

    @property
    def latest_tree_head(self) -> SignedTreeHead | None:
        """The newest tree head this process wrote (None before the first)."""
        return self._latest_tree_head

    def close(self) -> None:
        """Write what is queued, a final tree head, and release the directory. Idempotent."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._cond.notify_all()
            # Appenders already queued lead their own commits; wait for them to finish.
            while (self._queue or self._committing) and self._failed is None:
                self._idle.wait()
        if self._ticker is not None and self._ticker is not threading.current_thread():
            self._ticker.join()
        try:
            if self._failed is None and self._frontier.size > self._covered:
                self._write(self._tree_head_line("close"))
        finally:
            self._release()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _replay(directory: Path) -> _Replay:
    """Read an existing log: rebuild the chain and Merkle frontier, find a torn tail."""
    from audit.archive import load_checkpoint  # archive builds on this module

    state = _Replay()
    checkpoint = load_checkpoint(directory)
    segments = list_segments(directory)
    if checkpoint is not None:
        # Archived segments are gone from here; continue from their checked checkpoint.
        state.log_id = checkpoint.log_id
        state.key_id = checkpoint.key_in_force.key_id
        state.size = state.covered = checkpoint.tree_size
        state.prev = checkpoint.prev
        state.frontier = MerkleFrontier.from_subtrees(
            checkpoint.tree_size, checkpoint.frontier.subtrees()
        )
        state.segment_index = checkpoint.through_segment
        segments = [(i, p) for i, p in segments if i > checkpoint.through_segment]
    for position, (index, path) in enumerate(segments):
        last_segment = position == len(segments) - 1
        data = path.read_bytes()
        state.segment_index = index
        state.segment_bytes = len(data)
        state.segment_started = path.stat().st_mtime
        for raw in split_entries(data):
            problem = _replay_entry(state, raw.data) if raw.complete else "partial last entry"
            if problem is None:
                if raw.offset == 0:
                    state.segment_started = state.last_time
                continue
            if last_segment and not _whole_entry_follows(data, raw.offset):
                state.cut = (path, raw.offset, len(data) - raw.offset)
                state.segment_bytes = raw.offset
                return state
            raise LogCorrupted(path, raw.offset, problem)
    return state


def _whole_entry_follows(data: bytes, offset: int) -> bool:
    """True when a parseable, newline-terminated entry follows the bad one at `offset`: then
    the damage is in the middle, not a torn tail."""
    for raw in split_entries(data[offset:]):
        if raw.offset == 0 or not raw.complete:
            continue
        try:
            parse_json(raw.data)
        except ValueError:
            continue
        return True
    return False


def _replay_entry(state: _Replay, line: bytes) -> str | None:
    """Fold one whole entry into `state`; returns what is wrong with it, or None."""
    try:
        entry = parse_json(line)
    except ValueError:
        return "not valid JSON"
    if not isinstance(entry, dict):
        return "not a JSON object"
    with contextlib.suppress(ValueError, TypeError, KeyError):
        state.last_time = parse_timestamp(str(entry.get("ts") or entry["timestamp"])).timestamp()
    if entry.get("type") == TREE_HEAD_TYPE:
        if entry.get("tree_size") != state.size:
            return f"tree head for size {entry.get('tree_size')} where the log has {state.size}"
        state.covered = state.size
        return None
    if entry.get("seq") != state.size:
        return f"record seq {entry.get('seq')} where {state.size} was expected"
    if entry.get("prev") != state.prev:
        return f"record {state.size}: prev does not match the previous record's hash"
    if state.size == 0:
        if entry.get("type") != "log_created" or not isinstance(entry.get("log_id"), str):
            return "the first record is not a log_created record"
        state.log_id = entry["log_id"]
        state.key_id = entry.get("key_id")
    elif entry.get("type") == SIGNING_KEY_ROTATION:
        state.key_id = entry.get("new_key_id")
    digest = leaf_hash(line)
    state.frontier.append(digest)
    state.prev = digest.hex()
    state.size += 1
    return None
