"""The event-id index: bounded, forgets the oldest ids first, exact within its bound."""

from __future__ import annotations

import pytest

from gateway.idempotency import EventIdIndex


def test_remembers_at_least_capacity_most_recent_ids() -> None:
    index = EventIdIndex(capacity=100)
    ids = [f"e{i}" for i in range(1_000)]
    for start in range(0, len(ids), 7):  # groups that straddle the generations' edges
        index.add_many(ids[start : start + 7])
        newest = ids[max(0, start + 7 - 100) : start + 7]
        assert all(event_id in index for event_id in newest)
        assert index.isdisjoint(["never-seen", None])
        assert not index.isdisjoint(["never-seen", newest[-1]])
    assert len(index) <= 2 * 100


def test_forgets_the_oldest_generation_when_the_current_one_is_full() -> None:
    index = EventIdIndex(capacity=3)
    index.add_many(["a", "b", "c"])  # full: becomes the previous generation
    index.add_many(["d"])
    assert all(e in index for e in "abcd")
    index.add_many(["e", "f"])  # full again: a, b, c are forgotten
    assert [e for e in "abcdef" if e in index] == ["d", "e", "f"]
    assert index.isdisjoint(iter(["a", "b"]))  # any iterable


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        EventIdIndex(capacity=0)
