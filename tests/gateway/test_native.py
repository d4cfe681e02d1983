"""The compiled fast path (native/, gateway/native.py) against the Python steps, its reference.

Two pipelines over the same policy and keyring, one with the compiled core and
one without, get the same events; every record must end the same: status, id,
rejection, transformed fields, pseudonyms, detections, the message's topic,
key, bytes and headers, and the audit record's canonical bytes. Each batch runs
twice, so that the second pass meets memoised decisions, which is where the
core takes over.
"""

from __future__ import annotations

import copy
import json
import os
import re
from dataclasses import InitVar, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit import CanonicalRecord
from audit.canonical import canonical_json
from audit.log import decoded
from gateway import EventRecord, Topics, build_pipeline, native, pii_tools
from gateway.native import _bare_fields
from gateway.pii import Keyring
from gateway.pii.findings import PII_TYPES, Finding
from gateway.pii.transforms import redact
from gateway.pipeline import Pipeline
from gateway.synthetic import TrafficGenerator, synthetic_fodselsnummer
from policies import PolicyEngine, load_policy
from tests.gateway.conftest import NORWAY_STRICT, STREAM

if native.fjordgate_native is None:
    if os.environ.get("CI"):
        pytest.fail("the compiled module fjordgate_native is not installed (deploy/dev/setup.sh)")
    pytest.skip("fjordgate_native is not built here", allow_module_level=True)

fjordgate_native: Any = native.fjordgate_native
KEYRING = Keyring.ephemeral()


def _policy(tmp: Path | None = None, **changes: Any) -> Any:
    data = yaml.safe_load(NORWAY_STRICT.read_text())
    stream = data["streams"][STREAM]
    for name, value in changes.items():
        if name == "fields":
            stream["fields"].update(value)
        else:
            stream[name] = value
    if tmp is None:
        return load_policy(NORWAY_STRICT)
    path = tmp / "policy.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return load_policy(path)


def _pair(policy: Any, source: str = "http") -> tuple[Pipeline, Pipeline]:
    def build() -> Pipeline:
        return build_pipeline(
            policy,
            PolicyEngine(policy),
            STREAM,
            pii_tools(KEYRING),
            topics=Topics(),
            destination="local://127.0.0.1/log",
            source=source,
        )

    fast, reference = build(), build()
    assert fast.native is not None, "the standard pipeline gets the compiled core"
    reference.native = None
    return fast, reference


_CIPHERTEXT = re.compile(rb"enc1:[A-Za-z0-9_:-]+")


def _outcome(record: EventRecord, compare_event: bool, tags: bool = True) -> tuple[Any, ...]:
    """What a record ends with. `tags=False` for a record the core finished: it keeps the
    tag step's `detected` and `findings` to itself (the classes detected per field are
    in the audit record, compared here, and the spans shape the minimised event)."""
    message = record.message
    rejected = record.rejected
    return (
        record.status,
        record.event_id,
        None if rejected is None else (rejected.code, rejected.message, rejected.field),
        list(record.transformed),
        # (The pseudonyms are compared in the audit record: the core writes them there
        # and keeps no dict of them on the record.)
        record.detected if tags else None,
        None
        if record.findings is None or not tags
        else {
            path: [(f.start, f.end, f.type, f.synthetic) for f in found]
            for path, found in record.findings.items()
        },
        None
        if message is None
        # Ciphertexts have a random nonce: compared as ciphertexts, not byte for byte.
        else (
            message.topic,
            message.key,
            _CIPHERTEXT.sub(b"enc1:*", message.value),
            message.headers,
            message.event_id,
        ),
        _audit_bytes(record.audit),
        record.event if compare_event else None,
    )


def _audit_bytes(audit: Any) -> bytes | None:
    """The audit record as the log encodes it (the core's come encoded already), and the
    shared members it names as the log writes them."""
    if audit is None:
        return None
    if type(audit) is fjordgate_native.Staged:
        assert audit.body == canonical_json(decoded(audit))  # the encoding is canonical
    else:
        audit = CanonicalRecord.of(audit)
    shared = audit.shared
    return audit.body + (b"\n" + canonical_json(shared.definition()) if shared else b"")


def _run_both(
    fast: Pipeline, reference: Pipeline, items: list[bytes | dict[str, Any]], passes: int = 2
) -> int:
    """Run `items` through both pipelines `passes` times; assert the records end alike.
    Returns how many records of the last pass the core finished itself."""
    finished = 0
    for _ in range(passes):
        core_made: set[int] = set()
        outcomes = []
        for pipeline in (fast, reference):
            records = [
                EventRecord(STREAM, i, raw=item)
                if isinstance(item, bytes)
                else EventRecord(STREAM, i, event=copy.deepcopy(item))
                for i, item in enumerate(items)
            ]
            if pipeline is fast:
                assert fast.native is not None
                left = fast.native.run(records)
                finished = len(records) - len(left)
                # What the core finishes, it stages as one object: the message, and the
                # audit record encoded already.
                done = {id(r) for r in left}
                assert all(
                    type(r.audit) is fjordgate_native.Staged and r.audit is r.message
                    for r in records
                    if id(r) not in done
                )
                core_made = {r.index for r in records if id(r) not in done}
                assert all(
                    r.detected is None and r.findings is None
                    for r in records
                    if r.index in core_made
                )
                fast.run_batch(left)
            else:
                pipeline.run_batch(records)
            outcomes.append(
                [
                    _outcome(r, not isinstance(items[r.index], bytes), r.index not in core_made)
                    for r in records
                ]
            )
        for index, (got, want) in enumerate(zip(*outcomes, strict=True)):
            assert got == want, f"item {index} differs: {items[index]!r}"
    return finished


