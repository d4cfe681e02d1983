"""The compiled encode-and-chain loop (`fjordgate_native.chain_records`) against the log's
Python loop (`AuditLog._encode`), its reference: the same lines, leaf hashes and Merkle
frontier, byte for byte; and whatever it does not write as orjson does, it declines.
Records already encoded (`CanonicalRecord`) are written as their mappings would be."""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit import AuditLog, CanonicalRecord, RecordRejected, SigningKey, verify_log
from audit.canonical import canonical_json
from audit.log import AuditReceipt
from audit.merkle import MerkleFrontier
from audit.segments import list_segments

fjordgate_native = pytest.importorskip("fjordgate_native")
chain_records = fjordgate_native.chain_records

TS = "2026-12-04T06:10:00.123456Z"


def python_chain(
    records: list[dict[str, Any]], seq: int, prev: str, frontier: MerkleFrontier
) -> tuple[bytes, bytes, list[bytes]]:
    """The log's own loop, on a stand-in for the log's writer state."""
    state = SimpleNamespace(_frontier=frontier, _prev=prev)
    out = bytearray()
    results = AuditLog._encode(state, records, seq, TS, out)  # type: ignore[arg-type]
    assert all(isinstance(r, AuditReceipt) for r in results), results
    assert [r.seq for r in results] == list(range(seq, seq + len(records)))  # type: ignore[union-attr]
    # The leaf hashes as the compiled loop gives them: in hex, one after the other.
    hexes = "".join(r.leaf_hash for r in results).encode()  # type: ignore[union-attr]
    return bytes(out), hexes, frontier.subtrees()


def frontier_of(size: int) -> MerkleFrontier:
    frontier = MerkleFrontier()
    for n in range(size):
        frontier.append(hashlib.sha256(n.to_bytes(8, "big")).digest())
    return frontier


def both(records: list[dict[str, Any]], size: int, prev: str) -> tuple[Any, Any]:
    frontier = frontier_of(size)
    native = chain_records(records, size, TS, prev, frontier.subtrees())
    return native, python_chain(records, size, prev, frontier)


# Values orjson writes: every JSON type, strings with escapes and non-ASCII (keys too),
# integers and floats across their ranges (the encoder declines what it cannot reproduce).
keys = st.text(max_size=8)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.floats(min_value=-1e9, max_value=1e9).map(lambda x: round(x, 3))
    | st.text()
)
fragments = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3), max_leaves=5).map(
    lambda v: orjson.Fragment(orjson.dumps(v, option=orjson.OPT_SORT_KEYS))
)
values = st.recursive(
    scalars | fragments,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(keys, inner, max_size=4)
    ),
    max_leaves=20,
)
records_st = st.lists(
    st.dictionaries(
        keys.filter(lambda k: k not in {"seq", "ts", "prev", "shared"}), values, max_size=6
    ).map(lambda d: {**d, "type": "decision"}),
    min_size=1,
    max_size=5,
)


@settings(max_examples=400, deadline=None)
@given(records_st, st.integers(min_value=0, max_value=70), st.binary(min_size=32, max_size=32))
def test_the_compiled_loop_writes_and_chains_as_the_python_loop(
    records: list[dict[str, Any]], size: int, seed: bytes
) -> None:
    native, python = both(records, size, seed.hex())
    if native is None:
        _assert_declined_for_a_float(records)
        return
    assert (native[0], native[1], native[2]) == python


def _assert_declined_for_a_float(records: list[dict[str, Any]]) -> None:
    """A group is declined only for what the loop cannot reproduce: floats outside the
    range it writes."""
    unwritable = [v for v in _leaves(records) if isinstance(v, float)]
    assert any(fjordgate_native.float_text(v) is None for v in unwritable), records


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    if isinstance(value, list | tuple):
        return [leaf for v in value for leaf in _leaves(v)]
    return [value]


