"""The immutable audit log: hash chain, Merkle tree, signed tree heads."""

from audit.archive import archive_segments
from audit.errors import (
    AuditError,
    KeyFileError,
    KeyringError,
    LogClosed,
    LogCorrupted,
    ProofError,
    RecordRejected,
)
from audit.keys import PublicKey, SigningKey
from audit.log import AuditLog, AuditReceipt, CanonicalRecord
from audit.proofs import check_proof, prove_consistency, prove_inclusion
from audit.report import AuditReport, build_report
from audit.shared import SharedIndex, SharedMembers, resolved
from audit.tree_head import SignedTreeHead
from audit.verify import Problem, VerificationReport, verify_directory, verify_log

__all__ = [
    "AuditError",
    "AuditLog",
    "AuditReceipt",
    "AuditReport",
    "CanonicalRecord",
    "KeyFileError",
    "KeyringError",
    "LogClosed",
    "LogCorrupted",
    "Problem",
    "ProofError",
    "PublicKey",
    "RecordRejected",
    "SharedIndex",
    "SharedMembers",
    "SignedTreeHead",
    "SigningKey",
    "VerificationReport",
    "archive_segments",
    "build_report",
    "check_proof",
    "prove_consistency",
    "prove_inclusion",
    "resolved",
    "verify_directory",
    "verify_log",
]
