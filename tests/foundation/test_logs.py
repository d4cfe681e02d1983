"""Logs never carry the values of fields marked personal."""

from __future__ import annotations

from gateway.logs import REDACTED, mark_personal, scrub_personal


def test_personal_fields_are_scrubbed_at_any_depth() -> None:
    event = {
        "event": "event rejected",
        "stream": "norway-traffic",
        "driver_id": "01019012345",
        "context": {"plate": "EL12345", "fields": ["region"], "nested": [{"email": "a@b.no"}]},
    }
    out = scrub_personal(None, "info", dict(event))
    assert out["driver_id"] == REDACTED
    assert out["context"]["plate"] == REDACTED
    assert out["context"]["nested"][0]["email"] == REDACTED
    assert out["stream"] == "norway-traffic"
    assert out["event"] == "event rejected"
    assert out["context"]["fields"] == ["region"]


def test_fields_marked_personal_by_a_policy_are_scrubbed() -> None:
    out = scrub_personal(None, "info", {"event": "x", "kundenummer": "123"})
    assert out["kundenummer"] == "123"
    mark_personal(["Kundenummer"])
    out = scrub_personal(None, "info", {"event": "x", "kundenummer": "123"})
    assert out["kundenummer"] == REDACTED


def test_a_terminal_traceback_shows_no_local_values() -> None:
    import sys

    from gateway.logs import console_renderer

    def fail(driver_id: str) -> None:
        raise ValueError("bad event")

    value = "".join(["010190", "12345"])  # a local's value, not in the source lines
    try:
        fail(value)
    except ValueError:
        exc_info = sys.exc_info()
    line = console_renderer(colors=False)(
        None, "error", {"event": "request_failed", "exc_info": exc_info}
    )
    assert "ValueError: bad event" in line and "test_logs.py" in line
    assert "01019012345" not in line
