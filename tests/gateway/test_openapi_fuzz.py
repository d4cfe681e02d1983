"""schemathesis against the gateway's own OpenAPI document: no 5xx, clear 4xx, nothing echoed.

Both generation modes run: positive (requests the document says are valid)
and negative (requests that break it: wrong types, missing fields, bad
bodies), each bounded to a fixed number of examples per operation.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode

from tests.gateway.conftest import LocalGateway

EXAMPLES = 40


def _strings(value: Any) -> list[str]:
    """String values sent (field names are named in errors on purpose; values never)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _keys(value: Any) -> set[str]:
    """Field names sent, at any depth."""
    if isinstance(value, dict):
        return {str(k) for k in value} | {k for v in value.values() for k in _keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _keys(v)}
    return set()


def _check(case: Any, key: str) -> None:
    response = case.call(headers={"X-API-Key": key})
    case.validate_response(response, checks=[not_a_server_error])
    assert response.status_code < 500
    if response.status_code >= 400:
        body = orjson.loads(response.content)
        if response.status_code == 422:
            assert all(r["status"] == "rejected" for r in body["results"])
            messages = [r["error"]["message"] for r in body["results"]]
        else:
            assert body["error"]["code"] and body["error"]["message"]
            messages = [body["error"]["message"]]
        # A value inside a field name cannot be told from the name (hypothesis sent the
        # value "even" beside the field event_time, which an error names on purpose).
        names = _keys(case.body)
        sent = [
            s
            for s in (_strings(case.body) if case.body is not None else [])
            if len(s) >= 4 and not any(s in name for name in names)
        ]
        echoed = [s for s in sent for m in messages if s in m]
        assert echoed == [], "an error message echoed what was sent"


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_generated_request_gets_a_5xx_and_errors_echo_nothing(
    local_gateway: LocalGateway, mode: GenerationMode
) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", local_gateway.gateway.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert any(op.path.endswith("/events") for op in operations)
    for operation in operations:
        if mode is GenerationMode.NEGATIVE and not operation.path.endswith("/events"):
            continue  # nothing to break in an operation without parameters or body

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
        def run(case: Any) -> None:
            _check(case, local_gateway.key)

        run()
