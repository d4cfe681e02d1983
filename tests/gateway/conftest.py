"""Fixtures for the gateway's tests: a whole gateway over a real audit log and local log."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from audit import AuditLog, SigningKey
from gateway.auth import ApiKey, hash_api_key, new_api_key
from gateway.pii import Keyring
from gateway.publish import LocalLogPublisher
from gateway.service import Gateway
from processor import LocalLog

ROOT = Path(__file__).resolve().parents[2]
NORWAY_STRICT = ROOT / "policies" / "packs" / "norway-strict.yaml"
STREAM = "norway-traffic"
TAGGED = "norway-traffic.tagged"


@dataclass
class LocalGateway:
    """A started gateway on a local log, with a key for norway-traffic and one for nothing."""

    gateway: Gateway
    audit: AuditLog
    log: LocalLog
    key: str
    other_key: str
    policy_path: Path
    directory: Path

    def client(self) -> TestClient:
        return TestClient(self.gateway.app, raise_server_exceptions=True)

    def headers(self, key: str | None = None) -> dict[str, str]:
        return {"X-API-Key": key or self.key}

    def published_values(self) -> list[bytes]:
        out: list[bytes] = []
        for partition in range(self.log.partition_count(TAGGED)):
            with self.log.reader(TAGGED, [partition]) as reader:
                # A poll returns at most one read chunk: read until nothing is left.
                while batch := reader.poll(100_000):
                    out.extend(r.value for r in batch)
        return out


def make_gateway(directory: Path, policy_path: Path, **options: object) -> LocalGateway:
    audit = AuditLog.open(directory / "audit", SigningKey.generate())
    log = LocalLog.open(directory / "log")
    key, other = new_api_key(), new_api_key()
    publisher = LocalLogPublisher(log, [TAGGED])
    gateway = Gateway(
        policy_path=policy_path,
        keyring=Keyring.ephemeral(),
        audit=audit,
        publisher=publisher,
        destination=publisher.destination,
        api_keys=[
            ApiKey("traffic-producer", hash_api_key(key), frozenset({STREAM})),
            ApiKey("elsewhere", hash_api_key(other), frozenset({"some-other-stream"})),
        ],
        reload_interval_s=0.05,
        **options,  # type: ignore[arg-type]
    )
    gateway.start(watch_policy=False)
    return LocalGateway(gateway, audit, log, key, other, policy_path, directory)


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    """A private copy of the shipped norway-strict pack (tests may rewrite it)."""
    path = tmp_path / "policy.yaml"
    shutil.copy(NORWAY_STRICT, path)
    return path


@pytest.fixture
def local_gateway(tmp_path: Path, policy_file: Path) -> Iterator[LocalGateway]:
    lg = make_gateway(tmp_path, policy_file)
    yield lg
    lg.gateway.stop()
    lg.audit.close()
    lg.log.close()
