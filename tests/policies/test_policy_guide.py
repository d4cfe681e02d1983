"""The authoring guide's examples are true: its complete policies load, its cases pass."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from policies import PolicyEngine, load_policy, load_policy_text
from policies.cases import CaseFile, run_case
from policies.loader import load_yaml_model
from tests.policies.conftest import PACKS, REPO

GUIDE = REPO / "docs" / "policy-guide.md"
BLOCKS = re.findall(r"```yaml\n(.*?)```", GUIDE.read_text(encoding="utf-8"), re.S)


def test_the_guide_has_complete_policies_and_cases() -> None:
    assert any(b.startswith("metadata:") and "streams:" in b for b in BLOCKS)
    assert any(b.startswith("cases:") for b in BLOCKS)


@pytest.mark.parametrize(
    "block", [b for b in BLOCKS if b.startswith("metadata:") and "{...}" not in b]
)
def test_every_complete_policy_in_the_guide_loads(block: str) -> None:
    policy = load_policy_text(block, file="docs/policy-guide.md")
    assert policy.streams


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.startswith("cases:")])
def test_every_case_in_the_guide_passes_on_norway_strict(block: str, tmp_path: Path) -> None:
    cases, _ = load_yaml_model(block, CaseFile, file="docs/policy-guide.md")
    engine = PolicyEngine(load_policy(PACKS / "norway-strict.yaml"))
    for case in cases.cases:
        result = run_case(engine, case)
        assert result.passed, result.mismatches