def test_a_gateway_decision_group_is_written_alike() -> None:
    record = {
        "type": "decision",
        "event_id": "0b27b4c9109a-1",
        "fields": [
            {"action": "pseudonymise", "path": "driver_id", "pii_class": "fodselsnummer"},
            {"action": "allow", "path": "speed", "pii_class": "none"},
        ],
        "pseudonyms": {"driver_id": "ps1:kd486d728551d:n-I76wadRgoxE8wb_CFbzrPaEF44loDEPpLhiQ"},
        "rule_ids": ["streams.norway-traffic.fields.driver_id", "strict.loopback"],
        "outcome": "allow",
        "speed_limit": 80.5,
        "count": 3,
        "ok": True,
        "note": None,
        "text": 'quote " backslash \\ newline \n tab \t bell \x07 æøå ✓ 🚗',
        # As the gateway's audit step pre-encodes them (orjson copies fragments as they are).
        "reasons": orjson.Fragment(b'["a reason"]'),
        "more": orjson.Fragment('{"b":[1,2]}'),
    }
    records = [dict(record, event_id=f"e-{n}") for n in range(300)]
    native, python = both(records, 1_000, "0" * 64)
    assert native is not None
    assert (native[0], native[1], native[2]) == python
    lines = native[0].splitlines()
    assert len(lines) == 300
    assert orjson.loads(lines[1])["prev"] == native[1][:64].decode()


@pytest.mark.parametrize(
    "value",
    [
        2**64,  # beyond 64 bits: orjson refuses it
        -(2**63) - 1,
        1e300,  # a float outside the range the encoder reproduces
        float("nan"),
        {1: "a non-string key"},
        "\ud800",  # a lone surrogate
        {"a set"},
        b"bytes",
        type("Sub", (str,), {})("a str subclass"),
        type("SubD", (dict,), {})(a=1),
    ],
    ids=repr,
)
def test_it_declines_what_it_does_not_write_as_orjson_does(value: Any) -> None:
    frontier = frontier_of(3)
    records = [{"type": "decision", "ok": 1}, {"type": "decision", "value": value}]
    assert chain_records(records, 3, TS, "0" * 64, frontier.subtrees()) is None
    assert (
        chain_records([{"type": "decision", "x": [value]}], 3, TS, "0" * 64, frontier.subtrees())
        is None
    )


def test_it_declines_records_that_are_not_plain_dicts_or_carry_reserved_fields() -> None:
    frontier = frontier_of(1)
    for record in (
        {"type": "decision", "seq": 4},
        {"type": "d", "prev": "x"},
        {"type": "d", "ts": ""},
    ):
        assert chain_records([record], 1, TS, "0" * 64, frontier.subtrees()) is None
    deep: Any = "leaf"
    for _ in range(300):
        deep = [deep]
    assert (
        chain_records([{"type": "d", "deep": deep}], 1, TS, "0" * 64, frontier.subtrees()) is None
    )
    assert chain_records([{"type": "d"}], 1, TS, "short", frontier.subtrees()) is None
    assert chain_records([{"type": "d"}], 1, TS, '"' * 64, frontier.subtrees()) is None


def test_a_log_written_by_the_compiled_loop_verifies(tmp_path: Path) -> None:
    key = SigningKey.generate()
    log = AuditLog.open(tmp_path / "audit", key, tree_head_every=100)
    assert log._chain is not None and log._chain.func is chain_records  # type: ignore[attr-defined]
    receipts = log.append_many(
        [{"type": "decision", "event_id": f"e-{n}", "speed": 50.5 + n} for n in range(1_000)]
    )
    with pytest.raises(RecordRejected, match="not JSON-serialisable"):
        log.append_many([{"type": "decision", "huge": 2**70}])  # declined, then refused
    receipts += log.append_many([{"type": "decision", "after": True}])
    log.close()
    assert [r.seq for r in receipts] == list(range(1, 1_002))
    report = verify_log(tmp_path / "audit", [key.public_key])
    assert report.problem is None, report.problem
    assert report.records == 1_002  # log_created and ours


