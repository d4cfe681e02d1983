"""Fixtures of the audit tests: a fresh signing key and a log directory per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from audit import AuditLog, SigningKey


@pytest.fixture
def signing_key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path / "audit"


@pytest.fixture
def audit_log(log_dir: Path, signing_key: SigningKey) -> Iterator[AuditLog]:
    log = AuditLog.open(log_dir, signing_key, tree_head_every=10)
    yield log
    log.close()
