"""Independent verification of a log directory: every entry's encoding, the hash chain, every
Merkle root and every tree-head signature, reporting the first thing that is wrong and where."""

from __future__ import annotations

import binascii
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from audit.archive import CHECKPOINT_FILE, Checkpoint, load_checkpoint
from audit.canonical import canonical_json
from audit.errors import AuditError
from audit.keys import PublicKey
from audit.log import FORMAT, GENESIS_PREV, SIGNING_KEY_ROTATION
from audit.merkle import LEAF_PREFIX, MerkleFrontier
from audit.segments import instance_logs, list_segments, writer_active
from audit.shared import SharedError, SharedIndex
from audit.tree_head import TREE_HEAD_TYPE, SignedTreeHead

_sha256 = hashlib.sha256
_loads = orjson.loads

RecordVisitor = Callable[[dict[str, Any], str, int], None]
"""Called with (record, segment file name, byte offset) for every record that verified."""

ProgressCallback = Callable[[int], None]
"""Called with the number of bytes just read."""


@dataclass(frozen=True)
class Problem:
    """The first thing found wrong: where it is and what is wrong."""

    segment: str
    offset: int
    seq: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.segment} byte {self.offset}"
        record = f" (record seq {self.seq})" if self.seq is not None else ""
        return f"{where}{record}: {self.message}"


@dataclass(frozen=True)
class KeyEvent:
    """A signing key coming into force: at log creation, or by a recorded rotation."""

    seq: int
    key_id: str
    public_key: str
    ts: str


@dataclass
class VerificationReport:
    """What `verify_log` found for one log directory."""

    directory: Path
    log_id: str | None = None
    records: int = 0
    tree_heads: int = 0
    segments: int = 0
    bytes_read: int = 0
    problem: Problem | None = None
    warnings: list[str] = field(default_factory=list)
    keys: list[KeyEvent] = field(default_factory=list)
    heads: list[SignedTreeHead] = field(default_factory=list)
    leaves: list[bytes] = field(default_factory=list)  # of the records read (not archived ones)
    pinned: bool = False
    archived_records: int = 0  # records before the archive checkpoint, not read here

    @property
    def ok(self) -> bool:
        return self.problem is None

    @property
    def latest_tree_head(self) -> SignedTreeHead | None:
        return self.heads[-1] if self.heads else None

    def summary(self) -> str:
        if self.problem is not None:
            return f"{self.directory}: FAILED at {self.problem}"
        head = self.latest_tree_head
        anchor = "pinned public key" if self.pinned else "public key found in the log (not pinned)"
        root = head.root_hash if head else "-"
        return (
            f"{self.directory}: intact: {self.records} records, {self.tree_heads} signed tree "
            f"heads, {self.segments} segments; latest root {root}; signatures checked against "
            f"the {anchor}"
        )