def test_receipts_of_the_compiled_loop_are_made_when_read(tmp_path: Path) -> None:
    log = AuditLog.open(tmp_path / "audit", SigningKey.generate())
    receipts = log.append_many([{"type": "decision", "n": n} for n in range(5)])
    single = log.append({"type": "decision", "n": 5})
    log.close()
    assert isinstance(single, AuditReceipt) and single.seq == 6
    assert len(receipts) == 5
    assert [r.seq for r in receipts] == [1, 2, 3, 4, 5]
    assert receipts[-1] == receipts[4] == AuditReceipt(5, receipts[4].leaf_hash)
    assert list(receipts[1:3]) == [receipts[1], receipts[2]]
    assert receipts == list(receipts) and receipts != list(receipts)[:4]
    more = [single]
    joined = receipts + more  # as with a list of receipts
    assert joined == [*receipts, single] and isinstance(joined, list)
    assert more + receipts == [single, *receipts]
    with pytest.raises(IndexError):
        receipts[5]
    lines = [
        line
        for _, path in list_segments(tmp_path / "audit")
        for line in path.read_bytes().splitlines()
        if b'"type":"decision"' in line
    ]
    assert [hashlib.sha256(b"\x00" + line).hexdigest() for line in lines] == [
        r.leaf_hash for r in [*receipts, single]
    ]


# -- records already encoded ------------------------------------------------------------------


def encoded_both(
    records: list[dict[str, Any]], size: int, prev: str
) -> tuple[Any, tuple[bytes, bytes, list[bytes]]]:
    """The compiled loop on the records encoded (every other one, so that a group mixes
    both kinds), beside the Python loop on the records as they are."""
    frontier = frontier_of(size)
    mixed = [CanonicalRecord.of(r) if n % 2 == 0 else r for n, r in enumerate(records)]
    native = chain_records(mixed, size, TS, prev, frontier.subtrees(), canonical=CanonicalRecord)
    return native, python_chain(records, size, prev, frontier_of(size))


@settings(max_examples=400, deadline=None)
@given(records_st, st.integers(min_value=0, max_value=70), st.binary(min_size=32, max_size=32))
def test_encoded_records_are_written_as_the_records_themselves(
    records: list[dict[str, Any]], size: int, seed: bytes
) -> None:
    # Keys sort before, between and after the spliced prev, seq and ts (and type is
    # always there): the cuts fall at the start, in the middle and at the end.
    native, python = encoded_both(records, size, seed.hex())
    if native is None:
        _assert_declined_for_a_float(records)
        return
    assert (native[0], native[1], native[2]) == python
    # And the Python loop, given them encoded, decodes them to the same lines.
    encoded = [CanonicalRecord.of(r) for r in records]
    assert python_chain(encoded, size, seed.hex(), frontier_of(size)) == python  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "record",
    [
        {"type": "d"},  # every cut before the first member
        {"type": "d", "a": 1},
        {"type": "d", "zz": [1, {"b": None}]},  # every cut between two members
        {"type": "d", "q": "x", "s": 2, "tt": 3.5, "u": {}},  # one cut between each pair
        {"type": "d", "prevx": 1, "seqa": 2, "tsz": 3, "a": "é ✓ \u2028"},
    ],
    ids=repr,
)
def test_a_record_encoded_splices_prev_seq_and_ts_in_order(record: dict[str, Any]) -> None:
    encoded = CanonicalRecord.of(record)
    assert encoded.body == canonical_json(record)
    native, python = encoded_both([record, record], 5, "ab" * 32)
    assert native is not None and (native[0], native[1], native[2]) == python
    first = native[0].splitlines()[0]
    assert first == canonical_json({**record, "seq": 5, "ts": TS, "prev": "ab" * 32})