def test_synthetic_traffic_ends_alike_and_the_core_takes_nearly_all_of_it() -> None:
    fast, reference = _pair(_policy())
    events = TrafficGenerator(seed=11).batch(600)
    raws: list[bytes | dict[str, Any]] = [orjson.dumps(e) for e in events]
    finished = _run_both(fast, reference, raws)
    # Not vacuous: after the first pass every shape is memoised and the core finishes it.
    assert finished == len(raws)
    parsed: list[bytes | dict[str, Any]] = list(events)
    assert _run_both(fast, reference, parsed) == len(parsed)
    assert fast.native is not None and fast.native.plans()[0] >= 4


def test_new_identifiers_get_the_pseudonymisers_pseudonyms_from_the_core_itself() -> None:
    # Every event a new driver and plate (ASCII, Norwegian letters, longer than HMAC's
    # 64-byte block): the core computes them (the Python pseudonymiser is not asked), and
    # they are the reference's pseudonyms, byte for byte, first seen and seen again.
    class Unasked:
        def copy(self) -> Any:
            raise AssertionError("the core asked the Python pseudonymiser")

    fast, reference = _pair(_policy())
    events = TrafficGenerator(seed=2).batch(300)
    _run_both(fast, reference, [orjson.dumps(e) for e in events[:50]])  # shapes memoised
    transform = next(step for step in fast.steps if step.name == "transform")
    pseudonymiser = transform.tokenisers(None)
    pseudonymiser._inner = Unasked()  # type: ignore[attr-defined]
    for i, event in enumerate(events):
        event["driver_id"] = f"{10_000_000_000 + i * 7919}"
        event["plate"] = ["ØÅ", "AB ", "x" * 70][i % 3] + str(i)
    raws: list[bytes | dict[str, Any]] = [orjson.dumps(e) for e in events]
    assert _run_both(fast, reference, raws, passes=2) == len(raws)


def test_the_cores_pseudonym_cache_is_bounded_by_the_pseudonymisers() -> None:
    # A cache of 8: 100 distinct values, each seen twice in a row and again later, keep
    # the reference's pseudonyms whether the core finds them in its cache or not.
    fast, reference = _pair(_policy())
    for pipeline in (fast, reference):
        pipeline_transform = next(s for s in pipeline.steps if s.name == "transform")
        pipeline_transform.tokenisers(None)._cache_size = 8  # type: ignore[attr-defined]
    events = TrafficGenerator(seed=12).batch(300)
    for i, event in enumerate(events):
        event["driver_id"] = f"{20_000_000_000 + (i // 2) % 100 * 7919}"
    assert _run_both(fast, reference, [orjson.dumps(e) for e in events]) == len(events)
    assert fast.native is not None
    (driver_and_plate,) = fast.native.cached_pseudonyms()  # one pseudonymiser for both
    assert 0 < driver_and_plate <= 8


def test_the_cores_caches_keep_a_text_from_its_second_sighting() -> None:
    # 200 events with a driver and plate no other has: the core computes each pseudonym
    # and keeps none (a first miss leaves only its hash). The same events again: each
    # text is missed a second time, and kept, but for the few whose slot another text
    # took in between (400 texts in 32,768 slots). The pseudonyms are the reference's.
    fast, reference = _pair(_policy())
    events = TrafficGenerator(seed=13).batch(240)
    _run_both(fast, reference, [orjson.dumps(e) for e in events[:40]])  # shapes memoised
    assert fast.native is not None
    (before,) = fast.native.cached_pseudonyms()
    raws: list[bytes | dict[str, Any]] = [
        orjson.dumps({**e, "driver_id": f"{30_000_000_000 + i * 7919}", "plate": f"EL {i:05d}"})
        for i, e in enumerate(events[40:])
    ]
    assert _run_both(fast, reference, raws, passes=1) == len(raws)
    assert fast.native.cached_pseudonyms() == [before]
    assert _run_both(fast, reference, raws, passes=1) == len(raws)
    (after,) = fast.native.cached_pseudonyms()
    assert before + 0.9 * 2 * len(raws) < after <= before + 2 * len(raws)


def test_a_pseudonymiser_without_a_cache_gives_the_same_pseudonyms() -> None:
    fast, reference = _pair(_policy())
    pseudonymiser = next(s for s in fast.steps if s.name == "transform").tokenisers(None)  # type: ignore[attr-defined]
    pseudonymiser._cache_size = 0  # as Pseudonymiser(cache_size=0) makes it
    events = TrafficGenerator(seed=8).batch(200)
    finished = _run_both(fast, reference, [orjson.dumps(e) for e in events])
    assert finished == len(events)
    assert pseudonymiser.cache() == ({}, 0)
    assert fast.native is not None and fast.native.cached_pseudonyms() == []


