"""The immutable audit log: hash chain, Merkle tree, signed tree heads."""

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
from audit.log import AuditLog, AuditReceipt
from audit.tree_head import SignedTreeHead

__all__ = [
    "AuditError",
    "AuditLog",
    "AuditReceipt",
    "KeyFileError",
    "KeyringError",
    "LogClosed",
    "LogCorrupted",
    "ProofError",
    "PublicKey",
    "RecordRejected",
    "SignedTreeHead",
    "SigningKey",
]
