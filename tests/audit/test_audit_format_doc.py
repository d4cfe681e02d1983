"""docs/audit-format.md is exact: its worked example is what the writer produces byte for byte,
and a verifier written from the document alone (stdlib json, hashlib, base64 and an Ed25519
primitive; nothing from the audit package) accepts our logs and rejects tampered ones."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from audit import AuditLog, SigningKey

DOC = Path(__file__).resolve().parents[2] / "docs" / "audit-format.md"


def documented_example() -> bytes:
    section = DOC.read_text(encoding="utf-8").split("## 11. Worked example", 1)[1]
    block = re.search(r"```text\n(.*?)```", section, re.S)
    assert block is not None
    return block.group(1).encode("utf-8")


def test_worked_example_is_what_the_writer_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(uuid, "uuid4", lambda: uuid.UUID("0123456789abcdef0123456789abcdef"))
    key = SigningKey(Ed25519PrivateKey.from_private_bytes(bytes(range(32))))
    now = [datetime(2026, 11, 25, 6, 0, 0, tzinfo=UTC)]
    log = AuditLog.open(tmp_path / "log", key, clock=lambda: now[0], tree_head_ms=3_600_000)
    now[0] += timedelta(seconds=1)
    log.append(
        {
            "type": "decision",
            "stream": "norway-traffic",
            "outcome": "allow",
            "rule_ids": ["traffic.plate"],
            "subjects": ["ps1:k0a1b2c3d4e5f:Xq3v9Jm2Lr8Tb5Nw1Kc7Hd4Fs6Gp0Ye2Ua8Zi3Oo5Qe"],
        }
    )
    now[0] += timedelta(seconds=1)
    log.append(
        {
            "type": "egress",
            "destination": "https://api.example.com/ingest",
            "outcome": "deny",
            "rule_id": "egress.forbidden-jurisdiction-us",
        }
    )
    now[0] += timedelta(seconds=1)
    log.close()
    assert (tmp_path / "log" / "segment-00000001.jsonl").read_bytes() == documented_example()


# ---- a verifier written from docs/audit-format.md alone ------------------------------------


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _mth(leaves: list[bytes]) -> bytes:
    if not leaves:
        return _sha(b"")
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return _sha(b"\x01" + _mth(leaves[:k]) + _mth(leaves[k:]))


def _key_id(raw: bytes) -> str:
    return "ed25519:" + hashlib.sha256(raw).hexdigest()[:16]


def doc_verifier(directory: Path, pinned_raw: bytes) -> str | None:
    """Section 8 of the format document, step by step. Returns None or what is wrong."""
    names = sorted(
        p.name for p in directory.iterdir() if re.fullmatch(r"segment-\d{8}\.jsonl", p.name)
    )
    leaves: list[bytes] = []
    prev, key, log_id, pending, keys = "0" * 64, b"", "", None, []
    for position, name in enumerate(names):
        if int(name[8:16]) != position + 1:
            return "segment gap"
        data = (directory / name).read_bytes()
        if data and not data.endswith(b"\n"):
            return "torn tail"
        last: dict[str, object] = {}
        shared: dict[str, dict[str, object]] = {}  # section 4.1: defined in this segment
        for line in data.split(b"\n")[:-1]:
            try:
                entry = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                return "not JSON"
            if not isinstance(entry, dict):
                return "not an object"
            last = entry
            if entry.get("type") == "tree_head":
                members = {
                    "type",
                    "log_id",
                    "tree_size",
                    "root_hash",
                    "timestamp",
                    "key_id",
                    "reason",
                    "segment",
                    "signature",
                }
                if set(entry) != members or entry["log_id"] != log_id:
                    return "tree head members or log id"
                if entry["tree_size"] != len(leaves) or entry["segment"] != position + 1:
                    return "tree head size or segment"
                if entry["root_hash"] != _mth(leaves).hex():
                    return "root mismatch"
                unsigned = {k: v for k, v in entry.items() if k != "signature"}
                message = json.dumps(
                    unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False
                ).encode("utf-8")
                try:
                    signature = base64.b64decode(entry["signature"], validate=True)
                except ValueError:
                    return "signature encoding"
                if base64.b64encode(signature).decode() != entry["signature"]:
                    return "non-canonical base64"
                if entry["key_id"] != _key_id(key):
                    return "key id"
                try:
                    Ed25519PublicKey.from_public_bytes(key).verify(signature, message)
                except InvalidSignature:
                    return "bad signature"
                if pending is not None:
                    if entry["tree_size"] != pending[0] + 1:
                        return "rotation not endorsed"
                    key, pending = pending[1], None
                continue
            if pending is not None:
                return "rotation not endorsed"
            if entry.get("seq") != len(leaves) or entry.get("prev") != prev:
                return f"chain broken at seq {len(leaves)}"
            if len(leaves) == 0:
                if entry.get("type") != "log_created" or entry.get("format") != "fjordgate-audit/1":
                    return "first record"
                key = base64.b64decode(entry["public_key"])
                if _key_id(key) != entry["key_id"]:
                    return "key id of the first key"
                log_id, keys = entry["log_id"], [key]
            elif entry.get("type") == "log_created":
                return "second log_created"
            elif entry.get("type") == "signing_key_rotation":
                new = base64.b64decode(entry["new_public_key"])
                if entry["old_key_id"] != _key_id(key) or entry["new_key_id"] != _key_id(new):
                    return "rotation keys"
                pending = (len(leaves), new)
                keys.append(new)
            if entry.get("type") == "shared":
                members = entry.get("members")
                canonical = json.dumps(
                    members, sort_keys=True, separators=(",", ":"), ensure_ascii=False
                ).encode("utf-8")
                if not isinstance(members, dict) or entry.get("ref") != _sha(canonical).hex()[:32]:
                    return "shared members not their ref's"
                shared[str(entry["ref"])] = members
            elif "shared" in entry:
                named = shared.get(entry["shared"]) if isinstance(entry["shared"], str) else None
                if named is None or set(named) & set(entry):
                    return "shared reference"
            leaf = _sha(b"\x00" + line)
            leaves.append(leaf)
            prev = leaf.hex()
        if position < len(names) - 1 and not (
            last.get("type") == "tree_head" and last.get("reason") == "segment_sealed"
        ):
            return "segment not sealed"
    if not leaves or pending is not None:
        return "empty or unendorsed rotation"
    if pinned_raw not in (keys[0], keys[-1]):
        return "not the pinned key"
    return None


def test_a_verifier_written_from_the_document_agrees_with_ours(
    tmp_path: Path, sample_log_writer: Callable[..., None]
) -> None:
    key = SigningKey.generate()
    sample_log_writer(tmp_path / "logs", key, decisions=300, instances=1)
    log_dir = tmp_path / "logs" / "gateway-1"
    with AuditLog.open(log_dir, key, segment_max_bytes=4000) as log:
        rotated = SigningKey.generate()
        for i in range(40):
            log.append({"type": "decision", "outcome": "allow", "i": i})
            if i == 20:
                log.rotate_key(rotated)
    assert len(list(log_dir.glob("segment-*.jsonl"))) >= 3
    assert doc_verifier(log_dir, key.public_key.raw) is None
    assert doc_verifier(log_dir, rotated.public_key.raw) is None
    assert doc_verifier(log_dir, SigningKey.generate().public_key.raw) == "not the pinned key"

    # The sample names shared members in half its decisions, in every segment it fills.
    assert any(b'"type":"shared"' in p.read_bytes() for p in log_dir.glob("segment-*.jsonl"))

    tampered = tmp_path / "tampered"
    shutil.copytree(log_dir, tampered)
    segment = sorted(tampered.glob("segment-*.jsonl"))[1]
    segment.write_bytes(segment.read_bytes().replace(b'"outcome":"allow"', b'"outcome":"deny"', 1))
    assert doc_verifier(tampered, key.public_key.raw) is not None


def test_the_document_verifier_refuses_a_reference_its_segment_does_not_define(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A log whose writer (holding the key, so every hash and signature is right) names
    shared members it never defined in the segment: section 8, step 4 refuses it."""
    from audit import SharedMembers

    key = SigningKey.generate()
    why = SharedMembers.of({"rule_ids": ["traffic.plate"]})
    with AuditLog.open(tmp_path / "good", key) as log:
        log.append({"type": "decision", "outcome": "allow", "shared": why})
    assert doc_verifier(tmp_path / "good", key.public_key.raw) is None
    monkeypatch.setattr(AuditLog, "_with_shared", lambda self, records: (records, 0))
    monkeypatch.setattr("audit.log._check_record", lambda record: None)
    with AuditLog.open(tmp_path / "forged", key) as log:
        log.append({"type": "decision", "outcome": "allow", "shared": why.ref})
    assert doc_verifier(tmp_path / "forged", key.public_key.raw) == "shared reference"
