"""The benchmark's load generator reads the accepted count from the head of the gateway's
real answers, and never counts one wrongly (bench/gateway `accepted_count`)."""

from __future__ import annotations

import orjson
import pytest

from bench.gateway.__main__ import _ACCEPTED, accepted_count
from gateway.synthetic import TrafficGenerator
from tests.gateway.conftest import STREAM, LocalGateway

URL = f"/v1/streams/{STREAM}/events"


def test_the_count_read_from_the_head_is_the_answers_own(local_gateway: LocalGateway) -> None:
    events = TrafficGenerator(seed=31).batch(20)
    bad = dict(events[3], event_id="bench-answer-bad", speed="fast")  # rejected: a wrong type
    answers = []
    with local_gateway.client() as client:
        for body in (events[:10], events, [*events[10:], bad]):
            response = client.post(URL, json=body, headers=local_gateway.headers())
            assert response.status_code == 200
            answers.append(response.content)
    counts = [orjson.loads(a)["accepted"] for a in answers]
    assert counts == [10, 10, 0]  # the second repeats the first ten, the third all but `bad`
    assert orjson.loads(answers[2])["rejected"] == 1
    for answer, count in zip(answers, counts, strict=True):
        # The gateway's answers take the fast path: their head is read, not parsed whole.
        assert _ACCEPTED.match(answer) is not None
        assert accepted_count(answer) == count
        assert accepted_count(answer, check=True) == count


def test_an_answer_of_another_shape_is_parsed_whole() -> None:
    reordered = orjson.dumps({"accepted": 7, "stream": "s", "policy": "p", "results": []})
    assert accepted_count(reordered) == 7


def test_a_head_that_disagrees_with_the_body_is_an_error_when_checked() -> None:
    # Not an answer the gateway gives: a key repeated, which orjson reads as the last one.
    answer = b'{"stream":"s","policy":"p","accepted":5,"accepted":4,"results":[]}'
    assert accepted_count(answer) == 5
    with pytest.raises(RuntimeError, match="head says 5 accepted, its body 4"):
        accepted_count(answer, check=True)
