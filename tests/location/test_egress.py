"""decide_egress: every address located, the policy's rules applied, the strictest outcome wins."""

from __future__ import annotations

import time
from typing import Any

import pytest

from policies.location import StaleGeoDatabase, decide_egress

TELENOR = (2119, "Telenor Norge AS")
AMAZON = (16509, "Amazon.com, Inc.")
HETZNER = (24940, "Hetzner Online GmbH")
LOCAL_ISP = (64512, "Fjordnett Lokal AS")  # in no owner list

NETWORKS = {
    "192.0.2.0/25": ("NO", TELENOR),  # Norway, Norwegian provider
    "192.0.2.128/25": ("SE", AMAZON),  # Stockholm region of a US cloud
    "198.51.100.0/25": ("DE", HETZNER),  # Germany, German provider (adequate: EEA)
    "198.51.100.128/25": ("BR", (28573, "Claro NXT Telecomunicacoes Ltda")),  # third country
    "203.0.113.0/25": ("NO", LOCAL_ISP),  # Norway, owner unknown
}
HOSTS = {
    "oslo.example.no": ["192.0.2.10"],
    "stockholm.example.com": ["192.0.2.200"],
    "frankfurt.example.de": ["198.51.100.10"],
    "saopaulo.example.br": ["198.51.100.200"],
    # One name, two addresses: one in Norway, one in a US cloud.
    "mixed.example.no": ["192.0.2.11", "192.0.2.201"],
    "local.example.no": ["203.0.113.5"],
    "dark.example.no": ["100.64.0.1"],  # no database knows it
}


@pytest.fixture
def locator(geo_writer: Any) -> Any:
    geo = geo_writer(
        {net: country for net, (country, _) in NETWORKS.items()},
        {net: owner for net, (_, owner) in NETWORKS.items()},
    )

    def resolver(host: str) -> list[str]:
        return HOSTS[host]

    with geo.open(resolver=resolver) as opened:
        yield opened


def test_a_norwegian_destination_on_a_norwegian_provider_is_allowed(
    locator: Any, policy_factory: Any
) -> None:
    decision = decide_egress("https://oslo.example.no/v1/events", policy_factory(), locator)
    assert decision.outcome == "allow"
    assert decision.rule_id == "jurisdiction.home"
    assert [loc.to_json() for loc in decision.locations] == [
        {
            "address": "192.0.2.10",
            "country": "NO",
            "asn": 2119,
            "owner": "Telenor",
            "jurisdiction": "NO",
        }
    ]


def test_a_us_cloud_in_stockholm_is_denied_for_its_jurisdiction(
    locator: Any, policy_factory: Any
) -> None:
    decision = decide_egress("stockholm.example.com:443", policy_factory(), locator)
    assert decision.outcome == "deny"
    assert decision.rule_id == "jurisdiction.forbidden_provider_jurisdictions"
    assert any("US" in reason for reason in decision.reasons)
    # The answer names the facts: country SE, owner Amazon, jurisdiction US.
    assert "country SE" in decision.reasons[-1] and "Amazon" in decision.reasons[-1]


def test_an_adequate_country_is_allowed_and_logged(locator: Any, policy_factory: Any) -> None:
    decision = decide_egress("frankfurt.example.de", policy_factory(), locator)
    assert decision.outcome == "allow"
    assert decision.rule_id == "jurisdiction.adequate_destinations"
    assert decision.logged is True


def test_a_third_country_falls_to_the_default(locator: Any, policy_factory: Any) -> None:
    decision = decide_egress("saopaulo.example.br", policy_factory(), locator)
    assert decision.outcome == "deny"
    assert decision.rule_id == "egress.default"


def test_an_explicit_exception_with_a_legal_basis_allows_and_names_it(
    locator: Any, policy_factory: Any
) -> None:
    policy = policy_factory(
        rules="""
        - id: brazil-support-desk
          match: {host: saopaulo.example.br, country: [BR]}
          action: allow
          log: true
          legal_basis: {mechanism: scc, reference: "SCC 2021/914 module 2, signed 2025-01-10",
                        tia: TIA-2025-007}
        """
    )
    decision = decide_egress("saopaulo.example.br", policy, locator)
    assert decision.outcome == "allow"
    assert decision.rule_id == "brazil-support-desk"
    assert decision.legal_basis is not None
    assert decision.legal_basis.reference.startswith("SCC 2021/914")
    assert decision.to_record()["legal_basis"]["tia"] == "TIA-2025-007"