def test_new_notes_are_scanned_by_the_compiled_detector(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every event a new note with a phone number, an e-mail or a national id: the core's
    # detector scans them (the tag step's Python scan is not asked), and the records end
    # as the reference's, redactions included.
    from gateway.steps import Tag

    asked: list[int] = []
    python_scan = Tag._scan

    def counted(self: Tag, text: str, wanted: frozenset[str] | None) -> Any:
        asked.append(id(self))
        return python_scan(self, text, wanted)

    monkeypatch.setattr(Tag, "_scan", counted)
    fast, reference = _pair(_policy())
    fast_tag = id(next(step for step in fast.steps if step.name == "tag"))
    events = TrafficGenerator(seed=4).batch(400)
    _run_both(fast, reference, [orjson.dumps(e) for e in events[:100]])  # shapes memoised
    forms = ["Ring meg på +47 9{:07d}.", "Skriv til sjafor{}@example.no", "Eier {} ringte"]
    fnr = synthetic_fodselsnummer(__import__("random").Random(9))
    for i, event in enumerate(events[100:]):
        form = forms[i % 3]
        event["note"] = form.format(fnr if "Eier" in form else i) + f" (sak {i})"
    before = asked.count(fast_tag)
    raws: list[bytes | dict[str, Any]] = [orjson.dumps(e) for e in events[100:]]
    assert _run_both(fast, reference, raws, passes=1) == len(raws)
    assert asked.count(fast_tag) == before, "the core asked the Python detector"
    assert asked.count(id(next(s for s in reference.steps if s.name == "tag"))) >= len(raws)


def test_a_record_of_another_class_is_left_to_the_steps() -> None:
    # The core writes a record's fields in place, at EventRecord's own slots: an object
    # of any other class (a subclass may have its own __setattr__) it must not touch.
    class Traced(EventRecord):
        __slots__ = ("seen",)

        def __setattr__(self, name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

    fast, reference = _pair(_policy())
    raws = [orjson.dumps(e) for e in TrafficGenerator(seed=6).batch(100)]
    _run_both(fast, reference, list(raws))  # shapes memoised: the core takes EventRecords
    assert fast.native is not None
    records = [Traced(STREAM, i, raw=raw) for i, raw in enumerate(raws)]
    left = fast.native.run(records)
    assert left == records
    assert all(r.event_id is None and r.message is None for r in records)
    fast.run_batch(records)
    expected = [EventRecord(STREAM, i, raw=raw) for i, raw in enumerate(raws)]
    reference.run_batch(expected)
    assert [_outcome(r, False) for r in records] == [_outcome(r, False) for r in expected]


def test_records_are_made_as_eventrecords_init_makes_them() -> None:
    from gateway import record

    event = {"event_id": "e-1", "region": "Oslo"}
    items: list[Any] = [b'{"event_id":"e-0"}', event, [1, 2], "text", 7, None, b""]
    for source in ("http", "kafka"):
        made = native.make_records(STREAM, items, source)
        expected = record.make_records(STREAM, items, source)
        assert [type(r) for r in made] == [EventRecord] * len(items)
        for got, want in zip(made, expected, strict=True):
            for name in EventRecord.__slots__:
                assert getattr(got, name) == getattr(want, name), name
        assert made[1].event is event and made[2].raw == b"[1,2]" and made[5].raw == b"null"
    # The pipeline takes them as it takes records made one by one.
    fast, reference = _pair(_policy())
    raws: list[Any] = [orjson.dumps(e) for e in TrafficGenerator(seed=13).batch(200)]
    for _ in range(2):
        got, want = native.make_records(STREAM, raws), record.make_records(STREAM, raws)
        fast.run_batch(got)
        reference.run_batch(want)
        # (The core finishes most: its records carry no tag dicts, so none are compared.)
        assert [_outcome(r, False, False) for r in got] == [_outcome(r, False, False) for r in want]


def test_only_plain_slotted_dataclasses_are_made_without_their_init() -> None:
    @dataclass(slots=True)
    class Plain:
        a: int
        b: str

    @dataclass(slots=True)
    class Checked:
        a: int

        def __post_init__(self) -> None:
            assert self.a >= 0

    @dataclass(slots=True)
    class Hidden:
        a: int
        b: int = field(init=False, default=0)

    @dataclass(slots=True)
    class WithInitVar:
        a: int
        scale: InitVar[int]

    @dataclass
    class Unslotted:
        a: int

    assert _bare_fields(Plain) == ["a", "b"]
    for cls in (Checked, Hidden, WithInitVar, Unslotted):
        with pytest.raises(TypeError, match="not a plain slotted dataclass"):
            _bare_fields(cls)


# -- generated events: every kind of value in every field --------------------------------------

_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30
) | st.sampled_from(
    [
        "Fart målt ved bomstasjon.",
        'sitat "her" og \\ skråstrek',
        "linje\nny\ttab\x01\x1f\x7f\u2028",
        "ring +47 91234567 nå",
        "e-post ola@example.no",
    ]
)
_NUMBER = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, -0.0, 0.0001, 0.00001, 1e15, 1e16, 123456789012345.6, 30.0, 87.25]),
)
_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    _NUMBER,
    _TEXT,
    st.just({"nested": 1}),
    st.just([1, 2]),
)
_TIME = st.one_of(
    st.datetimes().map(lambda d: d.isoformat() + "Z"),
    st.datetimes().map(lambda d: d.isoformat(timespec="milliseconds") + "+01:00"),
    st.from_regex(
        r"\A20[0-9]{2}-[0-1][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9](\.[0-9]{1,7})?(Z|[+-][0-2][0-9]:[0-5][0-9])?\Z"
    ),
    st.integers(min_value=0, max_value=2**45),
    _VALUE,
)
_ID = st.one_of(
    st.from_regex(r"\A[a-z0-9-]{1,12}\Z"),
    st.integers(min_value=-5, max_value=10**20),
    st.sampled_from(["", " ", "id\x00", "å-1", "x" * 201, "tab\tid"]),
    _VALUE.filter(lambda v: v is not None),  # a missing id is assigned a random one
)


