"""Every error the audit package raises: one hierarchy, each saying what, where and what to do."""

from __future__ import annotations

from pathlib import Path


class AuditError(Exception):
    """Base class of every audit-log error."""


class KeyFileError(AuditError):
    """A signing-key or public-key file cannot be used."""

    def __init__(self, path: Path, problem: str, remedy: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}; {remedy}")


class RecordRejected(AuditError):
    """A record handed to `append` breaks the record contract (nothing was written)."""


class LogClosed(AuditError):
    """An append on a log that is closed, or whose writer failed."""


class LogCorrupted(AuditError):
    """The log on disk is damaged somewhere other than a torn tail; it is not opened for writing."""

    def __init__(self, segment: Path, offset: int, problem: str) -> None:
        self.segment = segment
        self.offset = offset
        self.problem = problem
        super().__init__(
            f"{segment}: byte {offset}: {problem}; the damage is not a torn tail, so nothing is "
            "cut: run `fjordgate audit verify` on the directory and keep it for investigation"
        )


class ProofError(AuditError):
    """A proof cannot be produced or parsed (unknown sequence number, malformed proof file)."""


class KeyringError(AuditError):
    """The pseudonymisation keyring file cannot be read."""
