"""Minimising transforms that need no key: redaction and generalisation.

`redact` replaces a whole value, or only the spans a detector found in it.
`generalise` coarsens a value so it stays useful for statistics: a birth date
becomes its year, an IP address its network prefix, coordinates a grid cell.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

from gateway.pii.errors import GeneraliseError
from gateway.pii.findings import Finding

REDACTED: Final = "[REDACTED]"

GeneraliseKind = Literal["birth_date", "ip_address", "coordinates"]

_ISO_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:[T ].*)?")
_NORWEGIAN_DATE = re.compile(r"(\d{1,2})\.(\d{1,2})\.(\d{4})")
_COORDINATES = re.compile(r"\s*(-?\d+(?:\.\d+)?)\s*[,;]\s*(-?\d+(?:\.\d+)?)\s*")


def redact(
    value: str, findings: Sequence[Finding] | None = None, *, placeholder: str | None = None
) -> str:
    """Redact a value.

    Without findings the whole value is replaced by `[REDACTED]` (or
    `placeholder`). With findings (from `Detector.scan(value)`) only their
    spans are replaced, each by `[<type>]` (or `placeholder`), so free text
    keeps its shape. Overlapping findings are merged into the first.
    """
    if findings is None:
        return REDACTED if placeholder is None else placeholder
    out: list[str] = []
    cursor = 0
    for finding in sorted(findings, key=lambda f: (f.start, -f.end)):
        if finding.start < cursor:
            continue
        out.append(value[cursor : finding.start])
        out.append(f"[{finding.type}]" if placeholder is None else placeholder)
        cursor = finding.end
    out.append(value[cursor:])
    return "".join(out)


def generalise(
    value: Any,
    kind: GeneraliseKind,
    *,
    ipv4_prefix: int = 24,
    ipv6_prefix: int = 48,
    grid_degrees: float = 0.01,
) -> Any:
    """Coarsen `value` as `kind` says.

    - `birth_date`: a date, datetime, ISO date (`1990-05-17`) or Norwegian date
      (`17.05.1990`) → its year as an int.
    - `ip_address`: an IPv4/IPv6 address → its network in CIDR form
      (`/24` and `/48` by default), e.g. `192.0.2.0/24`.
    - `coordinates`: `"lat,lon"`, a `(lat, lon)` pair or a mapping with
      `lat`/`lon` → the south-west corner of its grid cell (`grid_degrees`,
      0.01° ≈ 1.1 km north-south by default), in the same shape as given.
    """
    if kind == "birth_date":
        return _birth_year(value)
    if kind == "ip_address":
        return _ip_network(value, ipv4_prefix, ipv6_prefix)
    if kind == "coordinates":
        return _grid_cell(value, grid_degrees)
    raise GeneraliseError(
        f"unknown generalisation {kind!r}; use birth_date, ip_address or coordinates"
    )


def _birth_year(value: Any) -> int:
    if isinstance(value, dt.date):  # datetime is a date too
        return value.year
    if isinstance(value, str):
        text = value.strip()
        iso = _ISO_DATE.fullmatch(text)
        if iso:
            year, month, day = int(iso[1]), int(iso[2]), int(iso[3])
        else:
            nor = _NORWEGIAN_DATE.fullmatch(text)
            if nor is None:
                raise GeneraliseError(
                    "birth_date: expected YYYY-MM-DD or DD.MM.YYYY (value not shown)"
                )
            day, month, year = int(nor[1]), int(nor[2]), int(nor[3])
        try:
            return dt.date(year, month, day).year
        except ValueError:
            raise GeneraliseError("birth_date: not a calendar date (value not shown)") from None
    raise GeneraliseError(f"birth_date: cannot generalise a {type(value).__name__}")


def _ip_network(value: Any, ipv4_prefix: int, ipv6_prefix: int) -> str:
    if not isinstance(value, str):
        raise GeneraliseError(f"ip_address: cannot generalise a {type(value).__name__}")
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        raise GeneraliseError("ip_address: not an IPv4 or IPv6 address (value not shown)") from None
    prefix = ipv4_prefix if address.version == 4 else ipv6_prefix
    if not 0 <= prefix <= address.max_prefixlen:
        raise GeneraliseError(
            f"ip_address: prefix /{prefix} is out of range for IPv{address.version}"
        )
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def _snap(coordinate: float, grid: float) -> float:
    # Floor to the cell, then round away float noise so equal cells compare equal.
    decimals = max(0, -math.floor(math.log10(grid))) + 2
    return round(math.floor(coordinate / grid + 1e-9) * grid, decimals)


def _grid_cell(value: Any, grid: float) -> Any:
    if not grid > 0:
        raise GeneraliseError("coordinates: grid_degrees must be positive")
    if isinstance(value, str):
        match = _COORDINATES.fullmatch(value)
        if match is None:
            raise GeneraliseError("coordinates: expected 'lat,lon' (value not shown)")
        lat, lon = float(match[1]), float(match[2])
        _check_range(lat, lon)
        return f"{_snap(lat, grid)},{_snap(lon, grid)}"
    if isinstance(value, Mapping):
        try:
            lat, lon = float(value["lat"]), float(value["lon"])
        except (KeyError, TypeError, ValueError):
            raise GeneraliseError("coordinates: a mapping needs numeric 'lat' and 'lon'") from None
        _check_range(lat, lon)
        return {**value, "lat": _snap(lat, grid), "lon": _snap(lon, grid)}
    if isinstance(value, Sequence) and len(value) == 2:
        try:
            lat, lon = float(value[0]), float(value[1])
        except (TypeError, ValueError):
            raise GeneraliseError("coordinates: a pair needs two numbers") from None
        _check_range(lat, lon)
        return (_snap(lat, grid), _snap(lon, grid))
    raise GeneraliseError(f"coordinates: cannot generalise a {type(value).__name__}")


def _check_range(lat: float, lon: float) -> None:
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise GeneraliseError("coordinates: latitude or longitude out of range")
