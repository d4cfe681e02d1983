"""Shared members (docs/audit-format.md, section 4.1): written once per segment before the
first record that names them, receipts still the caller's records', the verifier holding
every reference to a definition earlier in its segment, readers seeing records resolved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from audit import (
    AuditLog,
    CanonicalRecord,
    RecordRejected,
    SharedIndex,
    SharedMembers,
    SigningKey,
    resolved,
    verify_log,
)
from audit.segments import list_segments
from audit.shared import SharedError, shared_ref
from audit.subject import find_subject

WHY = {
    "fields": [{"action": "pseudonymise", "path": "driver_id", "pii_class": "fodselsnummer"}],
    "policy_hash": "sha256:" + "3f" * 32,
    "rule_ids": ["streams.norway-traffic.fields.driver_id"],
}


def decision(shared: SharedMembers, n: int, **extra: Any) -> dict[str, Any]:
    return {"type": "decision", "event_id": f"e-{n}", "outcome": "allow", "shared": shared, **extra}


def segments(log_dir: Path) -> list[list[dict[str, Any]]]:
    return [
        [orjson.loads(line) for line in path.read_bytes().splitlines()]
        for _, path in list_segments(log_dir)
    ]


def test_members_are_written_once_per_segment_before_their_first_use(
    log_dir: Path, signing_key: SigningKey
) -> None:
    one, two = SharedMembers.of(WHY), SharedMembers.of({**WHY, "rule_ids": []})
    with AuditLog.open(log_dir, signing_key, segment_max_bytes=1500) as log:
        receipts = list(log.append_many([decision(one, 0), decision(two, 1)]))
        receipts.append(log.append(CanonicalRecord.of(decision(one, 2))))
        for n in range(3, 12):
            receipts.append(log.append(decision(one if n % 2 else two, n)))
    parts = segments(log_dir)
    assert len(parts) >= 3  # it rotated (by size), so definitions repeat per segment
    by_seq = {}
    for entries in parts:
        defined: set[str] = set()
        for entry in entries:
            if entry["type"] == "shared":
                assert entry["ref"] not in defined  # once per segment
                assert entry["ref"] == shared_ref(entry["members"])
                defined.add(entry["ref"])
            elif entry["type"] == "decision":
                assert entry["shared"] in defined  # defined before, in this segment
                assert not set(WHY) & set(entry)  # and not repeated inline
            if "seq" in entry:
                by_seq[entry["seq"]] = entry
    # Each receipt is the caller's record's, not a definition's.
    assert [by_seq[r.seq]["event_id"] for r in receipts] == [f"e-{n}" for n in range(12)]
    report = verify_log(log_dir, [signing_key.public_key])
    assert report.ok, report.summary()


def test_a_reopened_log_defines_again_and_still_verifies(
    log_dir: Path, signing_key: SigningKey
) -> None:
    shared = SharedMembers.of(WHY)
    for run in range(2):
        with AuditLog.open(log_dir, signing_key) as log:
            log.append(decision(shared, run))
    entries = [e for part in segments(log_dir) for e in part]
    assert [e["ref"] for e in entries if e["type"] == "shared"] == [shared.ref] * 2
    assert verify_log(log_dir, [signing_key.public_key]).ok


def test_callers_may_not_write_definitions_or_bare_references(audit_log: AuditLog) -> None:
    with pytest.raises(RecordRejected, match="reserved"):
        audit_log.append({"type": "shared", "ref": "0" * 32, "members": {}})
    with pytest.raises(RecordRejected, match="SharedMembers"):
        audit_log.append({"type": "decision", "shared": "0" * 32})
    with pytest.raises(SharedError, match="type"):
        SharedMembers.of({"type": "decision"})
    with pytest.raises(SharedError, match="serialisable"):
        SharedMembers.of({"fields": {1, 2}})


def test_a_record_made_in_advance_names_the_same_members(audit_log: AuditLog) -> None:
    shared = SharedMembers.of(WHY)
    record = decision(shared, 1, pseudonyms={"driver_id": "ps1:k1:abc"})
    encoded = CanonicalRecord.of(record)
    assert encoded.shared is shared and encoded["shared"] == shared.ref
    assert (
        resolved(encoded)
        == resolved(record)
        == {
            **{k: v for k, v in record.items() if k != "shared"},
            **WHY,
        }
    )


def _forged_log(
    log_dir: Path, key: SigningKey, monkeypatch: pytest.MonkeyPatch, records: list[Any]
) -> None:
    """A log whose writer breaks the rules: it writes what it is given, unexpanded."""
    monkeypatch.setattr(AuditLog, "_with_shared", lambda self, records: (records, 0))
    monkeypatch.setattr("audit.log._check_record", lambda record: None)
    with AuditLog.open(log_dir, key) as log:
        log.append_many(records)


@pytest.mark.parametrize(
    ("records", "problem", "seq"),
    [
        ([{"type": "decision", "shared": "ab" * 16}], "not defined earlier", 1),
        (
            [
                {"type": "decision", "shared": shared_ref(WHY)},
                {"type": "shared", "ref": shared_ref(WHY), "members": WHY},
            ],
            "not defined earlier",
            1,
        ),
        ([{"type": "shared", "ref": "0" * 32, "members": WHY}], "not the hash", 1),
        (
            [
                {"type": "shared", "ref": shared_ref(WHY), "members": WHY},
                {"type": "decision", "shared": shared_ref(WHY), "mode": "observe", **WHY},
            ],
            "also holds",
            2,
        ),
        ([{"type": "decision", "shared": 7}], "reference string", 1),
    ],
    ids=["undefined", "defined-after-use", "wrong-ref", "clash", "not-a-string"],
)
def test_the_verifier_refuses_a_broken_reference(
    tmp_path: Path,
    signing_key: SigningKey,
    monkeypatch: pytest.MonkeyPatch,
    records: list[dict[str, Any]],
    problem: str,
    seq: int,
) -> None:
    _forged_log(tmp_path / "log", signing_key, monkeypatch, records)
    report = verify_log(tmp_path / "log", [signing_key.public_key])
    assert not report.ok and report.problem is not None
    assert problem in str(report.problem) and report.problem.seq == seq


def test_a_reference_does_not_reach_into_the_previous_segment() -> None:
    index = SharedIndex()
    index.add({"type": "shared", "ref": shared_ref(WHY), "members": WHY}, "segment-00000001.jsonl")
    record = {"type": "decision", "shared": shared_ref(WHY), "event_id": "e-1"}
    assert index.add(record, "segment-00000001.jsonl") == {
        "type": "decision",
        "event_id": "e-1",
        **WHY,
    }
    with pytest.raises(SharedError, match=r"segment-00000002\.jsonl"):
        index.add(record, "segment-00000002.jsonl")


def test_a_subject_search_shows_the_decision_resolved(
    log_dir: Path, signing_key: SigningKey
) -> None:
    token = "ps1:k0a1b2c3d4e5f:" + "Q" * 43
    with AuditLog.open(log_dir, signing_key) as log:
        log.append(decision(SharedMembers.of(WHY), 1, pseudonyms={"driver_id": token}))
    (match,) = find_subject(log_dir, [token])
    assert match.fields == ("pseudonyms.driver_id",)
    assert match.record["rule_ids"] == WHY["rule_ids"] and "shared" not in match.record


def test_an_inclusion_proof_of_a_decision_includes_the_members_it_names(
    log_dir: Path, signing_key: SigningKey
) -> None:
    from audit import check_proof, prove_inclusion

    shared = SharedMembers.of(WHY)
    with AuditLog.open(log_dir, signing_key) as log:
        log.append_many([decision(shared, n) for n in range(5)])
        receipt = log.append(decision(shared, 5))
    document = prove_inclusion(log_dir, receipt.seq, [signing_key.public_key])
    assert document["record"]["shared"] == shared.ref
    assert document["shared"]["record"]["members"] == WHY
    check = check_proof(document, [signing_key.public_key])
    assert check.ok and "shared members it names" in check.message, check.message

    def broken(change: Any) -> str:
        copy = orjson.loads(orjson.dumps(document))
        change(copy)
        result = check_proof(copy, [signing_key.public_key])
        assert not result.ok
        return result.message

    assert "does not include them" in broken(lambda d: d.pop("shared"))
    assert "hash to the proof's leaf" in broken(
        lambda d: d["shared"]["record"]["members"]["rule_ids"].append("invented")
    )
    # Another record of the log, proven in its place.
    assert "not the ones the record names" in broken(
        lambda d: d.update(shared={**d["shared"], **_proof_of(log_dir, signing_key, 0)})
    )


def _proof_of(log_dir: Path, key: SigningKey, seq: int) -> dict[str, Any]:
    from audit import prove_inclusion

    document = prove_inclusion(log_dir, seq, [key.public_key])
    return {name: document[name] for name in ("seq", "record", "leaf_hash", "audit_path")}