def test_encoded_records_it_cannot_place_are_declined() -> None:
    good = CanonicalRecord.of({"type": "d", "a": 1, "z": 2})
    frontier = frontier_of(2)
    assert chain_records([good], 2, TS, "0" * 64, frontier.subtrees(), canonical=CanonicalRecord)
    # Without the class it is not a dict: declined.
    assert chain_records([good], 2, TS, "0" * 64, frontier.subtrees()) is None
    body = good.body  # {"a":1,"type":"d","z":2}
    for parts, cuts in [
        ((body,), (0, 1, 1)),  # before the brace
        ((body[:3], body[3:]), (1, 1, 1)),  # inside a member's key
        ((body[:5], body[5:]), (1, 1, 1)),  # between a name and its value
        ((body[:6], body[6:]), (1, 1, 0)),  # out of order
        ((body[:6], body[6:]), (1, 1, 3)),  # past the last part
        ((body[:6], "not bytes"), (1, 1, 1)),
        ((body[:-1],), (1, 1, 1)),  # no closing brace
    ]:
        bad = CanonicalRecord(parts, cuts)  # type: ignore[arg-type]
        assert (
            chain_records(
                [good, bad], 2, TS, "0" * 64, frontier.subtrees(), canonical=CanonicalRecord
            )
            is None
        ), (parts, cuts)


def test_an_encoded_record_reads_as_its_mapping_and_shows_nothing_of_it() -> None:
    record = {"type": "decision", "event_id": "e-1", "pseudonyms": {"driver_id": "ps1:k:x"}}
    encoded = CanonicalRecord.of({**record, "fields": orjson.Fragment(b'[{"path":"plate"}]')})
    assert encoded["event_id"] == "e-1" and encoded["fields"] == [{"path": "plate"}]
    assert len(encoded) == 4 and sorted(encoded) == ["event_id", "fields", "pseudonyms", "type"]
    assert encoded == {**record, "fields": [{"path": "plate"}]}
    assert encoded == CanonicalRecord.of({**record, "fields": [{"path": "plate"}]})
    assert encoded != CanonicalRecord.of(record) and encoded != record and encoded != "x"
    assert "e-1" not in repr(encoded) and "ps1" not in repr(encoded)
    for bad, message in [
        ({"event_id": "e"}, "non-empty string field 'type'"),
        ({"type": "decision", "seq": 1}, "the log assigns itself"),
        ({"type": "tree_head"}, "reserved"),
        ({"type": "decision", "x": {1, 2}}, "not JSON-serialisable"),
    ]:
        with pytest.raises(RecordRejected, match=message):
            CanonicalRecord.of(bad)


def test_a_log_of_encoded_records_verifies_and_holds_the_same_lines(tmp_path: Path) -> None:
    records = [
        {"type": "decision", "event_id": f"e-{n}", "speed": 50.5 + n, "zone": "Oslo"}
        for n in range(600)
    ]
    lines = []
    for name, group in [
        ("dicts", records),
        ("encoded", [CanonicalRecord.of(r) for r in records]),
    ]:
        key = SigningKey.generate()
        log = AuditLog.open(tmp_path / name, key, tree_head_every=100)
        receipts = log.append_many(group)
        log.close()
        assert [r.seq for r in receipts] == list(range(1, 601))
        report = verify_log(tmp_path / name, [key.public_key])
        assert report.problem is None, report.problem
        lines.append(
            [
                orjson.loads(line)
                for _, path in list_segments(tmp_path / name)
                for line in path.read_bytes().splitlines()
                if b'"type":"decision"' in line
            ]
        )
    # The same records (ts and prev differ between the two logs: time and keys).
    assert [{k: v for k, v in r.items() if k not in ("ts", "prev")} for r in lines[1]] == [
        {k: v for k, v in r.items() if k not in ("ts", "prev")} for r in lines[0]
    ]
