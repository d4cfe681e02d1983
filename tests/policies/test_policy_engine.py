"""The compiled evaluator: per-field actions, schema checks, event time, records without values."""

from __future__ import annotations

import json

import pytest

from policies import (
    Decision,
    PolicyEngine,
    UnknownStream,
    load_policy_text,
)
from tests.policies.conftest import BASE_POLICY

EVENT = {
    "region": "oslo",
    "speed": 87.5,
    "plate": "EL12345",
    "driver_id": "synthetic-driver-7",
    "event_time": "2024-05-01T12:00:00Z",
    "note": "synthetic free text",
}


def test_each_declared_field_gets_its_declared_action(strict_engine: PolicyEngine) -> None:
    decision = strict_engine.decide(EVENT, "norway-traffic")
    assert decision.outcome == "allow"
    assert decision.actions() == {
        "region": "allow",
        "speed": "allow",
        "plate": "pseudonymise",
        "driver_id": "pseudonymise",
        "event_time": "allow",
        "note": "allow",
    }
    plate = decision.field("plate")
    assert plate is not None
    assert plate.pii_class == "vehicle_plate"
    assert plate.rule_id == "streams.norway-traffic.fields.plate"


def test_decision_carries_the_policy_content_hash(strict_engine: PolicyEngine) -> None:
    decision = strict_engine.decide(EVENT, "norway-traffic")
    assert decision.policy_hash == strict_engine.policy.content_hash
    assert decision.policy_hash.startswith("sha256:") and len(decision.policy_hash) == 71


def test_plan_names_key_and_event_time_fields(strict_engine: PolicyEngine) -> None:
    plan = strict_engine.stream("norway-traffic")
    assert plan.key_field == "region"
    assert plan.event_time_field == "event_time"
    assert plan.event_time_formats == ("iso8601", "epoch_ms")
    note = plan.fields["note"]
    assert note.scan is not None and note.scan.on_detected == "redact"


def test_unknown_stream_names_the_declared_ones(strict_engine: PolicyEngine) -> None:
    with pytest.raises(UnknownStream) as caught:
        strict_engine.decide(EVENT, "norway-trafic")
    assert "norway-traffic" in str(caught.value)


def test_detected_pii_in_a_scanned_field_applies_the_scan_action(
    strict_engine: PolicyEngine,
) -> None:
    decision = strict_engine.decide(EVENT, "norway-traffic", detected={"note": ["phone", "email"]})
    note = decision.field("note")
    assert note is not None
    assert note.action == "redact"
    assert note.detected == ("email", "phone")
    assert note.rule_id.endswith(".note.scan")
    assert decision.outcome == "allow"


def test_scan_types_limit_what_counts_and_deny_refuses_the_event() -> None:
    text = BASE_POLICY.replace(
        "scan: {on_detected: redact}", "scan: {on_detected: deny, types: [fodselsnummer]}"
    )
    engine = PolicyEngine(load_policy_text(text))
    event = {"region": "x", "ts": 1714564800000, "note": "text"}
    phone_only = engine.decide(event, "traffic", detected={"note": ["phone"]})
    assert phone_only.outcome == "allow"
    assert phone_only.field("note").action == "allow"  # type: ignore[union-attr]
    with_fnr = engine.decide(event, "traffic", detected={"note": ["fodselsnummer", "phone"]})
    assert with_fnr.outcome == "deny"
    assert any("detected fodselsnummer" in r for r in with_fnr.reasons)


def test_undeclared_fields_follow_the_stream_setting() -> None:
    event = {"region": "x", "ts": 1714564800000, "extra": {"nested": 1}}
    for setting, outcome, action in [
        ("drop", "allow", "drop"),
        ("redact", "allow", "redact"),
        ("allow", "allow", "allow"),
        ("deny", "deny", "drop"),
    ]:
        text = BASE_POLICY.replace(
            "    key: region\n", f"    key: region\n    undeclared_fields: {setting}\n"
        )
        decision = PolicyEngine(load_policy_text(text)).decide(event, "traffic")
        extra = decision.field("extra")
        assert extra is not None and extra.pii_class == "undeclared"
        assert (decision.outcome, extra.action) == (outcome, action), setting


def test_nested_fields_are_declared_by_dotted_path() -> None:
    text = BASE_POLICY.replace(
        "      ts: {action: allow}",
        "      ts: {action: allow}\n      position.lat: {pii: location, action: generalise,"
        " generalise: {numeric_step: 0.1}}\n      position.lon: {pii: location, action: drop}",
    )
    engine = PolicyEngine(load_policy_text(text))
    decision = engine.decide(
        {"region": "x", "ts": 1714564800000, "position": {"lat": 59.9, "lon": 10.7, "alt": 3}},
        "traffic",
    )
    assert decision.actions()["position.lat"] == "generalise"
    assert decision.actions()["position.lon"] == "drop"
    assert decision.actions()["position.alt"] == "drop"  # undeclared, default drop
    flat = engine.decide({"region": "x", "ts": 1714564800000, "position": "oslo"}, "traffic")
    assert flat.outcome == "deny"
    assert any("'position'" in r and "object" in r for r in flat.reasons)


