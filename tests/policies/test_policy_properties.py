"""Properties: a decision is a pure function of (policy, event, destination); the content hash
ignores formatting and key order, and changes when the policy does."""

from __future__ import annotations

import copy
import ipaddress
import random
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policies import PolicyEngine, PolicyLoadError, load_policy, load_policy_text, read_policy_data
from tests.policies.conftest import PACK_FILES

POLICIES = [load_policy(p) for p in PACK_FILES]
PACK_DATA = [read_policy_data(p) for p in PACK_FILES]
FIELDS = ["region", "speed", "plate", "driver_id", "event_time", "note", "extra", "nested"]

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["2024-05-01T12:00:00Z", "2024-05-01T12:00:00", 1714564800000]),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
events = st.dictionaries(
    st.one_of(st.sampled_from(FIELDS), st.text(min_size=1, max_size=8)), json_values, max_size=8
)
ip_literals = st.one_of(
    st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(lambda a: f"[{a}]:9092")
)
destinations = st.one_of(
    st.none(),
    ip_literals,
    st.sampled_from(
        [
            "kafka://127.0.0.1:9092/norway-traffic",
            "postgresql://u:p@10.1.2.3:5432/db",
            "kafka.example.no:9092",
            "https://api.example.se/v1",
        ]
    ),
)
detections = st.one_of(
    st.none(),
    st.dictionaries(
        st.sampled_from(FIELDS),
        st.lists(st.sampled_from(["phone", "email", "fodselsnummer"])),
        max_size=3,
    ),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    policy_index=st.integers(0, len(POLICIES) - 1),
    event=events,
    destination=destinations,
    detected=detections,
    seed=st.integers(0, 2**32 - 1),
)
def test_decision_is_a_pure_function_of_policy_event_and_destination(
    policy_index: int,
    event: dict[str, Any],
    destination: str | None,
    detected: dict[str, list[str]] | None,
    seed: int,
) -> None:
    policy = POLICIES[policy_index]
    original = copy.deepcopy(event)
    first = PolicyEngine(policy).decide(event, "norway-traffic", destination, detected)
    # Same inputs through a second engine, with the event's keys in another order.
    keys = list(event)
    random.Random(seed).shuffle(keys)
    reordered = {k: event[k] for k in keys}
    engine = PolicyEngine(policy)
    second = engine.decide(reordered, "norway-traffic", destination, detected)
    third = engine.decide(copy.deepcopy(event), "norway-traffic", destination, detected)
    assert first == second == third
    assert first.to_record() == second.to_record()
    assert event == original  # deciding never changes the event
    assert first.policy_hash == policy.content_hash


def _shuffled(value: Any, rng: random.Random) -> Any:
    if isinstance(value, dict):
        keys = list(value)
        rng.shuffle(keys)
        return {k: _shuffled(value[k], rng) for k in keys}
    if isinstance(value, list):
        return [_shuffled(v, rng) for v in value]  # list order is meaning: kept
    return value


def _dump(data: Any, rng: random.Random) -> str:
    text = yaml.safe_dump(
        data,
        sort_keys=False,
        default_flow_style=rng.choice([False, None]),
        indent=rng.choice([2, 4]),
        width=rng.choice([60, 80, 4096]),
        allow_unicode=True,
    )
    lines = text.splitlines()
    # Comments and blank lines before top-level keys (anywhere else they could
    # land inside a multi-line string and change it).
    tops = [i for i, line in enumerate(lines) if line[:1].isalpha()]
    for _ in range(rng.randint(0, 5)):
        lines.insert(rng.choice(tops), rng.choice(["", "# comment"]))
        tops = [i for i, line in enumerate(lines) if line[:1].isalpha()]
    return "\n".join(lines) + "\n"


@settings(max_examples=60, deadline=None)
@given(pack_index=st.integers(0, len(PACK_DATA) - 1), seed=st.integers(0, 2**32 - 1))
def test_content_hash_ignores_formatting_and_key_order(pack_index: int, seed: int) -> None:
    rng = random.Random(seed)
    data = PACK_DATA[pack_index]
    text = _dump(_shuffled(data, rng), rng)
    assert load_policy_text(text).content_hash == POLICIES[pack_index].content_hash


@settings(max_examples=60, deadline=None)
@given(pack_index=st.integers(0, len(PACK_DATA) - 1), speed_limit=st.integers(0, 200))
def test_content_hash_changes_when_the_policy_does(pack_index: int, speed_limit: int) -> None:
    data = copy.deepcopy(PACK_DATA[pack_index])
    original = POLICIES[pack_index]
    data["placement"]["max_swappiness"] = speed_limit
    changed = load_policy_text(yaml.safe_dump(data))
    assert (changed.content_hash == original.content_hash) == (
        speed_limit == original.placement.max_swappiness
    )


@given(st.ip_addresses())
def test_private_and_loopback_literals_never_need_location_facts(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    engine = PolicyEngine(POLICIES[0])
    verdict = engine.egress(str(address))
    if address.is_loopback or address.is_private or address.is_link_local:
        assert verdict.outcome in ("allow", "deny")
    else:
        assert verdict.outcome == "unresolved"


PACK_TEXTS = [p.read_text(encoding="utf-8") for p in PACK_FILES]
mutation_chars = st.sampled_from(list(" :-[]{},&*!|>'\"#\n\tNOx0.%@`"))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pack_index=st.integers(0, len(PACK_TEXTS) - 1),
    edits=st.lists(
        st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 3), mutation_chars),
        min_size=1,
        max_size=4,
    ),
)
def test_any_damaged_policy_gives_located_issues_never_a_traceback(
    pack_index: int, edits: list[tuple[float, int, str]]
) -> None:
    text = PACK_TEXTS[pack_index]
    for where, deleted, inserted in edits:
        at = int(where * len(text))
        text = text[:at] + inserted + text[at + deleted :]
    try:
        load_policy_text(text, file="damaged.yaml")
    except PolicyLoadError as exc:
        assert exc.issues
        lines = text.count("\n") + 2
        for issue in exc.issues:
            assert issue.file == "damaged.yaml"
            assert 1 <= issue.line <= lines and issue.col >= 1
            assert issue.message
