"""Egress rules: what the destination text decides, what needs location facts, in which order."""

from __future__ import annotations

import pytest

from policies import (
    Destination,
    InvalidDestination,
    KnownAddress,
    Policy,
    PolicyEngine,
    evaluate_egress,
    load_policy_text,
    sanitise_destination,
)
from tests.policies.conftest import BASE_POLICY

RULES_POLICY = BASE_POLICY.replace(
    "forbidden_provider_jurisdictions: [US]", "forbidden_provider_jurisdictions: []"
).replace(
    """    - id: local
      match: {cidr: 127.0.0.0/8}
      action: allow
""",
    """    - id: local
      match: {cidr: 127.0.0.0/8}
      action: allow
    - id: fjord-hosts
      match: {host: "*.fjord.example"}
      action: allow
    - id: partner-api
      match: {url: "https://api.partner.example/v1"}
      action: allow
    - id: no-partner-admin
      match: {host: admin.partner.example}
      action: deny
    - id: by-country
      match: {country: [DK]}
      action: allow
      legal_basis: {mechanism: adequacy, reference: EEA agreement}
""",
)


@pytest.fixture
def rules_policy() -> Policy:
    return load_policy_text(RULES_POLICY)


@pytest.mark.parametrize(
    ("text", "host", "port", "is_ip", "url"),
    [
        ("kafka://broker.fjord.example:9092/topic", "broker.fjord.example", 9092, False, True),
        ("broker.fjord.example:9092", "broker.fjord.example", 9092, False, False),
        ("BROKER.Fjord.Example.", "broker.fjord.example", None, False, False),
        ("10.1.2.3", "10.1.2.3", None, True, False),
        ("[2001:db8::1]:9092", "2001:db8::1", 9092, True, False),
        ("2001:db8::1", "2001:db8::1", None, True, False),
        ("https://[2001:db8::2]/x", "2001:db8::2", None, True, True),
    ],
)
def test_destinations_are_taken_apart(
    text: str, host: str, port: int | None, is_ip: bool, url: bool
) -> None:
    dest = Destination.parse(text)
    assert (dest.host, dest.port, dest.ip is not None, dest.url is not None) == (
        host,
        port,
        is_ip,
        url,
    )


@pytest.mark.parametrize("text", ["", "   ", "host:notaport", "kafka://:9092/x", "a b:1"])
def test_bad_destinations_are_rejected(text: str) -> None:
    with pytest.raises(InvalidDestination):
        Destination.parse(text)


def test_credentials_are_stripped_from_destinations() -> None:
    assert (
        sanitise_destination("postgresql://user:pw@db.example:5432/x?sslmode=require")
        == "postgresql://db.example:5432/x?sslmode=require"
    )
    assert sanitise_destination("kafka://b.example:9092") == "kafka://b.example:9092"


def test_host_glob_and_url_prefix_decide_from_the_text(rules_policy: Policy) -> None:
    assert evaluate_egress(rules_policy, "kafka://b1.fjord.example:9092/t").rule_id == "fjord-hosts"
    assert evaluate_egress(rules_policy, "https://api.partner.example/v1/events").outcome == "allow"
    public = [KnownAddress("198.51.100.50", "NO", "NO")]
    deny = evaluate_egress(rules_policy, "admin.partner.example:443", public)
    assert (deny.outcome, deny.rule_id) == ("deny", "no-partner-admin")


def test_a_later_match_decides_only_if_rules_set_aside_agree(rules_policy: Policy) -> None:
    # `local` (a CIDR) cannot be decided for a host name without its addresses.
    # It allows, so a later allow decides; a later deny stays unresolved.
    allow = evaluate_egress(rules_policy, "b1.fjord.example")
    assert (allow.outcome, allow.rule_id) == ("allow", "fjord-hosts")
    assert ("local", "needs location") in [(s.rule_id, s.result) for s in allow.steps]
    deny = evaluate_egress(rules_policy, "admin.partner.example:443")
    assert (deny.outcome, deny.rule_id) == ("unresolved", "local")


def test_url_prefix_stops_at_a_path_boundary(rules_policy: Policy) -> None:
    verdict = evaluate_egress(rules_policy, "https://api.partner.example/v10/x")
    assert verdict.rule_id != "partner-api"
    lookalike = evaluate_egress(rules_policy, "https://api.partner.example.evil.test/v1")
    assert lookalike.rule_id != "partner-api"


