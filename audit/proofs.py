"""Inclusion proofs (one record is in a signed tree) and consistency proofs (an older signed
tree is a prefix of a newer one), as self-contained JSON documents, and their checking."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audit.canonical import canonical_json
from audit.errors import ProofError
from audit.keys import PublicKey
from audit.merkle import consistency_proof, inclusion_proof, leaf_hash, verify_consistency
from audit.merkle import verify_inclusion as merkle_verify_inclusion
from audit.shared import SHARED, shared_ref
from audit.tree_head import SignedTreeHead
from audit.verify import VerificationReport, verify_log

INCLUSION = "fjordgate-audit/inclusion-proof/1"
CONSISTENCY = "fjordgate-audit/consistency-proof/1"


@dataclass(frozen=True)
class ProofCheck:
    """The outcome of checking a proof document."""

    ok: bool
    message: str
    pinned: bool


def _verified(
    directory: Path, public_keys: list[PublicKey], seq: int | None = None
) -> tuple[VerificationReport, dict[str, Any] | None, dict[str, Any] | None]:
    """The log verified, record `seq` and the definition of the shared members it names
    (the last one before it in its segment)."""
    found: dict[str, Any] = {}
    found_shared: dict[str, Any] = {}
    definitions: dict[str, dict[str, Any]] = {}  # ref -> record, in the segment being read
    segment_read = [""]

    def keep(record: dict[str, Any], segment: str, _offset: int) -> None:
        if segment != segment_read[0]:
            segment_read[0] = segment
            definitions.clear()
        if record["type"] == SHARED and seq is not None and record["seq"] < seq:
            definitions[record["ref"]] = record
        if record["seq"] == seq:
            found.update(record)
            ref = record.get(SHARED)
            if isinstance(ref, str):  # the verifier holds it to a definition before it
                found_shared.update(definitions[ref])

    report = verify_log(
        directory, public_keys, visitor=keep if seq is not None else None, keep_leaves=True
    )
    if report.problem is not None:
        raise ProofError(f"the log does not verify, so no proof is given: {report.problem}")
    if report.archived_records:
        raise ProofError(
            f"{directory}: records 0..{report.archived_records - 1} are archived; proofs need "
            "every leaf: copy the archived segments back beside the live ones and prove there"
        )
    if report.latest_tree_head is None:
        raise ProofError(f"{directory}: the log has no signed tree head yet")
    return report, (found or None), (found_shared or None)


def _key_for(report: VerificationReport, head: SignedTreeHead) -> str:
    return next(event.public_key for event in report.keys if event.key_id == head.key_id)


def prove_inclusion(
    directory: Path, seq: int, public_keys: list[PublicKey] | None = None
) -> dict[str, Any]:
    """An inclusion proof of record `seq` against the latest signed tree head covering it."""
    report, record, definition = _verified(directory, public_keys or [], seq)
    head = report.latest_tree_head
    assert head is not None
    if record is None or seq >= head.tree_size:
        raise ProofError(
            f"record seq {seq} is not covered by the latest signed tree head "
            f"(tree size {head.tree_size}); sequence numbers run from 0 to {head.tree_size - 1}"
        )
    document = {
        "kind": INCLUSION,
        "log_id": report.log_id,
        "seq": seq,
        "record": record,
        "leaf_hash": report.leaves[seq].hex(),
        "audit_path": [
            node.hex() for node in inclusion_proof(seq, report.leaves[: head.tree_size])
        ],
        "tree_head": head.to_dict(),
        "public_key": _key_for(report, head),
    }
    if definition is not None:
        # The record says why only through the shared members it names: prove them too,
        # in the same tree (docs/audit-format.md, sections 4.1 and 9).
        at = definition["seq"]
        document["shared"] = {
            "seq": at,
            "record": definition,
            "leaf_hash": report.leaves[at].hex(),
            "audit_path": [
                node.hex() for node in inclusion_proof(at, report.leaves[: head.tree_size])
            ],
        }
    return document


def prove_consistency(
    directory: Path,
    old_size: int,
    new_size: int | None = None,
    public_keys: list[PublicKey] | None = None,
) -> dict[str, Any]:
    """A consistency proof between the signed tree heads of `old_size` and `new_size` records
    (the latest tree head when `new_size` is None)."""
    report, _, _ = _verified(directory, public_keys or [])
    by_size = {head.tree_size: head for head in report.heads}
    new_head = by_size.get(new_size) if new_size is not None else report.latest_tree_head
    old_head = by_size.get(old_size)
    if old_head is None or new_head is None:
        sizes = sorted(by_size)
        raise ProofError(
            f"no signed tree head of size {old_size if old_head is None else new_size}; the log "
            f"has tree heads of sizes {sizes[:5]}...{sizes[-5:]}"
        )
    if old_head.tree_size > new_head.tree_size:
        raise ProofError("the old tree head must not be larger than the new one")
    proof = (
        consistency_proof(old_head.tree_size, report.leaves[: new_head.tree_size])
        if old_head.tree_size < new_head.tree_size
        else []
    )
    return {
        "kind": CONSISTENCY,
        "log_id": report.log_id,
        "old_tree_head": old_head.to_dict(),
        "new_tree_head": new_head.to_dict(),
        "proof": [node.hex() for node in proof],
        "public_keys": sorted({_key_for(report, old_head), _key_for(report, new_head)}),
    }


def _head(document: dict[str, Any], name: str) -> SignedTreeHead:
    try:
        return SignedTreeHead.from_dict(document[name])
    except (KeyError, TypeError, ValueError) as exc:
        raise ProofError(f"the proof's {name!r} is missing or malformed ({exc})") from exc


def _check_signature(
    head: SignedTreeHead, document: dict[str, Any], public_keys: list[PublicKey]
) -> tuple[bool, bool, str]:
    """(signature ok, pinned, message part)."""
    if public_keys:
        key = next((k for k in public_keys if k.key_id == head.key_id), None)
        if key is None:
            return False, True, f"tree head signed by {head.key_id}, which is not a pinned key"
        return head.verify(key), True, "signature checked with the pinned key"
    embedded = document.get("public_key") or next(
        (
            k
            for k in document.get("public_keys", [])
            if PublicKey.from_base64(k).key_id == head.key_id
        ),
        None,
    )
    if not isinstance(embedded, str):
        return False, False, "no public key to check the signature with"
    key = PublicKey.from_base64(embedded)
    if key.key_id != head.key_id:
        return False, False, "the embedded public key does not match the tree head's key id"
    return (
        head.verify(key),
        False,
        "signature checked with the key embedded in the proof (not pinned)",
    )


def check_proof(document: dict[str, Any], public_keys: list[PublicKey] | None = None) -> ProofCheck:
    """Check an inclusion or consistency proof document on its own, without the log."""
    keys = public_keys or []
    try:
        kind = document.get("kind")
        if kind == INCLUSION:
            return _check_inclusion(document, keys)
        if kind == CONSISTENCY:
            return _check_consistency(document, keys)
    except (ValueError, TypeError, KeyError) as exc:
        return ProofCheck(False, f"malformed proof: {exc}", bool(keys))
    return ProofCheck(False, f"unknown proof kind {document.get('kind')!r}", bool(keys))


def _check_inclusion(document: dict[str, Any], keys: list[PublicKey]) -> ProofCheck:
    head = _head(document, "tree_head")
    signed, pinned, how = _check_signature(head, document, keys)
    if not signed:
        return ProofCheck(False, f"tree head signature invalid: {how}", pinned)
    seq = document["seq"]
    record = document.get("record")
    problem = _included(document, head)
    if problem is not None:
        return ProofCheck(False, problem, pinned)
    ref = record.get(SHARED) if isinstance(record, dict) else None
    shared = document.get("shared")
    if ref is None and shared is None:
        return ProofCheck(
            True,
            f"record seq {seq} is included in the tree of {head.tree_size} records with root "
            f"{head.root_hash}; {how}",
            pinned,
        )
    if not isinstance(shared, dict) or not isinstance(shared.get("record"), dict):
        return ProofCheck(
            False, "the record names shared members, and the proof does not include them", pinned
        )
    definition = shared["record"]
    problem = _included(shared, head, "shared members")
    if problem is None and (definition.get("type") != SHARED or definition.get("ref") != ref):
        problem = f"the shared members included are not the ones the record names ({ref})"
    if problem is None and not (isinstance(shared["seq"], int) and shared["seq"] < seq):
        problem = "the shared members must come before the record that names them"
    if problem is None and shared_ref(definition.get("members") or {}) != ref:
        problem = "the shared members do not hash to their ref"
    if problem is not None:
        return ProofCheck(False, problem, pinned)
    return ProofCheck(
        True,
        f"record seq {seq} and the shared members it names (seq {shared['seq']}) are included "
        f"in the tree of {head.tree_size} records with root {head.root_hash}; {how}",
        pinned,
    )


def _included(part: dict[str, Any], head: SignedTreeHead, what: str = "the record") -> str | None:
    """What is wrong with `part`'s inclusion (its `seq`, `record`, `leaf_hash` and
    `audit_path`) in the tree `head` signs, or None."""
    seq = part["seq"]
    record = part.get("record")
    leaf = bytes.fromhex(part["leaf_hash"])
    if record is not None and leaf_hash(canonical_json(record)) != leaf:
        return f"{what} does not hash to the proof's leaf hash"
    if isinstance(record, dict) and record.get("seq") != seq:
        return f"{what}: the record's seq differs from the proof's seq"
    path = [bytes.fromhex(node) for node in part["audit_path"]]
    if not merkle_verify_inclusion(seq, head.tree_size, leaf, path, bytes.fromhex(head.root_hash)):
        return f"{what}: the audit path does not lead to the signed root"
    return None


def _check_consistency(document: dict[str, Any], keys: list[PublicKey]) -> ProofCheck:
    old, new = _head(document, "old_tree_head"), _head(document, "new_tree_head")
    if old.log_id != new.log_id:
        return ProofCheck(False, "the two tree heads are of different logs", bool(keys))
    for head in (old, new):
        signed, pinned, how = _check_signature(head, document, keys)
        if not signed:
            return ProofCheck(False, f"tree head of size {head.tree_size}: {how}", pinned)
    proof = [bytes.fromhex(node) for node in document["proof"]]
    if not verify_consistency(
        old.tree_size,
        new.tree_size,
        bytes.fromhex(old.root_hash),
        bytes.fromhex(new.root_hash),
        proof,
    ):
        return ProofCheck(
            False, "the proof does not show the old tree is a prefix of the new", pinned
        )
    return ProofCheck(
        True,
        f"the tree of {old.tree_size} records is a prefix of the tree of {new.tree_size} "
        f"records (roots {old.root_hash[:16]}... -> {new.root_hash[:16]}...); {how}",
        pinned,
    )
