"""Fixtures of the policy tests: the shipped packs and a small valid policy to vary."""

from __future__ import annotations

from pathlib import Path

import pytest

from policies import Policy, PolicyEngine, load_policy

REPO = Path(__file__).resolve().parents[2]
PACKS = REPO / "policies" / "packs"
CASES = PACKS / "cases"
PACK_FILES = sorted(PACKS.glob("*.yaml"))

# A small valid policy; malformed variants are written from it. `@@` marks
# where an error is expected and is removed before the text is loaded.
BASE_POLICY = """\
metadata:
  name: test-policy
  version: "1"
  owner: dpo@example.no
mode: enforce
jurisdiction:
  home: "NO"
  adequate_destinations: [SE]
  forbidden_provider_jurisdictions: [US]
streams:
  traffic:
    key: region
    event_time: {field: ts, formats: [iso8601, epoch_ms]}
    fields:
      region: {action: allow, type: string, required: true}
      speed: {action: allow, type: number}
      plate: {pii: vehicle_plate, action: pseudonymise}
      ts: {action: allow}
      note: {pii: free_text, action: allow, scan: {on_detected: redact}}
egress:
  rules:
    - id: local
      match: {cidr: 127.0.0.0/8}
      action: allow
"""


@pytest.fixture
def strict_policy() -> Policy:
    return load_policy(PACKS / "norway-strict.yaml")


@pytest.fixture
def eea_policy() -> Policy:
    return load_policy(PACKS / "norway-eea.yaml")


@pytest.fixture
def strict_engine(strict_policy: Policy) -> PolicyEngine:
    return PolicyEngine(strict_policy)


@pytest.fixture
def base_policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "base.yaml"
    path.write_text(BASE_POLICY, encoding="utf-8")
    return path