def test_glob_does_not_match_the_bare_domain(rules_policy: Policy) -> None:
    assert evaluate_egress(rules_policy, "fjord.example").rule_id != "fjord-hosts"


def test_country_rules_need_location_facts_and_fail_closed_without(rules_policy: Policy) -> None:
    verdict = evaluate_egress(rules_policy, "kafka.example.dk:9092")
    assert verdict.outcome == "unresolved"
    assert any(s.rule_id == "by-country" and s.result == "needs location" for s in verdict.steps)
    decision = PolicyEngine(rules_policy).decide(
        {"region": "x", "ts": 1714564800000}, "traffic", "kafka.example.dk:9092"
    )
    assert decision.outcome == "deny"


def test_allow_rules_hold_for_every_address_deny_rules_fire_on_any() -> None:
    policy = load_policy_text(
        RULES_POLICY.replace(
            "    - id: by-country\n",
            "    - id: no-ru\n      match: {country: [RU]}\n      action: deny\n"
            "    - id: by-country\n",
        )
    )
    dk, ru, se = (
        KnownAddress("198.51.100.1", "DK", "DK"),
        KnownAddress("198.51.100.2", "RU", "RU"),
        KnownAddress("198.51.100.3", "SE", "SE"),
    )
    assert evaluate_egress(policy, "x.example", [dk]).rule_id == "by-country"
    assert evaluate_egress(policy, "x.example", [dk, ru]).rule_id == "no-ru"
    mixed = evaluate_egress(policy, "x.example", [dk, se])
    assert mixed.rule_id != "by-country"  # SE is adequate here, DK only by rule


def test_forbidden_jurisdiction_comes_before_every_rule(strict_policy: Policy) -> None:
    us_in_oslo = KnownAddress("203.0.113.1", "NO", "US")
    verdict = evaluate_egress(strict_policy, "10.0.0.5", [us_in_oslo])
    assert verdict.outcome == "deny"
    assert verdict.rule_id == "jurisdiction.forbidden_provider_jurisdictions"


def test_private_literals_have_no_provider_and_need_no_facts(strict_policy: Policy) -> None:
    assert evaluate_egress(strict_policy, "127.0.0.1:9092").outcome == "allow"
    assert evaluate_egress(strict_policy, "10.9.8.7").rule_id == "strict.private-network"
    assert evaluate_egress(strict_policy, "192.168.1.1").outcome == "deny"  # no rule for it


def test_adequate_destinations_are_allowed_and_logged(eea_policy: Policy) -> None:
    verdict = evaluate_egress(eea_policy, "x.example", [KnownAddress("198.51.100.9", "CH", "CH")])
    assert (verdict.outcome, verdict.rule_id, verdict.logged) == (
        "allow",
        "jurisdiction.adequate_destinations",
        True,
    )


def test_an_adequate_country_under_a_non_adequate_provider_is_not_adequate(
    eea_policy: Policy,
) -> None:
    verdict = evaluate_egress(eea_policy, "x.example", [KnownAddress("198.51.100.9", "SE", "CN")])
    assert verdict.outcome == "deny"


def test_verdict_steps_explain_every_rule_considered(strict_policy: Policy) -> None:
    verdict = evaluate_egress(strict_policy, "10.0.0.1")
    results = [(s.rule_id, s.result) for s in verdict.steps]
    assert results == [
        ("jurisdiction.forbidden_provider_jurisdictions", "not matched"),
        ("strict.loopback", "not matched"),
        ("strict.private-network", "matched"),
    ]


def test_an_allow_rule_carries_its_legal_basis() -> None:
    policy = load_policy_text(
        RULES_POLICY.replace(
            "    - id: by-country\n",
            "    - id: us-analytics\n      match: {host: analytics.us.example}\n"
            "      action: allow\n"
            "      log: true\n      legal_basis: {mechanism: scc, reference: SCC 2021/914 module 2,"
            " tia: TIA-2024-007}\n    - id: by-country\n",
        )
    )
    verdict = evaluate_egress(policy, "https://analytics.us.example/collect")
    assert verdict.outcome == "allow" and verdict.logged
    assert verdict.legal_basis is not None and verdict.legal_basis.tia == "TIA-2024-007"
    assert verdict.to_record()["legal_basis"] == {
        "mechanism": "scc",
        "reference": "SCC 2021/914 module 2",
        "tia": "TIA-2024-007",
    }