def test_the_strictest_outcome_over_all_addresses_wins(locator: Any, policy_factory: Any) -> None:
    # One address is fine, the other is a US cloud: the destination is denied.
    decision = decide_egress("mixed.example.no", policy_factory(), locator)
    assert decision.outcome == "deny"
    assert decision.rule_id == "jurisdiction.forbidden_provider_jurisdictions"
    assert {loc.address for loc in decision.locations} == {"192.0.2.11", "192.0.2.201"}


def test_an_unresolvable_destination_is_denied_in_enforce_mode(
    geo_writer: Any, policy_factory: Any
) -> None:
    geo = geo_writer({"192.0.2.0/24": "NO"})
    with geo.open() as locator:
        decision = decide_egress("nowhere.invalid", policy_factory(), locator)
    assert decision.outcome == "deny"
    assert decision.rule_id == "location.unresolvable"
    assert "cannot resolve" in decision.reasons[0]


def test_an_unresolvable_destination_passes_logged_in_observe_mode(
    geo_writer: Any, policy_factory: Any
) -> None:
    geo = geo_writer({"192.0.2.0/24": "NO"})
    with geo.open() as locator:
        decision = decide_egress("nowhere.invalid", policy_factory(mode="observe"), locator)
    assert decision.outcome == "allow"
    assert decision.logged is True
    assert "observe mode" in decision.reasons[0]


def test_an_unknown_country_is_denied_even_when_the_default_allows(
    locator: Any, policy_factory: Any
) -> None:
    decision = decide_egress("dark.example.no", policy_factory(default="allow"), locator)
    assert decision.outcome == "deny"
    assert decision.rule_id == "location.unknown_country"


def test_an_explicit_cidr_rule_allows_a_private_address_no_database_knows(
    locator: Any, policy_factory: Any
) -> None:
    policy = policy_factory(
        rules="""
        - id: site-network
          match: {cidr: 10.0.0.0/8}
          action: allow
        """
    )
    decision = decide_egress("kafka://10.20.0.11:9092/traffic", policy, locator)
    assert decision.outcome == "allow"
    assert decision.rule_id == "site-network"


def test_a_norwegian_address_of_an_unknown_owner_is_not_taken_as_home(
    locator: Any, policy_factory: Any
) -> None:
    # Home needs both facts: the server in Norway and a provider under Norwegian law.
    decision = decide_egress("local.example.no", policy_factory(), locator)
    assert decision.outcome == "deny"
    assert decision.rule_id == "egress.default"


def test_a_stale_database_is_an_error_in_enforce_mode(geo_writer: Any, policy_factory: Any) -> None:
    geo = geo_writer({"192.0.2.0/24": "NO"}, build_epoch=int(time.time()) - 90 * 86400)
    with geo.open() as locator:
        with pytest.raises(StaleGeoDatabase, match="older than the policy's limit of 35 days"):
            decide_egress("192.0.2.1", policy_factory(max_age_days=35), locator)
        # observe mode reports through `doctor`, it does not refuse lookups
        observed = decide_egress("192.0.2.1", policy_factory(mode="observe"), locator)
        assert observed.mode == "observe"


def test_credentials_in_a_destination_never_reach_the_decision(
    locator: Any, policy_factory: Any
) -> None:
    decision = decide_egress(
        "postgresql://app:s3cret@oslo.example.no:5432/traffic", policy_factory(), locator
    )
    assert "s3cret" not in str(decision.to_record())
    assert decision.outcome == "allow"


def test_an_invalid_destination_is_denied_with_the_reason(
    locator: Any, policy_factory: Any
) -> None:
    decision = decide_egress("oslo.example.no:99999", policy_factory(), locator)
    assert decision.outcome == "deny"
    assert decision.rule_id == "location.invalid_destination"
    assert "invalid port" in decision.reasons[0]


def test_a_numeric_host_that_is_no_address_is_an_invalid_destination(
    locator: Any, policy_factory: Any
) -> None:
    decision = decide_egress("https://300.1.2.3/upload", policy_factory(), locator)
    assert decision.outcome == "deny"
    assert decision.rule_id == "location.invalid_destination"


def test_credentials_never_reach_the_decision_even_of_an_invalid_destination(
    locator: Any, policy_factory: Any
) -> None:
    decision = decide_egress(
        "postgresql://app:s3cret@oslo.example.no:99999/traffic", policy_factory(), locator
    )
    assert decision.outcome == "deny"
    assert "s3cret" not in str(decision.to_record())
    assert "s3cret" not in decision.destination