@st.composite
def _event(draw: st.DrawFn) -> dict[str, Any]:
    event = TrafficGenerator(seed=draw(st.integers(0, 5))).event(datetime(2026, 11, 25, 12, 0))
    for name in ("region", "speed", "plate", "driver_id", "note"):
        change = draw(st.sampled_from(["keep", "keep", "keep", "drop", "value"]))
        if change == "drop":
            event.pop(name, None)
        elif change == "value":
            event[name] = draw(_VALUE)
    if draw(st.booleans()):
        event["event_time"] = draw(_TIME)
    if draw(st.integers(0, 3)) == 0:
        event["event_id"] = draw(_ID)
    if draw(st.integers(0, 4)) == 0:
        event[draw(st.sampled_from(["extra", "note.more", "speed_kmh"]))] = draw(_VALUE)
    if draw(st.integers(0, 4)) == 0:
        event["note"] = f"Eier {synthetic_fodselsnummer(__import__('random').Random(1))} ringte"
    return event


def _raw(event: dict[str, Any], form: str) -> bytes:
    """One event as a producer might write it."""
    if form == "escaped":  # \u escapes, spaces, Python's float and exponent forms
        return json.dumps(event, ensure_ascii=True).encode()
    if form == "duplicate":  # the same name twice: the last value at the first place
        body = orjson.dumps(event)
        return body[:-1] + b',"region":"Oslo","speed":55}' if len(event) else body
    return orjson.dumps(event)


def _safe(event: dict[str, Any]) -> bool:
    try:
        orjson.dumps(event)
    except orjson.JSONEncodeError:
        return False  # integers beyond 64 bits: the producer could not have sent them
    return True


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=st.lists(_event().filter(_safe), min_size=1, max_size=12),
    form=st.sampled_from(["orjson", "escaped", "duplicate", "parsed"]),
)
def test_generated_events_end_alike_on_both_paths(events: list[dict[str, Any]], form: str) -> None:
    fast, reference = _pair(_policy())
    for i, event in enumerate(events):
        event.setdefault("event_id", f"gen-{i}")
    items: list[bytes | dict[str, Any]] = (
        list(events) if form == "parsed" else [_raw(e, form) for e in events]
    )
    _run_both(fast, reference, items)


@pytest.mark.parametrize(
    "changes",
    [
        {"undeclared_fields": "deny"},
        {"fields": {"plate": {"pii": "vehicle_plate", "action": "redact", "type": "string"}}},
        {"fields": {"speed": {"pii": "none", "action": "drop", "type": "number"}}},
        {"fields": {"plate": {"pii": "vehicle_plate", "action": "encrypt", "type": "string"}}},
        {"key": "driver_id"},
        {"key": "speed"},
        {
            "fields": {
                "note": {
                    "pii": "free_text",
                    "action": "allow",
                    "type": "string",
                    "scan": {"on_detected": "pseudonymise", "scope": "spans"},
                }
            }
        },
        {
            "fields": {
                "note": {
                    "pii": "free_text",
                    "action": "allow",
                    "type": "string",
                    "scan": {"on_detected": "redact", "scope": "field"},
                }
            }
        },
    ],
    ids=lambda c: "-".join(f"{k}" for k in c) + ":" + orjson.dumps(c).decode()[:40],
)
def test_other_policies_end_alike(tmp_path: Path, changes: dict[str, Any]) -> None:
    fast, reference = _pair(_policy(tmp_path, **changes))
    events = TrafficGenerator(seed=5).batch(200)
    events[3]["extra"] = "undeclared"
    _run_both(fast, reference, [orjson.dumps(e) for e in events])
    _run_both(fast, reference, list(events))


def test_kafka_ingress_pipelines_end_alike_dead_letters_included() -> None:
    fast, reference = _pair(_policy(), source="kafka")
    events = TrafficGenerator(seed=3).batch(100)
    events[7]["speed"] = "fast"  # rejected: a dead letter
    events[9]["event_id"] = ""  # rejected: not an id
    _run_both(fast, reference, [orjson.dumps(e) for e in events])


# -- the core's JSON and time rules, each against what it stands for ---------------------------

# Pieces of JSON and of near-JSON: joined at random, they make objects, broken objects,
# nested ones, bad numbers, bad literals, escapes, control characters, stray whitespace.
_VALUE_PIECES = st.sampled_from(
    [
        '"a"', '"å"', '""', '"x\\"y"', '"x\\ny"', '"x\ny"', '"x', '"\x01"', '"\x7f"',
        "0", "-0", "01", "1.", ".5", "1.50", "-1e5", "1E+2", "2e-3", "1e", "--1", "+1", "-",
        "9" * 25, "true", "false", "null", "tru", "nul", "True", "NaN", "Infinity", "{}",
        '{"b":1}', "[]", "[1]",
    ]
)  # fmt: skip
_SYNTAX_PIECES = st.sampled_from(
    ["{", "}", "[", "]", ",", ":", " ", "\t", "\n", "\r", "\x0b", "\x0c", "\ufeff", '"a"']
)
_WS = st.sampled_from(["", "", "", " ", "\n", "\t", "\r", "\x0c", "\u00a0"])


