"""A policy's own network-owner entries override the shipped owner data."""

from __future__ import annotations

import pytest

from policies import Policy, load_policy_text
from policies.location import decide_egress

from .conftest import POLICY_TEMPLATE, GeoWriter

# AS 64512 is for private use: the shipped owner data cannot know it.
PRIVATE_AS = (64512, "Fjordnett Drift AS")


def _policy(owner_jurisdiction: str | None) -> Policy:
    text = POLICY_TEMPLATE.format(
        mode="enforce",
        adequate="[SE]",
        forbidden="[US, CN]",
        default="deny",
        rules='    - {id: home, match: {country: ["NO"]}, action: allow}',
        max_age_days=35,
        max_swappiness=10,
        max_rtt=50.0,
        nvme="preferred",
    )
    if owner_jurisdiction is not None:
        text = text.replace(
            "  forbidden_provider_jurisdictions: [US, CN]\n",
            "  forbidden_provider_jurisdictions: [US, CN]\n"
            "  network_owners:\n"
            f"    - {{name: Fjordnett, jurisdiction: {owner_jurisdiction}, asns: [64512]}}\n",
        )
    return load_policy_text(text, file="owners.yaml")


@pytest.mark.parametrize(("owner", "allowed"), [("NO", True), ("US", False)])
def test_policy_network_owner_decides_the_jurisdiction(
    geo_writer: GeoWriter, owner: str, allowed: bool
) -> None:
    geo = geo_writer({"127.0.0.0/8": "NO"}, {"127.0.0.0/8": PRIVATE_AS})
    with geo.open() as locator:
        decision = decide_egress("127.0.0.1", _policy(owner), locator)
    assert decision.allowed is allowed
    assert [loc.jurisdiction for loc in decision.locations] == [owner]


def test_without_an_override_an_unknown_owner_has_no_jurisdiction(geo_writer: GeoWriter) -> None:
    geo = geo_writer({"127.0.0.0/8": "NO"}, {"127.0.0.0/8": PRIVATE_AS})
    with geo.open() as locator:
        decision = decide_egress("127.0.0.1", _policy(None), locator)
    assert [loc.jurisdiction for loc in decision.locations] == [None]


def test_an_override_with_an_unknown_country_is_a_located_error() -> None:
    from policies import PolicyLoadError

    with pytest.raises(PolicyLoadError) as info:
        _policy("XX")
    assert any("owners.yaml" in str(issue) for issue in info.value.issues)
