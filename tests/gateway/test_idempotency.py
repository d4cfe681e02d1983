"""The event-id index: bounded, forgets the oldest ids first, exact within its bound.

Both implementations: the reference (gateway.idempotency) and the compiled one the
gateway uses (native/src/idindex.rs), which keeps fingerprints instead of strings.
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Callable
from typing import Any

import pytest

from gateway import native
from gateway.idempotency import EventIdIndex, IdIndex


@pytest.fixture
def compiled() -> Any:
    """The compiled module: CI requires it; a checkout without it skips these tests."""
    if native.fjordgate_native is None:
        if os.environ.get("CI"):
            pytest.fail("the compiled module fjordgate_native is not installed")
        pytest.skip("fjordgate_native is not built here")
    return native.fjordgate_native


@pytest.fixture(params=["python", "compiled"])
def make(request: pytest.FixtureRequest) -> Callable[[int], IdIndex]:
    if request.param == "python":
        return EventIdIndex
    index: Callable[[int], IdIndex] = request.getfixturevalue("compiled").EventIdIndex
    return index


def test_remembers_at_least_capacity_most_recent_ids(make: Callable[[int], IdIndex]) -> None:
    index = make(100)
    ids = [f"e{i}" for i in range(1_000)]
    for start in range(0, len(ids), 7):  # groups that straddle the generations' edges
        index.add_many(ids[start : start + 7])
        newest = ids[max(0, start + 7 - 100) : start + 7]
        assert all(event_id in index for event_id in newest)
        assert index.isdisjoint(["never-seen", None])
        assert not index.isdisjoint(["never-seen", newest[-1]])
    assert len(index) <= 2 * 100


def test_forgets_the_oldest_generation_when_the_current_one_is_full(
    make: Callable[[int], IdIndex],
) -> None:
    index = make(3)
    index.add_many(["a", "b", "c"])  # full: becomes the previous generation
    index.add_many(["d"])
    assert all(e in index for e in "abcd")
    index.add_many(["e", "f"])  # full again: a, b, c are forgotten
    assert [e for e in "abcdef" if e in index] == ["d", "e", "f"]
    assert index.isdisjoint(iter(["a", "b"]))  # any iterable
    index.add_many(iter(("g", "h", "i")))  # a generation reused after it was forgotten
    assert [e for e in "abcdefghi" if e in index] == ["g", "h", "i"]
    assert len(index) == 3


def test_capacity_must_be_positive(make: Callable[[int], IdIndex]) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        make(0)


def test_the_compiled_index_answers_as_the_reference_does(compiled: Any) -> None:
    # Random groups of new and repeated ids (unicode, empty, long), with lookups of
    # known, forgotten and never-seen ids between them.
    rng = random.Random(8)
    reference, index = EventIdIndex(500), compiled.EventIdIndex(500)
    pool = [f"id-{n}" for n in range(3_000)] + ["", "ø" * 3, "x" * 10_000, "\x00", "e\u0301"]
    # Lone surrogates (no JSON parser lets one through, but a str may hold one), and the
    # valid text whose UTF-8 is closest to the bytes surrogatepass writes for them.
    pool += ["\ud800", "\udfff", "a\ud800", "\ud800\udc00", "\U00010000"]
    for _ in range(400):
        group = rng.sample(pool, rng.randint(0, 40))
        probe = [*rng.sample(pool, 20), None]
        assert index.isdisjoint(probe) == reference.isdisjoint(probe)
        assert [p in index for p in probe] == [p in reference for p in probe]
        reference.add_many(group)
        index.add_many(group)
        assert len(index) == len(reference)
    assert 42 not in index and b"id-1" not in index  # not a str: never an id


def test_the_compiled_index_refuses_ids_that_are_not_str(compiled: Any) -> None:
    index = compiled.EventIdIndex(10)
    with pytest.raises(TypeError, match="event ids are str, not int"):
        index.add_many(["a", 7])
    with pytest.raises(TypeError, match="not bytes"):
        index.isdisjoint([b"a"])
    assert len(index) == 0  # a refused group adds nothing


def test_the_compiled_index_is_exact_under_concurrent_threads(compiled: Any) -> None:
    index = compiled.EventIdIndex(1_000_000)
    barrier = threading.Barrier(4)

    def add(lane: int) -> None:
        barrier.wait()
        for start in range(0, 20_000, 250):
            index.add_many([f"{lane}-{n}" for n in range(start, start + 250)])

    threads = [threading.Thread(target=add, args=(lane,)) for lane in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(index) == 80_000
    assert not index.isdisjoint(["3-19999"]) and index.isdisjoint(["4-0"])


def test_the_gateway_uses_the_compiled_index_unless_turned_off(
    compiled: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert type(native.event_id_index(10)) is compiled.EventIdIndex
    monkeypatch.setenv("FJORDGATE_NATIVE", "0")
    assert type(native.event_id_index(10)) is EventIdIndex
