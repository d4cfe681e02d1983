"""Fixtures of the audit tests: a fresh signing key, a log directory per test, and synthetic
instance logs for the report tests (realistic record types spread over simulated hours through
the log's injected clock, no personal values, only pseudonym-shaped tokens)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from audit import AuditLog, SharedMembers, SigningKey


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


STREAMS = {
    "norway-traffic": ("traffic.allow-plate-pseudonymised", "traffic.region-generalised"),
    "patients": ("health.fnr-pseudonymise", "health.diagnosis-encrypt"),
    "payments": ("finance.iban-encrypt", "finance.card-redact"),
}
DESTINATIONS = (
    "kafka://kafka-1.osl.example.no:9092/tagged",
    "postgresql://db.bgo.example.no:5432/analytics",
    "file:///var/lib/fjordgate/results.sqlite",
)
DENIED = (
    ("https://api.us-analytics.example.com/ingest", "egress.forbidden-jurisdiction-us"),
    ("s3://eu-central-1.storage.example.com/exports", "egress.provider-jurisdiction-us"),
)
START = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)


class SimulatedClock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def write_sample_logs(
    root: Path, key: SigningKey, *, decisions: int = 1500, instances: int = 2, seed: int = 5
) -> None:
    rng = random.Random(seed)
    for n in range(instances):
        clock = SimulatedClock(START + timedelta(seconds=7 * n))
        log = AuditLog.open(root / f"gateway-{n + 1}", key, clock=clock, tree_head_every=200)
        log.append(
            {
                "type": "policy_loaded",
                "policy_hash": "sha256:" + "3f" * 32,
                "name": "norway-strict",
                "version": "1.4.0",
                "mode": "enforce",
                "streams": sorted(STREAMS),
            }
        )
        log.append(
            {
                "type": "placement",
                "component": "gateway",
                "outcome": "pass",
                "mode": "enforce",
                "policy_hash": "sha256:" + "3f" * 32,
                "checks": [
                    {"name": "kafka-brokers-in-norway", "status": "pass"},
                    {"name": "state-dir-local-nvme", "status": "pass"},
                    {"name": "vm-swappiness", "status": "pass"},
                ],
            }
        )
        step = timedelta(hours=8) / decisions
        pending: list[dict[str, object]] = []
        for i in range(decisions):
            if len(pending) >= 15:  # one group commit per simulated quarter of an hour or so
                log.append_many(pending)
                pending = []
                clock.now += step * 15 * rng.uniform(0.3, 1.7)
            stream = rng.choice(list(STREAMS))
            roll = rng.random()
            outcome = "allow" if roll < 0.86 else "deny" if roll < 0.97 else "rejected"
            rule = rng.choice(STREAMS[stream])
            why: dict[str, object] = {
                "mode": "enforce",
                "rule_ids": [rule],
                "fields": [
                    {
                        "path": "subject_id",
                        "pii_class": "national_id",
                        "action": "pseudonymise",
                        "rule_id": rule,
                    }
                ],
                "policy_hash": "sha256:" + "3f" * 32,
            }
            pending.append(
                {
                    "type": "decision",
                    "stream": stream,
                    "outcome": outcome,
                    "destination": DESTINATIONS[i % 2],
                    # Half name their reasons as the gateway does (written once per segment).
                    **({"shared": SharedMembers.of(why)} if i % 2 else why),
                    "event_id": f"evt-{n}-{i}",
                    "subjects": [f"ps1:k0a1b2c3d4e5f:{rng.getrandbits(128):032x}"],
                }
            )
            if i % 211 == 17:
                destination, rule_id = rng.choice(DENIED)
                pending.append(
                    {
                        "type": "egress",
                        "component": "processor",
                        "job": "max-speed",
                        "destination": destination,
                        "outcome": "deny",
                        "rule_id": rule_id,
                        "reasons": ["provider jurisdiction US (CLOUD Act)"],
                    }
                )
            if i == decisions // 2:
                pending.append(
                    {
                        "type": "policy_loaded",
                        "policy_hash": "sha256:" + "a7" * 32,
                        "name": "norway-strict",
                        "version": "1.5.0",
                        "mode": "enforce",
                        "streams": sorted(STREAMS),
                    }
                )
                pending.append(
                    {
                        "type": "key_rotation",
                        "keyring": "pseudonymisation",
                        "old_key_id": "k0a1b2c3d4e5f",
                        "new_key_id": "k9f8e7d6c5b4a",
                    }
                )
        log.append_many(pending)
        log.append(
            {
                "type": "egress",
                "component": "processor",
                "job": "max-speed",
                "destination": DESTINATIONS[2],
                "outcome": "allow",
                "rule_id": "embedded.local-file",
            }
        )
        log.close()


@pytest.fixture(scope="session")
def sample_log_writer() -> Callable[..., None]:
    """`write_sample_logs(root, key, *, decisions, instances, seed)`."""
    return write_sample_logs
