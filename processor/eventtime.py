"""Reading an event's time: ISO 8601 strings or epoch milliseconds, to epoch ms."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from processor.errors import EventDecodeError

_fromiso = datetime.fromisoformat
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_epoch_ms(value: Any) -> int:
    """Epoch milliseconds from an int/float (ms) or an ISO 8601 string (naive = UTC)."""
    if type(value) is int:
        return value
    if isinstance(value, str):
        try:
            dt = _fromiso(value)
        except ValueError:
            raise EventDecodeError(
                "event time is not ISO 8601 (e.g. 2026-11-25T06:40:00.123Z) nor epoch ms"
            ) from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        # Integer arithmetic: float seconds would round some milliseconds wrongly.
        delta = dt - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
    if isinstance(value, float) and value == value and not isinstance(value, bool):
        return int(value)
    raise EventDecodeError("event time is missing or not a number nor an ISO 8601 string")