@st.composite
def _near_json(draw: st.DrawFn) -> bytes:
    if draw(st.integers(0, 4)):  # a flat object, then perhaps a piece changed
        members = draw(
            st.lists(st.tuples(st.sampled_from(["a", "b", "å", "a b"]), _VALUE_PIECES, _WS))
        )
        text = draw(_WS) + "{" + ",".join(f'{w}"{k}"{w}:{w}{v}{w}' for k, v, w in members) + "}"
        if draw(st.integers(0, 3)) == 0:
            at = draw(st.integers(0, len(text)))
            piece = draw(_SYNTAX_PIECES | _VALUE_PIECES)
            text = text[:at] + piece + text[at + draw(st.integers(0, 2)) :]
        text += draw(_WS)
    else:
        text = "".join(draw(st.lists(_SYNTAX_PIECES | _VALUE_PIECES, max_size=12)))
    return text.encode()


@settings(max_examples=2000)
@given(_near_json())
def test_the_core_parses_only_flat_objects_and_reads_them_as_orjson_does(raw: bytes) -> None:
    members = fjordgate_native.flat_members(raw)
    if members is None:
        return  # the steps take it: no claim about what orjson does with it
    parsed = orjson.loads(raw)  # must not raise: the core took it as JSON
    assert isinstance(parsed, dict)
    # orjson keeps a repeated name's last value at its first place; so does dict().
    assert parsed == {name: orjson.loads(value) for name, value in members}
    assert list(parsed) == list(dict.fromkeys(name for name, _ in members))
    for _, value in members:
        assert not isinstance(orjson.loads(value), dict | list)


_NAME_TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"), exclude_characters='"\\')
)


@given(
    st.dictionaries(
        _NAME_TEXT,
        st.none()
        | st.booleans()
        # the numbers the core writes back itself (the others go to the steps)
        | st.integers(-(2**63), 2**64 - 1).filter(lambda n: fjordgate_native.number_text(str(n)))
        | st.floats(allow_nan=False, allow_infinity=False).filter(
            lambda x: (
                fjordgate_native.number_text(orjson.dumps(x).decode())
                and fjordgate_native.number_text(json.dumps(x))
            )
        )
        | _NAME_TEXT,
    ),
    st.sampled_from([orjson.dumps, lambda e: json.dumps(e, ensure_ascii=False, indent=1).encode()]),
)
def test_every_flat_object_without_escapes_is_parsed(event: dict[str, Any], dumps: Any) -> None:
    # Not vacuous: a flat event as a producer writes it, the core takes, value by value.
    raw = dumps(event)
    members = fjordgate_native.flat_members(raw)
    assert members is not None
    assert {name: orjson.loads(value) for name, value in members} == orjson.loads(raw)


@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",))))
def test_strings_are_written_as_orjson_writes_them(text: str) -> None:
    assert fjordgate_native.json_str(text) == orjson.dumps(text)


# Runs of plain text with the characters that need escaping between them, at every
# offset of the eight-byte words the core checks at once.
_ESCAPED_OR_NOT = st.sampled_from(
    ['"', "\\", "\x00", "\x08", "\x1f", " ", "\x7f", "é", "\u2028", "😀", "/"]
)


@given(st.lists(st.one_of(st.integers(0, 17).map(lambda n: "a" * n), _ESCAPED_OR_NOT)))
def test_long_strings_are_written_as_orjson_writes_them(parts: list[str]) -> None:
    text = "".join(parts)
    assert fjordgate_native.json_str(text) == orjson.dumps(text)


@given(st.data())
def test_spans_are_redacted_as_the_python_redactor_does(data: st.DataObject) -> None:
    text = data.draw(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",))))
    spans = st.tuples(st.integers(0, len(text) + 3), st.integers(-2, 6), st.sampled_from(PII_TYPES))
    findings = [Finding(s, s + n, t) for s, n, t in data.draw(st.lists(spans, max_size=5))]
    if any(f.end < f.start for f in findings):  # no detector's: left to the Python redactor
        assert fjordgate_native.redact_spans(text, findings) is None
    else:
        assert fjordgate_native.redact_spans(text, findings) == redact(text, findings)


def test_span_redaction_examples() -> None:
    text = "Ring Åse på +47 91234567 eller åse@example.no."
    findings = [Finding(12, 24, "phone"), Finding(31, 45, "email"), Finding(13, 15, "phone")]
    assert fjordgate_native.redact_spans(text, findings) == "Ring Åse på [phone] eller [email]."


@given(st.from_regex(r"\A-?(0|[1-9][0-9]{0,19})(\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?\Z"))
def test_a_number_token_it_takes_is_written_as_orjson_writes_the_number(token: str) -> None:
    text = fjordgate_native.number_text(token)
    if text is not None:
        assert text.encode() == orjson.dumps(orjson.loads(token)), token


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_a_float_it_takes_is_written_as_orjson_writes_it(x: float) -> None:
    text = fjordgate_native.float_text(x)
    if text is not None:
        assert text.encode() == orjson.dumps(x)


def test_the_number_rules_take_the_common_forms() -> None:
    # Not vacuous: the forms events carry are taken, not all left to the steps.
    assert fjordgate_native.number_text("87.30") == "87.3"
    assert fjordgate_native.number_text("-12") == "-12"
    assert fjordgate_native.number_text("0.0001") == "0.0001"
    assert fjordgate_native.number_text("1e5") is None
    assert fjordgate_native.number_text("-0") is None
    assert fjordgate_native.float_text(66.8) == "66.8"
    assert fjordgate_native.float_text(30.0) == "30.0"


@given(
    st.from_regex(
        r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,7})?(Z|[+-][0-9]{2}:[0-9]{2}|[+-][0-9]{4})?\Z"
    )
    | st.datetimes(timezones=st.timezones()).map(datetime.isoformat)
)
def test_an_event_time_it_takes_is_one_python_takes_with_a_zone(text: str) -> None:
    if fjordgate_native.iso_with_zone(text):
        assert datetime.fromisoformat(text).tzinfo is not None, text