class _Failed(Exception):
    def __init__(
        self, message: str, seq: int | None = None, where: tuple[str, int] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.seq = seq
        self.where = where  # (segment, offset) when the fault is not at the entry being read


class _LogVerifier:
    """Walks one log's entries in order, holding only the chain head and the Merkle frontier."""

    def __init__(
        self,
        report: VerificationReport,
        pinned_keys: Sequence[PublicKey],
        visitor: RecordVisitor | None,
        keep_leaves: bool,
        witness: SignedTreeHead | None,
    ) -> None:
        self.report = report
        self.pinned = {key.key_id: key for key in pinned_keys}
        self.visitor = visitor
        self.keep_leaves = keep_leaves
        self.witness = witness
        self.frontier = MerkleFrontier()
        self.prev = GENESIS_PREV
        self.key: PublicKey | None = None
        self.covered = 0
        self.pending_handover: tuple[int, PublicKey] | None = None
        self.witness_root: bytes | None = None
        self.sealed = False  # the last entry read is a segment's sealing tree head
        self.previous_at: tuple[str, int] | None = None  # where the last record starts
        self.shared = SharedIndex()  # every reference names a definition before it

    def start_from(self, checkpoint: Checkpoint) -> None:
        """Continue after archived segments from their (already checked) checkpoint."""
        self.frontier = MerkleFrontier.from_subtrees(
            checkpoint.tree_size, checkpoint.frontier.subtrees()
        )
        self.prev = checkpoint.prev
        self.key = checkpoint.key_in_force
        self.covered = checkpoint.tree_size
        self.report.log_id = checkpoint.log_id
        self.report.records = checkpoint.tree_size
        self.report.archived_records = checkpoint.tree_size
        self.report.heads.append(checkpoint.tree_head)
        self.report.keys.extend(
            KeyEvent(seq, key.key_id, key.base64, "") for seq, key in checkpoint.keys
        )
        self.sealed = True

    def entry(self, line: bytes, segment: int, segment_name: str, offset: int) -> None:
        try:
            value = _loads(line)
        except orjson.JSONDecodeError as exc:
            raise _Failed(f"not valid UTF-8 JSON ({exc})", self.frontier.size) from exc
        if not isinstance(value, dict):
            raise _Failed("an entry must be a JSON object", self.frontier.size)
        if canonical_json(value) != line:
            raise _Failed(
                "not in canonical form (sorted keys, no whitespace, UTF-8): the bytes were edited",
                self.frontier.size,
            )
        if value.get("type") == TREE_HEAD_TYPE:
            self.tree_head(value, segment)
        else:
            self.record(value, line, segment_name, offset)

    def record(self, record: dict[str, Any], line: bytes, segment_name: str, offset: int) -> None:
        seq = self.frontier.size
        if self.pending_handover is not None:
            raise _Failed(
                f"the key rotation at seq {self.pending_handover[0]} is not followed by a tree "
                "head signed with the old key",
                seq,
            )
        if record.get("seq") != seq:
            raise _Failed(
                f"sequence number {record.get('seq')!r} where {seq} was expected "
                "(a record is missing, duplicated or out of order)",
                seq,
            )
        if seq == 0 and record.get("prev") != GENESIS_PREV:
            raise _Failed("the first record's prev must be 64 zeros", 0)
        if record.get("prev") != self.prev:
            before = self.previous_at
            raise _Failed(
                f"the leaf hash of record {seq - 1} does not equal the prev of record {seq} "
                f"({segment_name} byte {offset}): record {seq - 1} was altered, or that prev was",
                seq - 1,
                before,
            )
        if not isinstance(record.get("ts"), str) or not isinstance(record.get("type"), str):
            raise _Failed("a record needs string fields 'type' and 'ts'", seq)
        if seq == 0:
            self.genesis(record)
        elif record["type"] == "log_created":
            raise _Failed("a second log_created record", seq)
        elif record["type"] == SIGNING_KEY_ROTATION:
            self.rotation(record, seq)
        try:
            self.shared.check(record, segment_name)
        except SharedError as exc:
            raise _Failed(str(exc), seq) from None
        digest = _sha256(LEAF_PREFIX + line).digest()
        self.frontier.append(digest)
        if self.keep_leaves:
            self.report.leaves.append(digest)
        self.prev = digest.hex()
        self.report.records += 1
        self.previous_at = (segment_name, offset)
        self.sealed = False
        if self.witness is not None and self.frontier.size == self.witness.tree_size:
            self.witness_root = self.frontier.root()
        if self.visitor is not None:
            self.visitor(record, segment_name, offset)

    def genesis(self, record: dict[str, Any]) -> None:
        if record.get("type") != "log_created":
            raise _Failed("the first record must be of type log_created", 0)
        if record.get("format") != FORMAT:
            raise _Failed(f"unknown format {record.get('format')!r}; this verifier reads {FORMAT}")
        key = self.public_key(record.get("public_key"), record.get("key_id"), 0)
        self.report.log_id = str(record.get("log_id"))
        self.key = key
        self.report.keys.append(KeyEvent(0, key.key_id, key.base64, str(record["ts"])))

    def rotation(self, record: dict[str, Any], seq: int) -> None:
        assert self.key is not None
        if record.get("old_key_id") != self.key.key_id:
            raise _Failed(
                f"key rotation from {record.get('old_key_id')!r}, but the key in force is "
                f"{self.key.key_id}",
                seq,
            )
        new_key = self.public_key(record.get("new_public_key"), record.get("new_key_id"), seq)
        self.pending_handover = (seq, new_key)
        self.report.keys.append(KeyEvent(seq, new_key.key_id, new_key.base64, str(record["ts"])))

    @staticmethod
    def public_key(encoded: object, key_id: object, seq: int) -> PublicKey:
        try:
            key = PublicKey.from_base64(str(encoded))
        except (ValueError, binascii.Error) as exc:
            raise _Failed(
                f"the public key in the record is not a 32-byte base64 key ({exc})", seq
            ) from exc
        if key.key_id != key_id:
            raise _Failed(
                f"key id {key_id!r} does not name the public key given ({key.key_id})", seq
            )
        return key

    def tree_head(self, value: dict[str, Any], segment: int) -> None:
        try:
            head = SignedTreeHead.from_dict(value)
        except ValueError as exc:
            raise _Failed(f"malformed tree head: {exc}") from exc
        size = self.frontier.size
        if self.key is None:
            raise _Failed("a tree head before the log_created record")
        if head.log_id != self.report.log_id:
            raise _Failed(
                f"tree head of log {head.log_id}, but this log is {self.report.log_id} "
                "(an entry from another log)"
            )
        if head.tree_size != size:
            raise _Failed(f"tree head for {head.tree_size} records where the log has {size}")
        if head.segment != segment:
            raise _Failed(f"tree head names segment {head.segment}, but it is in segment {segment}")
        root = self.frontier.root()
        if head.root_hash != root.hex():
            raise _Failed(
                f"tree head root {head.root_hash} does not match the Merkle root recomputed "
                f"from records 0..{size - 1} ({root.hex()}): a record after seq "
                f"{self.covered - 1} (the last tree head that verified) was altered, or this "
                "tree head was"
            )
        if not head.verify(self.key):
            raise _Failed(
                f"tree head signature does not verify with the key in force ({self.key.key_id}); "
                f"it names {head.key_id}"
            )
        if self.pending_handover is not None:
            if head.tree_size != self.pending_handover[0] + 1:
                raise _Failed("the key rotation's tree head does not end at the rotation record")
            self.key = self.pending_handover[1]
            self.pending_handover = None
        self.sealed = head.reason == "segment_sealed"
        self.covered = size
        self.report.tree_heads += 1
        self.report.heads.append(head)

    def finish(self) -> None:
        if self.report.records == 0:
            raise _Failed("the log holds no records")
        if self.pending_handover is not None:
            raise _Failed(
                f"the key rotation at seq {self.pending_handover[0]} has no tree head signed "
                "with the old key"
            )
        if self.pinned:
            anchored = any(event.key_id in self.pinned for event in self.report.keys)
            if not anchored:
                raise _Failed(
                    "no signing key of this log is a pinned public key: the log was not "
                    f"written with that key (its keys: {[k.key_id for k in self.report.keys]})"
                )
            latest = self.report.keys[-1].key_id
            initial = self.report.keys[0].key_id
            if latest not in self.pinned and initial not in self.pinned:
                raise _Failed(
                    "the pinned key is neither the log's first key nor its current key, so "
                    "it does not anchor the whole chain of key rotations"
                )
            self.report.pinned = True
        if self.witness is not None:
            self.check_witness()
        uncovered = self.frontier.size - self.covered
        if uncovered:
            self.report.warnings.append(
                f"the last {uncovered} records (seq {self.covered}..{self.frontier.size - 1}) "
                "are not yet covered by a signed tree head: the writer is running or stopped "
                "without closing; reopening the log signs them"
            )

    def check_witness(self) -> None:
        witness = self.witness
        assert witness is not None
        if witness.log_id != self.report.log_id:
            raise _Failed(f"the tree head given is of log {witness.log_id}")
        if witness.tree_size > self.frontier.size:
            raise _Failed(
                f"the tree head given covers {witness.tree_size} records, but the log holds only "
                f"{self.frontier.size}: records were removed from the end"
            )
        keys = {event.key_id: PublicKey.from_base64(event.public_key) for event in self.report.keys}
        key = keys.get(witness.key_id)
        if key is None or not witness.verify(key):
            raise _Failed("the tree head given is not signed by a key of this log")
        if self.witness_root is None or self.witness_root.hex() != witness.root_hash:
            raise _Failed(
                f"the log's first {witness.tree_size} records do not have the root of the tree "
                "head given: the log was rewritten since that tree head was issued"
            )


def verify_log(
    directory: Path,
    public_keys: Sequence[PublicKey] = (),
    *,
    visitor: RecordVisitor | None = None,
    keep_leaves: bool = False,
    progress: ProgressCallback | None = None,
    witness: SignedTreeHead | None = None,
    archive: Path | None = None,
) -> VerificationReport:
    """Verify one log directory. `public_keys` pins the signing key (recommended); without it
    the key in the log's first record is used and the report says it is not pinned. `witness`
    is a tree head obtained earlier: the log must still contain it (detects cut-off tails).
    `archive` holds segments moved out by `audit archive`: with it the whole log is verified
    from record 0; without it, verification starts from the archive checkpoint."""
    report = VerificationReport(directory=directory)
    verifier = _LogVerifier(report, public_keys, visitor, keep_leaves, witness)
    segments = list_segments(directory) if directory.is_dir() else []
    if archive is not None and archive.is_dir():
        in_directory = {index for index, _ in segments}
        segments = sorted(
            [s for s in list_segments(archive) if s[0] not in in_directory] + segments
        )
    report.segments = len(segments)
    if not segments:
        report.problem = Problem(str(directory), 0, None, "no segment files: not an audit log")
        return report
    current_name, current_offset = segments[0][1].name, 0
    first = 1
    live = writer_active(directory)
    try:
        try:
            checkpoint = load_checkpoint(directory)
        except AuditError as exc:
            current_name = CHECKPOINT_FILE
            raise _Failed(str(exc)) from exc
        if checkpoint is not None and segments[0][0] != 1:
            verifier.start_from(checkpoint)
            first = checkpoint.through_segment + 1
        for position, (index, path) in enumerate(segments):
            current_name, current_offset = path.name, 0
            if index != position + first:
                raise _Failed(
                    f"segment {position + first} is missing (found segment {index} next)",
                )
            data = path.read_bytes()
            verifier.sealed = False
            reported = 0
            lines = data.split(b"\n")
            tail = lines.pop()  # empty when the segment ends with a whole entry
            offset = 0
            entry = verifier.entry
            for count, line in enumerate(lines):
                current_offset = offset
                if progress is not None and count % 2048 == 2047:
                    progress(offset - reported)
                    reported = offset
                entry(line, index, path.name, offset)
                offset += len(line) + 1
            if tail:
                current_offset = offset
                if position == len(segments) - 1 and live:
                    report.warnings.append(
                        f"{path.name} byte {offset}: the writer is appending; the "
                        f"{len(tail)} bytes of its unfinished write were not checked"
                    )
                    data = data[:offset]
                else:
                    raise _Failed(
                        "a partial entry at the end of the segment (torn tail): the writer "
                        "crashed and the log was not reopened, or the file was cut; opening the "
                        "log cuts it back and records the recovery",
                        verifier.frontier.size,
                    )
            report.bytes_read += len(data)
            if progress is not None:
                progress(len(data) - reported)
            if position < len(segments) - 1 and not verifier.sealed:
                current_offset = len(data)
                raise _Failed(
                    "a segment that is not the last must end with its sealing tree head "
                    "(reason segment_sealed): its end was cut or the segment was replaced"
                )
        current_offset = -1
        verifier.finish()
        if checkpoint is not None and checkpoint.tree_head not in report.heads:
            current_name = CHECKPOINT_FILE
            raise _Failed(
                "the archive checkpoint's tree head is not in the log: the archived segments "
                "given are not the ones the checkpoint was made from"
            )
    except _Failed as failure:
        if failure.where is not None:
            current_name, current_offset = failure.where
        report.problem = Problem(current_name, current_offset, failure.seq, failure.message)
    return report


def verify_directory(
    directory: Path,
    public_keys: Sequence[PublicKey] = (),
    *,
    visitor: RecordVisitor | None = None,
    progress: ProgressCallback | None = None,
) -> list[VerificationReport]:
    """Verify a log directory, or each instance log in its subdirectories."""
    logs = instance_logs(directory)
    if not logs:
        report = VerificationReport(directory=directory)
        report.problem = Problem(
            str(directory),
            0,
            None,
            "no audit log here (no segment files, nor subdirectories with them)",
        )
        return [report]
    return [verify_log(log, public_keys, visitor=visitor, progress=progress) for log in logs]


def load_tree_head(path: Path) -> SignedTreeHead:
    """Read a tree head saved as JSON (as `audit prove` and the bundle write it)."""
    value = orjson.loads(path.read_bytes())
    if isinstance(value, dict) and "tree_head" in value:
        value = value["tree_head"]
    if not isinstance(value, dict):
        raise ValueError(f"{path}: not a tree head")
    return SignedTreeHead.from_dict(value)
