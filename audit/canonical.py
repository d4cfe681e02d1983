"""Canonical JSON (sorted keys, UTF-8, no whitespace) and the log's timestamp format."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

_OPTIONS = orjson.OPT_SORT_KEYS


def canonical_json(value: Any) -> bytes:
    """Encode `value` as canonical JSON bytes: keys sorted, no insignificant whitespace, UTF-8.

    Raises TypeError for anything JSON cannot hold (sets, bytes, non-string keys).
    """
    return orjson.dumps(value, option=_OPTIONS)


def parse_json(data: bytes | str) -> Any:
    """Parse JSON bytes (the inverse of `canonical_json`)."""
    return orjson.loads(data)


def utc_timestamp(moment: datetime | None = None) -> str:
    """RFC 3339 UTC time with microseconds and `Z`, e.g. 2026-11-25T06:40:00.123456Z."""
    moment = moment or datetime.now(UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_timestamp(text: str) -> datetime:
    """Parse an RFC 3339 timestamp (with `Z` or an offset; a date alone means midnight UTC)."""
    value = text.strip()
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