def test_the_time_rule_takes_the_common_forms() -> None:
    assert fjordgate_native.iso_with_zone("2026-11-25T12:15:51.002Z")
    assert fjordgate_native.iso_with_zone("2024-02-29T23:59:59+01:00")
    assert not fjordgate_native.iso_with_zone("2023-02-29T23:59:59Z")
    assert not fjordgate_native.iso_with_zone("2026-11-25T12:15:51")


# -- JSON-array bodies split into their events' bytes (fjordgate_native.split_array) ----------

_MORE_PIECES = st.sampled_from(
    [
        '"\\u00e5"', '"\\ud83d\\ude97"', '"\\ud800"', '"\\uZZZZ"', '"\\/"', '"\\q"', "1e400",
        "1e99", "-1.5E-07", "1" * 320, '{"a":[1,{"b":null}]}', '[[[]]]', "\ufeff", "\x00",
    ]
)  # fmt: skip


@st.composite
def _near_batch(draw: st.DrawFn) -> bytes:
    """A JSON array of near-JSON objects, perhaps with a piece changed anywhere."""
    parts = draw(st.lists(_near_json().map(lambda b: b.decode()), max_size=5))
    ws = draw(_WS)
    text = ws + "[" + ws + ("," + ws).join(parts) + ws + "]" + draw(_WS)
    if draw(st.integers(0, 2)) == 0:
        at = draw(st.integers(0, len(text)))
        piece = draw(_SYNTAX_PIECES | _VALUE_PIECES | _MORE_PIECES)
        text = text[:at] + piece + text[at + draw(st.integers(0, 2)) :]
    return text.encode()


@settings(max_examples=3000)
@given(_near_batch())
def test_a_body_is_split_only_when_orjson_reads_it_as_an_array_of_those_objects(
    body: bytes,
) -> None:
    events = fjordgate_native.split_array(body)
    if events is None:
        return  # parsed by orjson, as before: it decides what is invalid
    parsed = orjson.loads(body)  # must not raise: the split vouched for the body
    assert isinstance(parsed, list)
    assert [orjson.loads(e) for e in events] == parsed
    assert all(isinstance(e, dict) for e in parsed)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(_event().filter(_safe), max_size=8),
    st.sampled_from(
        [
            orjson.dumps,
            lambda v: json.dumps(v).encode(),  # \u escapes, spaces
            lambda v: json.dumps(v, ensure_ascii=False, indent=2).encode(),
        ]
    ),
)
def test_every_batch_of_events_is_split_into_the_events_as_written(
    events: list[dict[str, Any]], dumps: Any
) -> None:
    body = dumps(events)
    split = fjordgate_native.split_array(body)
    assert split is not None  # not vacuous: what producers send takes the compiled path
    assert [orjson.loads(e) for e in split] == orjson.loads(body)
    for raw in split:  # each exactly as written: a slice of the body
        assert raw in body


@pytest.mark.parametrize(
    "body",
    [
        b"{}", b"[1]", b'[{"a":1}, 2]', b'[{"a":"\\ud800"}]', b'[{"a":1e400}]', b"\xef\xbb\xbf[]",
        b'[{"a":"\xff"}]', b"[{}", b'[{"a":1}]x', b"[" * 600 + b"]" * 600,
        b'[{"a":' * 600 + b"1" + b"}" * 600 + b"]",
    ],
    ids=lambda b: repr(b[:24]),
)  # fmt: skip
def test_what_the_split_declines(body: bytes) -> None:
    assert fjordgate_native.split_array(body) is None


def test_the_ingest_makes_the_same_records_from_a_split_body(tmp_path: Path) -> None:
    fast, reference = _pair(_policy())
    generator = TrafficGenerator(seed=3)
    events = [generator.event(datetime(2026, 11, 25, 12, 0, tzinfo=UTC)) for _ in range(200)]
    for i, event in enumerate(events):
        event["event_id"] = f"split-{i}"
    events[7]["note"] = "Eier 010190 12345 ringte"  # not a valid id: kept as it is
    events[9]["speed"] = "fast"  # the wrong type: rejected
    body = orjson.dumps(events)
    outcomes = []
    for split in (True, False):
        for pipeline in (fast, reference):
            items = native.split_array(body) if split else orjson.loads(body)
            assert items is not None and len(items) == 200
            records = native.make_records(STREAM, items)
            pipeline.run_batch(records)
            # (No tag dicts compared: the core, which finishes most, keeps them to itself.)
            outcomes.append([_outcome(r, False, False) for r in records])
    # The HTTP path's own: the records made by the core as it finishes them.
    made = fast.run_array(body, "http", 10_000)
    assert made is not None and made[0] == 200 and made[1] is not None
    records = made[1]
    assert [r.index for r in records] == list(range(200))
    assert all(type(r) is EventRecord and r.stream == STREAM for r in records)
    outcomes.append([_outcome(r, False, False) for r in records])
    assert outcomes[0] == outcomes[1] == outcomes[2] == outcomes[3] == outcomes[4]
    statuses = [o[0] for o in outcomes[0]]
    assert statuses.count("pending") == 199 and statuses[9] == "rejected", statuses
    # What the core finished holds no bytes of the event; what the steps ran, as written.
    assert records[9].raw == orjson.dumps(events[9])
    assert all(r.raw is None and r.event is None for r in records if r.index != 9)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=st.lists(_event().filter(_safe), min_size=1, max_size=12),
    form=st.sampled_from(["orjson", "escaped", "duplicate"]),
)
def test_a_body_s_records_made_by_the_core_end_as_split_records_do(
    events: list[dict[str, Any]], form: str
) -> None:
    fast, reference = _pair(_policy())
    for i, event in enumerate(events):
        event.setdefault("event_id", f"gen-{i}")
    body = b"[" + b",".join(_raw(e, form) for e in events) + b"]"
    outcomes = []
    for _ in range(2):  # the second time every cache is warm
        made = fast.run_array(body, "http", len(events))
        items = native.split_array(body)
        assert (made is None) == (items is None)
        if made is None:
            continue
        assert made[0] == len(events) and made[1] is not None
        records = native.make_records(STREAM, items)  # type: ignore[arg-type]
        reference.run_batch(records)
        outcomes = [[_outcome(r, False, False) for r in rs] for rs in (made[1], records)]
        assert outcomes[0] == outcomes[1]
    assert fast.run_array(body, "http", len(events) - 1) == (len(events), None)


