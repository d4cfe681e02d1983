"""Dotted field paths over JSON objects, and the field-level minimising transforms.

`generalise` follows the policy's `Generalisation` options (numeric step,
time unit, prefix, IP prefix), which differ from `gateway.pii.generalise` kinds.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import math
from collections.abc import Mapping
from typing import Any

_MISSING = object()
MISSING = _MISSING  # what get_path returns for an absent path


def split_path(path: str) -> tuple[str, ...]:
    """`"a.b.c"` → `("a", "b", "c")`."""
    return tuple(path.split("."))


def nested_parts(path: str) -> tuple[str, ...] | None:
    """The parts of a dotted path, or None for a top-level field: the pipeline's steps
    look those up with a plain `dict.get`, without a path walk."""
    parts = split_path(path)
    return parts if len(parts) > 1 else None


def get_path(obj: Mapping[str, Any], parts: tuple[str, ...]) -> Any:
    """The value at `parts`, or the module's `MISSING` sentinel."""
    current: Any = obj
    for part in parts:
        # `type is dict` first: an ABC isinstance check costs more than the lookup.
        if type(current) is not dict and not isinstance(current, Mapping):
            return _MISSING
        current = current.get(part, _MISSING)
        if current is _MISSING:
            return _MISSING
    return current


def set_path(obj: dict[str, Any], parts: tuple[str, ...], value: Any) -> None:
    """Set the value at `parts`, creating intermediate objects."""
    current = obj
    for part in parts[:-1]:
        nxt = current.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            current[part] = nxt
        current = nxt
    current[parts[-1]] = value


def is_missing(value: Any) -> bool:
    """Whether `get_path` found nothing."""
    return value is _MISSING


def leaf_paths(obj: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of every leaf (non-object value) in `obj`."""
    out: list[str] = []
    for key, value in obj.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.extend(leaf_paths(value, path + "."))
        else:
            out.append(path)
    return out


_TIME_UNITS = ("minute", "hour", "day", "month", "year")


def _truncate_time(value: Any, unit: str) -> Any:
    if isinstance(value, bool):
        raise ValueError("not a timestamp")
    if isinstance(value, int | float):
        # epoch milliseconds when that large, else seconds; keep the input's unit
        scale = 1000 if abs(value) >= 1e11 else 1
        moment = dt.datetime.fromtimestamp(value / scale, tz=dt.UTC)
        truncated = _truncate_datetime(moment, unit)
        return int(truncated.timestamp() * scale)
    if isinstance(value, str):
        moment = dt.datetime.fromisoformat(value)
        return _truncate_datetime(moment, unit).isoformat()
    raise ValueError("not a timestamp")


def _truncate_datetime(moment: dt.datetime, unit: str) -> dt.datetime:
    if unit == "minute":
        return moment.replace(second=0, microsecond=0)
    if unit == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    if unit == "day":
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if unit == "month":
        return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return moment.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)


def generalise_value(value: Any, options: Any) -> Any:
    """Coarsen `value` by a policy `Generalisation` (exactly one option is set).

    Raises ValueError (without the value in its message) when the value does
    not have the shape the option needs.
    """
    if options is None:
        raise ValueError("generalise needs options in the policy")
    step = getattr(options, "numeric_step", None)
    if step is not None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("numeric_step needs a number")
        coarse = math.floor(value / step) * step
        return int(coarse) if float(coarse).is_integer() and isinstance(value, int) else coarse
    unit = getattr(options, "time_unit", None)
    if unit is not None:
        if unit not in _TIME_UNITS:
            raise ValueError(f"unknown time unit {unit!r}")
        return _truncate_time(value, unit)
    prefix = getattr(options, "keep_prefix", None)
    if prefix is not None:
        return str(value)[:prefix]
    ip_prefix = getattr(options, "ip_prefix_length", None)
    if ip_prefix is not None:
        address = ipaddress.ip_address(str(value))
        length = min(ip_prefix, address.max_prefixlen)
        return str(ipaddress.ip_network(f"{address}/{length}", strict=False))
    raise ValueError(
        "generalise needs one of numeric_step, time_unit, keep_prefix, ip_prefix_length"
    )
