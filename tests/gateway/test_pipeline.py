"""Each pipeline step alone, then the pipeline the policy composes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import EventRejected
from gateway.pii import Keyring
from gateway.pipeline import Pipeline, PolicyPipelines, Topics, build_pipeline
from gateway.record import EventRecord
from gateway.service import pii_tools
from gateway.steps import Audit, Decide, Identify, Parse, Publish, Step, Tag, Transform, Validate
from gateway.synthetic import TrafficGenerator, synthetic_fodselsnummer
from policies import PolicyEngine, load_policy
from tests.gateway.conftest import NORWAY_STRICT, STREAM

POLICY = load_policy(NORWAY_STRICT)
ENGINE = PolicyEngine(POLICY)
DECLARED = POLICY.streams[STREAM]
TOOLS = pii_tools(Keyring.ephemeral())
DESTINATION = "local://127.0.0.1/log"


def record(event: dict[str, Any] | None = None, raw: bytes | None = None) -> EventRecord:
    return EventRecord(stream=STREAM, event=event, raw=raw)


def pipeline(policy: Any = POLICY, source: str = "http") -> Pipeline:
    return build_pipeline(
        policy,
        PolicyEngine(policy),
        STREAM,
        TOOLS,
        topics=Topics(),
        destination=DESTINATION,
        source=source,
    )


def test_parse_turns_bytes_into_an_object() -> None:
    r = Parse()(record(raw=b'{"region": "Oslo"}'))
    assert r.event == {"region": "Oslo"}


@pytest.mark.parametrize(
    ("raw", "code"),
    [(b"{nope", "invalid_json"), (b"[1, 2]", "not_an_object"), (b"", "empty_event")],
)
def test_parse_rejects_what_is_not_one_json_object(raw: bytes, code: str) -> None:
    with pytest.raises(EventRejected) as caught:
        Parse()(record(raw=raw))
    assert caught.value.code == code


def test_parse_errors_give_the_position_never_the_text() -> None:
    with pytest.raises(EventRejected) as caught:
        Parse()(record(raw=b'{"driver_id": 01817512345x}'))
    assert "01817512345" not in caught.value.message
    assert "line 1" in caught.value.message


def test_identify_takes_the_event_id_out_of_the_event() -> None:
    r = Identify()(record({"event_id": "abc-1", "region": "Oslo"}))
    assert r.event_id == "abc-1" and r.event == {"region": "Oslo"}


def test_identify_assigns_an_id_when_there_is_none_unless_told_to_require_one() -> None:
    assert Identify()(record({"region": "Oslo"})).event_id
    with pytest.raises(EventRejected, match="required"):
        Identify(assign_missing=False)(record({"region": "Oslo"}))


@pytest.mark.parametrize("bad", [True, 1.5, {"a": 1}, ["x"], "", "a\nb", "x" * 201])
def test_identify_rejects_ids_that_cannot_be_idempotency_keys(bad: Any) -> None:
    with pytest.raises(EventRejected) as caught:
        Identify()(record({"event_id": bad}))
    assert caught.value.code == "invalid_event_id"


def test_validate_names_the_field_and_the_expected_type() -> None:
    event = {"region": "Oslo", "speed": "12", "event_time": "2026-01-01T00:00:00Z"}
    with pytest.raises(EventRejected) as caught:
        Validate(DECLARED)(record(event))
    assert (caught.value.code, caught.value.field) == ("wrong_type", "speed")
    assert "'12'" not in caught.value.message


def test_validate_requires_the_declared_required_fields_and_a_usable_event_time() -> None:
    with pytest.raises(EventRejected) as missing:
        Validate(DECLARED)(record({"speed": 1.0, "event_time": "2026-01-01T00:00:00Z"}))
    assert missing.value.code == "missing_field" and missing.value.field == "region"
    with pytest.raises(EventRejected) as late:
        Validate(DECLARED)(record({"region": "Oslo", "speed": 1.0, "event_time": 12}))
    assert late.value.code == "invalid_event_time"


def test_a_boolean_is_not_a_number() -> None:
    with pytest.raises(EventRejected):
        Validate(DECLARED)(
            record({"region": "Oslo", "speed": True, "event_time": "2026-01-01T00:00:00Z"})
        )


def test_tag_finds_national_ids_in_free_text_only_where_the_policy_says_to_scan() -> None:
    import random

    fnr = synthetic_fodselsnummer(random.Random(3))
    r = Tag(DECLARED, TOOLS.detector)(record({"note": f"eier {fnr}", "region": fnr}))
    assert r.detected == {"note": ["fodselsnummer"]}
    assert "region" not in r.detected


def test_the_tag_cache_stays_bounded_and_a_forgotten_text_is_scanned_again_alike() -> None:
    tag = Tag(DECLARED, TOOLS.detector)
    tag.cache_size = 8
    notes = [f"ring +47 9{i:07d}" for i in range(30)]
    first = [tag(record({"note": note})).detected for note in notes]
    cache = tag._fields[0][3]
    assert 0 < len(cache) <= 8 and notes[0] not in cache
    assert [tag(record({"note": note})).detected for note in notes] == first
    assert first[0] == {"note": ["phone"]}


def test_decide_in_enforce_mode_rejects_a_denied_event_with_reasons_naming_fields() -> None:
    r = record(
        {"region": "Oslo", "speed": 1.0, "event_time": "2026-01-01T00:00:00Z", "x": {"y": 1}}
    )
    r.event["region"] = 5  # type: ignore[index]
    with pytest.raises(EventRejected) as caught:
        Decide(ENGINE, destination=DESTINATION)(r)
    assert caught.value.code == "denied"
    assert "region" in caught.value.message
    assert r.decision is not None and r.decision.outcome == "deny"


def _decided(event: dict[str, Any]) -> EventRecord:
    r = record(event)
    Identify()(r)
    Tag(DECLARED, TOOLS.detector)(r)
    Decide(ENGINE, destination=DESTINATION)(r)
    return r


def test_transform_pseudonymises_identifiers_redacts_spans_and_drops_undeclared_fields() -> None:
    event = TrafficGenerator(seed=4).event()
    event["note"] = f"ring {event['driver_id']} i dag"
    event["undeclared"] = "gone"
    r = _decided(dict(event))
    Transform(
        STREAM,
        DECLARED,
        tokenisers=TOOLS.tokenisers,
        cipher=TOOLS.cipher,
        redactor=TOOLS.redactor,
    )(r)
    out = r.output
    assert out is not None
    assert out["region"] == event["region"] and out["speed"] == event["speed"]
    assert out["driver_id"].startswith("ps1:") and out["plate"].startswith("ps1:")
    assert out["note"] == "ring [fodselsnummer] i dag"
    assert "undeclared" not in out
    assert out["event_id"] == event["event_id"]
    assert dict(r.transformed)["undeclared"] == "drop"


def test_a_recurring_note_is_redacted_once_for_the_same_findings_and_again_for_new_ones() -> None:
    calls: list[str] = []

    def redactor(value: str, findings: Any = None) -> str:
        calls.append(value)
        return str(TOOLS.redactor(value, findings))

    transform = Transform(
        STREAM, DECLARED, tokenisers=TOOLS.tokenisers, cipher=TOOLS.cipher, redactor=redactor
    )
    tag = Tag(DECLARED, TOOLS.detector)
    event = TrafficGenerator(seed=6).event()
    event["note"] = f"ring {event['driver_id']} i dag"
    outputs = []
    for fresh_tag in (False, False, True):
        r = record(dict(event))
        Identify()(r)
        (Tag(DECLARED, TOOLS.detector) if fresh_tag else tag)(r)
        Decide(ENGINE, destination=DESTINATION)(r)
        assert r.output is None
        outputs.append(transform(r).output)
    assert outputs[0] == outputs[1] == outputs[2]
    assert outputs[0] is not None and outputs[0]["note"] == "ring [fodselsnummer] i dag"
    assert len(calls) == 2  # a fresh scan's findings are not taken for the cached ones


def test_pseudonyms_are_stable_so_windows_can_group_by_them() -> None:
    event = TrafficGenerator(seed=5).event()
    outputs = []
    for _ in range(2):
        r = _decided(dict(event))
        Transform(
            STREAM,
            DECLARED,
            tokenisers=TOOLS.tokenisers,
            cipher=TOOLS.cipher,
            redactor=TOOLS.redactor,
        )(r)
        outputs.append(r.output)
    assert outputs[0] == outputs[1]


def test_audit_records_hold_field_names_and_actions_never_values() -> None:
    event = TrafficGenerator(seed=6).event()
    r = _decided(dict(event))
    Audit(source="http", policy_hash=POLICY.content_hash, destination=DESTINATION)(r)
    assert r.audit is not None
    text = orjson.dumps(r.audit)
    for field in ("driver_id", "plate"):
        assert str(event[field]).encode() not in text
        assert field.encode() in text
    assert r.audit["type"] == "decision" and r.audit["event_id"] == event["event_id"]
    assert r.audit["policy_hash"] == POLICY.content_hash


def test_a_memoised_audit_record_says_what_a_fresh_one_says_naming_its_shared_members() -> None:
    from audit import SharedMembers, resolved
    from audit.canonical import canonical_json
    from gateway.steps import SHARED_MEMBERS

    events = TrafficGenerator(seed=8).batch(3)
    for event in events:
        event.pop("note", None)
    records = [record(raw=orjson.dumps(e)) for e in events]
    pipeline().run_batch(records)
    last = records[-1]
    assert last.decision_entry is not None and last.decision_entry.audit_base is not None
    fresh = record()
    fresh.decision, fresh.event_id, fresh.pseudonyms = last.decision, last.event_id, last.pseudonyms
    Audit(source="http", policy_hash=POLICY.content_hash, destination=DESTINATION)(fresh)
    assert fresh.audit is not None and last.audit is not None
    # The memoised record names the decision's reasons; resolved, it is the fresh one.
    shared = last.audit["shared"]
    assert isinstance(shared, SharedMembers) and "shared" not in fresh.audit
    assert set(shared.members) == set(SHARED_MEMBERS) - {"reasons"}  # it gave none
    assert not set(SHARED_MEMBERS) & set(last.audit)
    assert canonical_json(resolved(last.audit)) == canonical_json(fresh.audit)
    assert shared.members["fields"] == fresh.audit["fields"]


def test_audit_accounts_for_rejected_events_too() -> None:
    r = record()
    r.event_id = "e-1"
    r.rejected = EventRejected("wrong_type", "field 'speed' must be number", field="speed")
    Audit(source="http", policy_hash="sha256:x", destination=None)(r)
    assert r.audit is not None
    assert r.audit["outcome"] == "rejected"
    assert r.audit["reason"] == {"code": "wrong_type", "field": "speed"}


def test_publish_keys_the_message_by_the_streams_key_and_names_the_event_in_headers() -> None:
    r = record({"region": "Oslo"})
    r.event_id = "e-2"
    r.output = {"region": "Oslo", "event_id": "e-2"}
    Publish(topic="t", key_field="region", policy_hash="sha256:x", stream=STREAM)(r)
    assert r.message is not None
    assert r.message.key == b"Oslo" and r.message.topic == "t"
    assert ("fjordgate-event-id", "e-2") in r.message.headers
    assert type(r.message.value) is bytes and r.message.value == orjson.dumps(r.output)


def test_the_policy_composes_the_steps_and_ingress_adds_the_dead_letter_step() -> None:
    assert pipeline().step_names == [
        "parse", "identify", "validate", "tag", "decide", "transform", "audit", "publish",
    ]  # fmt: skip
    assert pipeline(source="kafka").step_names[-1] == "dead_letter"


def test_a_stream_without_free_text_has_no_tag_step(tmp_path: Path) -> None:
    data = yaml.safe_load(NORWAY_STRICT.read_text())
    del data["streams"][STREAM]["fields"]["note"]
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    assert "tag" not in pipeline(load_policy(path)).step_names


def test_observe_mode_lets_a_denied_event_pass_minimised_and_audits_the_deny(
    tmp_path: Path,
) -> None:
    data = yaml.safe_load(NORWAY_STRICT.read_text())
    data["mode"] = "observe"
    data["streams"][STREAM]["fields"]["note"]["scan"]["on_detected"] = "deny"
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    event = TrafficGenerator(seed=7).event()
    event["note"] = f"fnr {event['driver_id']}"
    r = pipeline(load_policy(path)).run(record(event))
    assert r.rejected is None
    assert r.audit is not None and r.audit["outcome"] == "deny" and r.audit["mode"] == "observe"
    assert r.message is not None and event["driver_id"].encode() not in r.message.value


def test_a_rejected_event_skips_the_rest_but_is_still_audited() -> None:
    class Boom(Step):
        name = "boom"

        def __call__(self, r: EventRecord) -> EventRecord:
            raise EventRejected("boom", "no")

    audit = Audit(source="http", policy_hash="sha256:x", destination=None)
    reached: list[str] = []

    class After(Step):
        name = "after"

        def __call__(self, r: EventRecord) -> EventRecord:
            reached.append("after")
            return r

    r = Pipeline(STREAM, [Boom(), After(), audit]).run(record({}))
    assert r.status == "rejected" and reached == []
    assert r.audit is not None and r.audit["reason"]["code"] == "boom"


@given(st.dictionaries(st.text(min_size=1, max_size=8), st.integers() | st.text(max_size=8)))
def test_any_json_object_ends_accepted_or_rejected_with_a_reason_never_an_exception(
    event: dict[str, Any],
) -> None:
    import json

    r = pipeline().run(record(raw=json.dumps(event).encode()))
    assert (r.rejected is None and r.message is not None) or (
        r.rejected is not None and r.rejected.code and r.audit is not None
    )


def test_policy_pipelines_cover_every_declared_stream() -> None:
    built = PolicyPipelines.build(POLICY, ENGINE, TOOLS, topics=Topics(), destination=None)
    assert set(built.pipelines) == set(POLICY.streams)
    assert built.get("nope") is None
    assert built.content_hash == POLICY.content_hash


_values = (
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(-1e3, 1e3) | st.text(max_size=6)
)


@given(
    st.lists(
        st.fixed_dictionaries(
            {"region": _values, "speed": _values, "plate": _values},
            optional={"driver_id": _values, "extra": _values, "note": st.text(max_size=30)},
        ),
        min_size=1,
        max_size=6,
    )
)
def test_memoised_decisions_equal_the_engines_own(events: list[dict[str, Any]]) -> None:
    from gateway.steps import DecisionShapes

    shapes = DecisionShapes()
    memo = Decide(ENGINE, destination=DESTINATION, shapes=shapes)
    for event in events:
        event = {**event, "event_time": "2026-01-01T00:00:00Z"}
        tagged = Tag(DECLARED, TOOLS.detector)(record(dict(event)))
        fresh = ENGINE.decide(dict(event), STREAM, DESTINATION, tagged.detected or None)
        r = record(dict(event))
        r.detected = tagged.detected
        try:
            memo(r)
        except EventRejected:
            assert fresh.blocks
            continue
        assert (r.decision.outcome, r.decision.fields, r.decision.rule_ids) == (
            fresh.outcome,
            fresh.fields,
            fresh.rule_ids,
        )
        assert r.decision.reasons == fresh.reasons