def test_the_http_path_refuses_what_parse_body_refuses_and_says_alike() -> None:
    from gateway.errors import BatchError
    from gateway.ingest import Ingest
    from gateway.metrics import GatewayMetrics

    fast, _ = _pair(_policy())
    pipelines = type("Pipelines", (), {"get": lambda self, s: fast if s == STREAM else None})()
    ingest = Ingest(pipelines, None, GatewayMetrics(), max_events_per_batch=3)  # type: ignore[arg-type]
    traffic = TrafficGenerator(seed=3).event(datetime(2026, 11, 25, 12, 0, tzinfo=UTC))
    event = orjson.dumps({**traffic, "event_id": "e"})
    for body, media in [
        (b"[" + b",".join([event] * 4) + b"]", "application/json"),  # too many
        (b"[]", "application/json"),  # empty
        (b" [ ] ", "application/json; charset=utf-8"),
        (b"{", "application/json"),  # not JSON
        (b"[" + event + b"]", "text/plain"),  # not a media type it takes
    ]:
        errors = []
        for call in (ingest.prepare, ingest.parse_body):
            with pytest.raises(BatchError) as raised:
                call(STREAM, body, media)
            errors.append((raised.value.status, raised.value.code, raised.value.message))
        assert errors[0] == errors[1], body
    for body in (b"[1, 2]", event, b"[" + event + b"]"):  # each value refused, one object
        outcomes = []
        for fused in (True, False):
            if fused:
                records = ingest.prepare(STREAM, body, "application/json")
            else:
                records = ingest.parse_body(STREAM, body, "application/json")
                ingest.run_pipeline(STREAM, records)
            outcomes.append([_outcome(r, False, False) for r in records])
        assert outcomes[0] == outcomes[1], body
    assert [o[0] for o in outcomes[0]] == ["pending"]  # the core's: finished, to commit


def test_the_kafka_ingress_knows_a_record_again_whoever_made_it() -> None:
    """A reprocessed message's audit record is not appended twice: the first time the
    steps may have made it (a dict naming `SharedMembers`), the second time the core (a
    `CanonicalRecord`), and the two are the same record as the log writes them."""
    from gateway.kafka_ingress import _same_record

    fast, reference = _pair(_policy(), source="kafka")
    event = TrafficGenerator(seed=31).batch(1)[0]
    event.pop("note", None)  # no free text: the decision is memoised, its record shared
    made = []
    for pipeline in (reference, fast, fast):  # the core finishes the second one itself
        record = EventRecord(STREAM, 0, raw=orjson.dumps(event))
        pipeline.run_batch([record])
        made.append(record.audit)
    by_steps, by_core = made[0], made[2]
    assert type(by_steps) is dict and type(by_core) is fjordgate_native.Staged
    assert by_steps["shared"] == by_core.shared and by_steps != by_core
    assert _same_record(by_steps, by_core) and _same_record(by_core, by_steps)
    other = dict(by_steps, event_id="another")
    assert not _same_record(other, by_core) and not _same_record(None, by_core)


# -- the batch's answer: per-event results written by the compiled module


def _ingest() -> Any:
    from gateway.ingest import Ingest
    from gateway.metrics import GatewayMetrics

    # results() reads only the pipelines' hash, the metrics and the records.
    pipelines = type("Pipelines", (), {"content_hash": "sha256:policy"})()
    return Ingest(pipelines, None, GatewayMetrics())  # type: ignore[arg-type]


_texts = st.text(st.characters(codec="utf-8"), max_size=12)
_pairs = st.lists(st.tuples(_texts, _texts), max_size=4)