def test_wrong_types_and_missing_required_fields_deny(strict_engine: PolicyEngine) -> None:
    decision = strict_engine.decide(
        {"speed": True, "event_time": "2024-05-01T12:00:00Z"}, "norway-traffic"
    )
    assert decision.outcome == "deny"
    assert "field 'speed': expected number, got boolean" in decision.reasons
    assert "required field 'region' is missing" in decision.reasons


@pytest.mark.parametrize(
    ("value", "expected_ms"),
    [
        ("2024-05-01T12:00:00Z", 1714564800000),
        ("2024-05-01T14:00:00+02:00", 1714564800000),
        ("2024-05-01T12:00:00.250Z", 1714564800250),
        (1714564800000, 1714564800000),
        (1714564800000.0, 1714564800000),
    ],
)
def test_event_time_accepts_iso8601_and_epoch_ms(
    strict_engine: PolicyEngine, value: object, expected_ms: int
) -> None:
    decision = strict_engine.decide(dict(EVENT, event_time=value), "norway-traffic")
    assert decision.outcome == "allow", decision.reasons
    assert decision.event_time_ms == expected_ms


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("2024-05-01 12:00", "without a time zone"),
        ("yesterday", "matching none of the formats"),
        (1714564800, "seconds vs milliseconds"),
        (True, "matching none of the formats"),
    ],
)
def test_unusable_event_time_denies(strict_engine: PolicyEngine, value: object, why: str) -> None:
    decision = strict_engine.decide(dict(EVENT, event_time=value), "norway-traffic")
    assert decision.outcome == "deny"
    assert any(why in r for r in decision.reasons), decision.reasons


def test_observe_mode_decides_the_same_but_does_not_block() -> None:
    observe = PolicyEngine(load_policy_text(BASE_POLICY.replace("mode: enforce", "mode: observe")))
    enforce = PolicyEngine(load_policy_text(BASE_POLICY))
    event = {"speed": 3}
    a, b = observe.decide(event, "traffic"), enforce.decide(event, "traffic")
    assert a.outcome == b.outcome == "deny"
    assert not a.blocks and b.blocks


def test_audit_record_holds_names_and_actions_never_values(strict_engine: PolicyEngine) -> None:
    secret_values = {
        "region": "synthetic-region-Q",
        "speed": 123.456,
        "plate": "ZZ99999",
        "driver_id": "synthetic-driver-42",
        "event_time": "2024-05-01T12:00:00Z",
        "note": "synthetic-note-words",
        "undeclared_thing": "synthetic-undeclared-value",
    }
    decision = strict_engine.decide(
        secret_values,
        "norway-traffic",
        destination="postgresql://fjord:pa55word@10.0.0.5:5432/traffic",
        detected={"note": ["phone"]},
    )
    record = json.dumps(decision.to_record())
    for value in (
        "synthetic-region-Q",
        "123.456",
        "ZZ99999",
        "synthetic-driver-42",
        "synthetic-note-words",
        "synthetic-undeclared-value",
        "pa55word",
        "fjord:",
    ):
        assert value not in record
    assert "undeclared_thing" in record and "plate" in record
    assert decision.destination == "postgresql://10.0.0.5:5432/traffic"


def test_a_non_object_event_is_denied(strict_engine: PolicyEngine) -> None:
    decision = strict_engine.decide(["not", "an", "object"], "norway-traffic")  # type: ignore[arg-type]
    assert decision.outcome == "deny"
    assert decision.fields == ()


def test_decision_is_frozen(strict_engine: PolicyEngine) -> None:
    decision: Decision = strict_engine.decide(EVENT, "norway-traffic")
    with pytest.raises(AttributeError):
        decision.outcome = "deny"  # type: ignore[misc]


def test_one_engine_decides_from_several_threads(strict_engine: PolicyEngine) -> None:
    from concurrent.futures import ThreadPoolExecutor

    destinations = [f"10.0.{i % 7}.{i % 250}" for i in range(2000)] + ["127.0.0.1:9092"] * 50
    expected = {d: strict_engine.decide(EVENT, "norway-traffic", d) for d in set(destinations)}
    fresh = PolicyEngine(strict_engine.policy)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(
            pool.map(lambda d: (d, fresh.decide(EVENT, "norway-traffic", d)), destinations)
        )
    assert all(decision == expected[d] for d, decision in results)
