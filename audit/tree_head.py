"""Signed tree heads: the Ed25519-signed statement "the log had N records with this root"."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from audit.canonical import canonical_json
from audit.keys import PublicKey, SigningKey

TREE_HEAD_TYPE = "tree_head"


@dataclass(frozen=True)
class SignedTreeHead:
    """One signed tree head as stored in a segment (one line, `type` = "tree_head")."""

    log_id: str
    tree_size: int
    root_hash: str  # lowercase hex
    timestamp: str
    key_id: str
    reason: str
    segment: int
    signature: str  # base64 of the 64-byte Ed25519 signature

    def unsigned_fields(self) -> dict[str, Any]:
        return {
            "type": TREE_HEAD_TYPE,
            "log_id": self.log_id,
            "tree_size": self.tree_size,
            "root_hash": self.root_hash,
            "timestamp": self.timestamp,
            "key_id": self.key_id,
            "reason": self.reason,
            "segment": self.segment,
        }

    def signing_input(self) -> bytes:
        """What the signature covers: canonical JSON of every field but `signature`."""
        return canonical_json(self.unsigned_fields())

    def to_dict(self) -> dict[str, Any]:
        return {**self.unsigned_fields(), "signature": self.signature}

    def to_line(self) -> bytes:
        return canonical_json(self.to_dict())

    def verify(self, key: PublicKey) -> bool:
        """True when the signature is `key`'s over `signing_input()` and `key_id` names `key`."""
        if key.key_id != self.key_id:
            return False
        try:
            signature = base64.b64decode(self.signature, validate=True)
        except ValueError:
            return False
        # Only the canonical encoding counts: otherwise the unused low bits of the last base64
        # character could be changed without changing the signature bytes.
        if base64.b64encode(signature).decode("ascii") != self.signature:
            return False
        return key.verify(signature, self.signing_input())

    @classmethod
    def sign(
        cls,
        key: SigningKey,
        *,
        log_id: str,
        tree_size: int,
        root_hash: bytes,
        timestamp: str,
        reason: str,
        segment: int,
    ) -> SignedTreeHead:
        unsigned = cls(
            log_id, tree_size, root_hash.hex(), timestamp, key.key_id, reason, segment, ""
        )
        signature = base64.b64encode(key.sign(unsigned.signing_input())).decode("ascii")
        return cls(
            log_id, tree_size, root_hash.hex(), timestamp, key.key_id, reason, segment, signature
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SignedTreeHead:
        """Parse a stored tree head; raises ValueError naming the field that is wrong."""
        expected = {
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
        if set(data) != expected:
            missing = sorted(expected - set(data))
            extra = sorted(set(data) - expected)
            raise ValueError(f"tree head fields: missing {missing}, unexpected {extra}")
        for name in ("log_id", "root_hash", "timestamp", "key_id", "reason", "signature"):
            if not isinstance(data[name], str):
                raise ValueError(f"tree head field {name!r} must be a string")
        for name in ("tree_size", "segment"):
            if not isinstance(data[name], int) or isinstance(data[name], bool):
                raise ValueError(f"tree head field {name!r} must be an integer")
        return cls(
            data["log_id"],
            data["tree_size"],
            data["root_hash"],
            data["timestamp"],
            data["key_id"],
            data["reason"],
            data["segment"],
            data["signature"],
        )