@st.composite
def _answered(draw: st.DrawFn) -> EventRecord:
    from gateway.errors import EventRejected

    record = EventRecord(STREAM, draw(st.integers(0, 10**12)))
    record.event_id = draw(st.none() | _texts)
    if draw(st.booleans()):
        code = draw(st.sampled_from(["denied", "schema", "invalid_json"]) | _texts)
        record.rejected = EventRejected(code, draw(_texts), field=draw(st.none() | _texts))
        record.status = "rejected"
    else:
        record.status = draw(st.sampled_from(["accepted", "duplicate", "pending"]) | _texts)
        pairs = draw(_pairs)
        record.transformed = tuple(pairs) if draw(st.booleans()) else pairs
    return record


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_answered(), max_size=8))
def test_results_are_written_as_the_python_answer_encodes_them(records: list[EventRecord]) -> None:
    counts, expected = _ingest().results_python(records)
    written = native.results_json(records)
    assert written is not None
    data, by_outcome = written
    assert data == orjson.dumps(expected)
    assert by_outcome == dict(counts)


@pytest.mark.parametrize(
    "spoil",
    [
        lambda r: setattr(r, "transformed", [("path", 1)]),
        lambda r: setattr(r, "transformed", [("path",)]),
        lambda r: setattr(r, "transformed", {"path": "keep"}),
        lambda r: setattr(r, "event_id", 7),
        lambda r: setattr(r, "index", "0"),
        lambda r: setattr(r, "status", None),
    ],
)
def test_results_it_does_not_write_are_left_to_python(spoil: Any) -> None:
    records = [EventRecord(STREAM, 0), EventRecord(STREAM, 1)]
    spoil(records[1])
    assert native.results_json(records) is None


def test_a_record_of_another_class_is_answered_in_python() -> None:
    class Other(EventRecord):
        __slots__ = ()

    assert native.results_json([EventRecord(STREAM, 0), Other(STREAM, 1)]) is None


def test_a_served_batchs_answer_is_the_same_with_and_without_the_compiled_module(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pipeline, _ = _pair(_policy())
    events = TrafficGenerator(seed=11).batch(300)
    events[5]["speed"] = "fast"  # a schema rejection among them
    records = [EventRecord(STREAM, i, raw=orjson.dumps(e)) for i, e in enumerate(events)]
    pipeline.run_batch(records)
    assert any(r.transformed for r in records)
    for i, record in enumerate(records):
        if record.rejected is None:
            record.status = "duplicate" if i % 7 == 0 else "accepted"
    assert any(r.rejected is not None for r in records)
    compiled = _ingest().results(STREAM, records)
    monkeypatch.setenv("FJORDGATE_NATIVE", "0")
    python = _ingest().results(STREAM, records)
    assert orjson.dumps(compiled.body) == orjson.dumps(python.body)
    assert compiled.status == python.status == 200


def _core_records(seed: int, count: int) -> list[EventRecord]:
    """Records of synthetic events that the core finished (after `_run_both` held its
    records to the steps' on the same events)."""
    fast, reference = _pair(_policy())
    raws = [orjson.dumps(e) for e in TrafficGenerator(seed=seed).batch(count)]
    assert _run_both(fast, reference, list(raws)) == count  # the core learns the shapes
    records = native.make_records(STREAM, raws)
    fast.run_batch(records)
    return records


def test_the_core_s_message_reads_as_an_outgoing_message_and_shows_no_event() -> None:
    # (`_run_both` compares its fields with the steps' OutgoingMessage.)
    records = _core_records(17, 50)
    made = records[0].message
    assert type(made) is fjordgate_native.Staged
    # Each field made when read: a new list each time.
    assert made.headers == made.headers and made.headers is not made.headers
    assert made.headers[0] == ("fjordgate-event-id", records[0].event_id)
    assert [name for name, _ in made.headers] == [
        "fjordgate-event-id",
        "fjordgate-policy",
        "fjordgate-stream",
    ]
    text = repr(made)
    assert made.event_id in text and str(len(made.value)) in text
    assert made.key is not None and made.key.decode() not in text
    assert b"driver_id" in made.value and "driver_id" not in text


def test_the_core_s_audit_parts_read_as_bytes_and_chain_as_the_python_loop_writes() -> None:
    from types import SimpleNamespace

    from audit.log import AuditLog
    from audit.merkle import MerkleFrontier

    records = _core_records(19, 120)
    audits: list[Any] = [r.audit for r in records]
    assert all(type(r.audit) is fjordgate_native.Staged and r.audit is r.message for r in records)
    # Read as a CanonicalRecord is: its parts a tuple of bytes, joined its body.
    parts = audits[0].parts
    assert type(parts) is tuple and len(parts) >= 3 and all(type(p) is bytes for p in parts)
    assert b"".join(parts) == audits[0].body
    cuts = audits[0].cuts
    assert type(cuts) is tuple and list(cuts) == sorted(cuts) and cuts[-1] <= len(parts)
    equal = CanonicalRecord(parts, audits[0].cuts, audits[0].shared)
    assert equal == audits[0] and equal == decoded(audits[0])
    record = decoded(audits[0])
    assert record["event_id"] == records[0].event_id and record["pseudonyms"]
    assert not any(token in repr(audits[0]) for token in record["pseudonyms"].values())
    # Chained in place: the same lines as the log's Python loop writes for the records.
    ts, prev = "2026-12-04T22:00:00.000001Z", "ab" * 32
    compiled = fjordgate_native.chain_records(audits, 0, ts, prev, [], canonical=CanonicalRecord)
    assert compiled is not None
    out = bytearray()
    state = SimpleNamespace(_frontier=MerkleFrontier(), _prev=prev)
    receipts = AuditLog._encode(state, audits, 0, ts, out)  # type: ignore[arg-type]
    assert compiled[0] == bytes(out)
    assert compiled[1] == "".join(r.leaf_hash for r in receipts).encode()  # type: ignore[union-attr]
