"""The location package's errors: one hierarchy, each saying what, where and what to do."""

from __future__ import annotations

from pathlib import Path


class LocationError(Exception):
    """Base of every location, jurisdiction, geo-database and placement error."""


class MalformedAddress(LocationError, ValueError):
    """A string given as an IP address is not one."""

    def __init__(self, address: str, reason: str = "") -> None:
        self.address = address
        detail = f": {reason}" if reason else ""
        super().__init__(
            f"not an IP address: {address!r}{detail}; give a dotted IPv4 address "
            "(192.0.2.1) or an IPv6 address (2001:db8::1), or a host name to resolve"
        )


class UnresolvableHost(LocationError):
    """A host name has no A or AAAA record (or the resolver failed)."""

    def __init__(self, host: str, reason: str) -> None:
        self.host = host
        self.reason = reason
        super().__init__(
            f"cannot resolve host {host!r}: {reason}; check the name and this machine's DNS "
            "(/etc/resolv.conf, /etc/hosts)"
        )


class GeoDatabaseError(LocationError):
    """A geo database (country or ASN) is missing, unreadable, corrupt or of the wrong kind."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(
            f"geo database {self.path}: {reason}; run `fjordgate geo update` to fetch fresh "
            "databases, or point the configuration at valid MaxMind-format (.mmdb) files"
        )


class StaleGeoDatabase(GeoDatabaseError):
    """A geo database is older than the policy's freshness limit."""

    def __init__(self, path: Path | str, age_days: float, max_age_days: float) -> None:
        self.age_days = age_days
        self.max_age_days = max_age_days
        self.path = Path(path)
        self.reason = (
            f"built {age_days:.1f} days ago, older than the policy's limit of {max_age_days:g} days"
        )
        LocationError.__init__(
            self,
            f"geo database {self.path}: {self.reason}; run `fjordgate geo update` (and "
            "schedule it). If `fjordgate geo info` still shows old data afterwards, the "
            "published data itself is older than the limit: raise geoip.max_age_days in the "
            "policy after review, or supply fresher databases",
        )


class JurisdictionDataError(LocationError):
    """The network-owner → jurisdiction data file (or a policy override) is invalid."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(
            f"network-owner data {source}: {reason}; each owner needs a name, a two-letter "
            "jurisdiction and at least one of `asns` or `org_patterns`"
        )


class GeoUpdateError(LocationError):
    """Fetching or converting the geo data packages failed."""

    def __init__(self, step: str, reason: str) -> None:
        self.step = step
        self.reason = reason
        super().__init__(
            f"geo update failed while {step}: {reason}; check that `npm` is installed and the "
            "npm registry is reachable, then run `fjordgate geo update` again"
        )


class PlacementConfigError(LocationError):
    """The placement configuration given to `fjordgate doctor` is invalid."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"placement configuration {source}: {reason}")
