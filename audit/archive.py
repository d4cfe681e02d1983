"""Retention: moving whole sealed segments out of a log directory into an archive, leaving an
archive checkpoint from which both the writer and `verify` continue without them.

The checkpoint holds the sealing tree head of the last archived segment (signed), the Merkle
frontier at that point (whose fold must equal the signed root), and the key records and the
last record with inclusion proofs against that root, so nothing in it has to be trusted.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from audit.canonical import canonical_json, utc_timestamp
from audit.errors import AuditError
from audit.keys import PublicKey
from audit.log import LOG_CREATED, SIGNING_KEY_ROTATION
from audit.merkle import MerkleFrontier, inclusion_proof, leaf_hash, verify_inclusion
from audit.segments import list_segments
from audit.tree_head import SignedTreeHead

CHECKPOINT_FILE = "archive-checkpoint.json"
CHECKPOINT_FORMAT = "fjordgate-audit-archive/1"
_ARCHIVE_LOCK = ".archive-lock"


@dataclass(frozen=True)
class Checkpoint:
    """The verified state of a log after its archived segments."""

    log_id: str
    through_segment: int
    tree_size: int
    prev: str
    frontier: MerkleFrontier
    tree_head: SignedTreeHead
    keys: list[tuple[int, PublicKey]]  # (seq of the announcing record, key), oldest first
    key_in_force: PublicKey


def checkpoint_path(directory: Path) -> Path:
    return directory / CHECKPOINT_FILE


def load_checkpoint(directory: Path) -> Checkpoint | None:
    """Read and check the directory's archive checkpoint (None when nothing was archived).

    Raises AuditError saying what is wrong when the checkpoint does not hold together.
    """
    path = checkpoint_path(directory)
    if not path.exists():
        return None
    try:
        document = orjson.loads(path.read_bytes())
        return _check(document)
    except (KeyError, TypeError, ValueError) as exc:
        raise AuditError(f"{path}: the archive checkpoint is invalid: {exc}") from exc


def _check(document: dict[str, Any]) -> Checkpoint:
    if document.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"unknown format {document.get('format')!r}")
    head = SignedTreeHead.from_dict(document["tree_head"])
    size = head.tree_size
    if head.reason != "segment_sealed" or head.segment != document["archived_through_segment"]:
        raise ValueError("its tree head is not the sealing tree head of the last archived segment")
    subtrees = [bytes.fromhex(h) for h in document["frontier"]]
    frontier = MerkleFrontier.from_subtrees(size, subtrees)
    root = bytes.fromhex(head.root_hash)
    if frontier.root() != root:
        raise ValueError("the Merkle frontier does not fold to the signed root")

    def proven(item: dict[str, Any]) -> dict[str, Any]:
        line = str(item["line"]).encode("utf-8")
        path = [bytes.fromhex(h) for h in item["audit_path"]]
        seq = int(item["seq"])
        if not verify_inclusion(seq, size, leaf_hash(line), path, root):
            raise ValueError(f"record {seq} is not in the signed tree (inclusion proof fails)")
        record = orjson.loads(line)
        if record.get("seq") != seq:
            raise ValueError(f"record {seq} carries seq {record.get('seq')}")
        return dict(record)

    keys: list[tuple[int, PublicKey]] = []
    for item in document["key_records"]:
        record = proven(item)
        if not keys:
            if record.get("type") != LOG_CREATED or record["seq"] != 0:
                raise ValueError("the first key record is not the log_created record 0")
            keys.append((0, PublicKey.from_base64(record["public_key"])))
        elif record.get("type") == SIGNING_KEY_ROTATION:
            keys.append((record["seq"], PublicKey.from_base64(record["new_public_key"])))
        else:
            raise ValueError(f"record {record['seq']} is not a key record")
    if not keys or head.log_id != document["log_id"]:
        raise ValueError("no log_created record, or a tree head of another log")
    last = proven(document["last_record"])
    if last["seq"] != size - 1:
        raise ValueError("the last record is not the last one the tree head covers")
    # The key that signs a tree head of size n: the newest key announced before record n - 1
    # (a rotation's own tree head is signed by the old key).
    signer = [key for seq, key in keys if seq == 0 or seq + 1 < size][-1]
    if not head.verify(signer):
        raise ValueError("the tree head's signature does not verify with the key in force")
    in_force = keys[-1][1]
    line = str(document["last_record"]["line"]).encode("utf-8")
    return Checkpoint(
        log_id=head.log_id,
        through_segment=head.segment,
        tree_size=size,
        prev=leaf_hash(line).hex(),
        frontier=frontier,
        tree_head=head,
        keys=keys,
        key_in_force=in_force,
    )


@dataclass(frozen=True)
class ArchiveResult:
    """What `archive_segments` moved."""

    directory: Path
    segments: list[str]
    records_archived: int  # total records now held in the archive for this log


def archive_segments(directory: Path, archive: Path, before: datetime) -> ArchiveResult:
    """Move every sealed segment whose sealing tree head is older than `before` (a prefix of
    the log; never the segment being written) to `archive`/<log dir name>/, then write the
    checkpoint there and in the log directory, and only then remove the moved segments.

    The log must verify first. Copies are fsynced and compared before anything is removed.
    """
    from audit.verify import verify_log

    target = archive / directory.name
    lock_fd = os.open(directory / _ARCHIVE_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise AuditError(f"{directory}: another archive run is in progress") from exc
        key_lines: dict[int, bytes] = {}
        last_in_segment: dict[str, tuple[int, bytes]] = {}

        def keep(record: dict[str, Any], segment: str, _offset: int) -> None:
            line = canonical_json(record)  # the stored bytes: verify checked they are canonical
            if record["type"] in (LOG_CREATED, SIGNING_KEY_ROTATION):
                key_lines[record["seq"]] = line
            last_in_segment[segment] = (record["seq"], line)

        report = verify_log(directory, visitor=keep, keep_leaves=True)
        if report.problem is not None:
            raise AuditError(
                f"{directory}: the log does not verify, nothing is archived: {report.problem}"
            )
        previous = load_checkpoint(directory)
        leaves = report.leaves
        if report.archived_records:
            # The verifier started from the checkpoint; the proofs need the whole tree. (After
            # a run interrupted before its deletions, it started from record 0 instead.)
            leaves = _archived_leaves(target, report.archived_records) + leaves
            key_lines = {**_checkpoint_key_lines(directory), **key_lines}
        cutoff = utc_timestamp(before)
        sealing = {h.segment: h for h in report.heads if h.reason == "segment_sealed"}
        chosen: list[Path] = []
        for index, path in list_segments(directory)[:-1]:
            head = sealing.get(index)
            if head is None or head.timestamp >= cutoff:
                break
            chosen.append(path)
        if not chosen:
            return ArchiveResult(directory, [], previous.tree_size if previous else 0)
        last_head = sealing[_index_of(chosen[-1])]
        size = last_head.tree_size
        frontier = MerkleFrontier()
        for leaf in leaves[:size]:
            frontier.append(leaf)
        # The last record before the seal: in the newest chosen segment that holds a record.
        last_line = next(
            last_in_segment[path.name][1]
            for path in reversed(chosen)
            if path.name in last_in_segment
        )

        def proof(seq: int, line: bytes) -> dict[str, Any]:
            path = inclusion_proof(seq, leaves[:size])
            return {"seq": seq, "line": line.decode("utf-8"), "audit_path": [h.hex() for h in path]}

        target.mkdir(parents=True, exist_ok=True)
        moved: list[dict[str, Any]] = []
        for path in chosen:
            data = path.read_bytes()
            copy = target / path.name
            with open(copy, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            if copy.read_bytes() != data:
                raise AuditError(f"{copy}: the archived copy differs from {path}; nothing removed")
            moved.append(
                {"name": path.name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
            )
        _fsync_dir(target)
        earlier = (
            orjson.loads(checkpoint_path(directory).read_bytes())["segments"] if previous else []
        )
        # A rerun after an interrupted one copies some segments again: list each once.
        segments_moved = list({m["name"]: m for m in [*earlier, *moved]}.values())
        document = {
            "format": CHECKPOINT_FORMAT,
            "log_id": report.log_id,
            "archived_through_segment": last_head.segment,
            "archived_at": utc_timestamp(),
            "tree_head": last_head.to_dict(),
            "frontier": [h.hex() for h in frontier.subtrees()],
            "key_records": [
                proof(seq, line) for seq, line in sorted(key_lines.items()) if seq < size
            ],
            "last_record": proof(size - 1, last_line),
            "segments": segments_moved,
        }
        _check(document)  # never write a checkpoint that would not verify
        text = orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n"
        for where in (target / CHECKPOINT_FILE, checkpoint_path(directory)):
            tmp = where.with_name(where.name + ".tmp")
            with open(tmp, "wb") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, where)
        _fsync_dir(target)
        _fsync_dir(directory)
        for path in chosen:
            path.unlink()
        _fsync_dir(directory)
        return ArchiveResult(directory, [m["name"] for m in moved], size)
    finally:
        os.close(lock_fd)


def _index_of(path: Path) -> int:
    return int(path.name[len("segment-") : len("segment-") + 8])


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _archived_leaves(archive: Path, count: int) -> list[bytes]:
    """Leaf hashes of the first `count` records, read back from the archive."""
    leaves: list[bytes] = []
    for _, path in list_segments(archive):
        for line in path.read_bytes().splitlines():
            if orjson.loads(line).get("type") != "tree_head":
                leaves.append(leaf_hash(line))
    if len(leaves) < count:
        raise AuditError(
            f"{archive}: the archive holds {len(leaves)} records, the checkpoint says {count}; "
            "archive into the same directory as before"
        )
    return leaves[:count]


def _checkpoint_key_lines(directory: Path) -> dict[int, bytes]:
    old = orjson.loads(checkpoint_path(directory).read_bytes())
    return {int(item["seq"]): str(item["line"]).encode("utf-8") for item in old["key_records"]}
