"""Network owner → home jurisdiction, from the reviewed data file and a policy's overrides."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from policies.location.errors import JurisdictionDataError

_COUNTRY = re.compile(r"^[A-Z]{2}$")


def default_owners_path() -> Path:
    """The reviewed data file shipped with fjordgate (policies/data/network-owners.yaml)."""
    return Path(str(resources.files("policies").joinpath("data/network-owners.yaml")))


@dataclass(frozen=True)
class NetworkOwner:
    """One organisation that runs networks, and the country whose law can compel it."""

    name: str
    jurisdiction: str
    asns: frozenset[int] = frozenset()
    org_patterns: tuple[str, ...] = ()
    registered_in: str | None = None
    _compiled: tuple[re.Pattern[str], ...] = field(default=(), compare=False, repr=False)

    def matches_org(self, organisation: str) -> bool:
        """True when the AS organisation name matches one of this owner's patterns."""
        return any(pattern.search(organisation) for pattern in self._compiled)


def _country(value: Any, source: str, where: str) -> str:
    text = str(value).strip().upper() if value is not None else ""
    if not _COUNTRY.match(text):
        raise JurisdictionDataError(
            source, f"{where}: jurisdiction {value!r} is not a two-letter country code"
        )
    return text


def _owner_from(entry: Any, source: str, index: int) -> NetworkOwner:
    where = f"owner #{index + 1}"
    if not isinstance(entry, Mapping):
        raise JurisdictionDataError(source, f"{where} is not a mapping")
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        raise JurisdictionDataError(source, f"{where} has no `name`")
    where = f"owner {name!r}"
    jurisdiction = _country(entry.get("jurisdiction"), source, where)
    registered = entry.get("registered_in")
    registered_in = _country(registered, source, where) if registered is not None else None
    raw_asns = entry.get("asns") or []
    raw_patterns = entry.get("org_patterns") or []
    if not isinstance(raw_asns, list) or not all(
        isinstance(a, int) and not isinstance(a, bool) and 0 < a < 2**32 for a in raw_asns
    ):
        raise JurisdictionDataError(source, f"{where}: `asns` must be a list of AS numbers")
    if not isinstance(raw_patterns, list) or not all(isinstance(p, str) for p in raw_patterns):
        raise JurisdictionDataError(source, f"{where}: `org_patterns` must be a list of strings")
    if not raw_asns and not raw_patterns:
        raise JurisdictionDataError(source, f"{where} has neither `asns` nor `org_patterns`")
    compiled = []
    for pattern in raw_patterns:
        try:
            compiled.append(re.compile(pattern, re.IGNORECASE))
        except re.error as error:
            raise JurisdictionDataError(
                source, f"{where}: pattern {pattern!r} is not a regular expression ({error})"
            ) from None
    return NetworkOwner(
        name=name.strip(),
        jurisdiction=jurisdiction,
        asns=frozenset(raw_asns),
        org_patterns=tuple(raw_patterns),
        registered_in=registered_in,
        _compiled=tuple(compiled),
    )


def _literal_initial(pattern: str) -> str | None:
    """The character every match must start with, when the pattern says so plainly.

    That is `^` then a letter or digit that no quantifier makes optional, with
    no `|` outside parentheses (`^a|b` also matches a `b` anywhere).
    """
    if not (pattern.startswith("^") and pattern[1:2].isalnum()):
        return None
    if pattern[2:3] in ("?", "*", "{"):
        return None
    depth = 0
    escaped = False
    for char in pattern:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            return None
    return pattern[1].lower()


class OwnerTable:
    """Finds the owner of an autonomous system: by AS number first, then by organisation name.

    Overrides (from a policy) come first: an overriding owner's ASNs and patterns
    win over the shipped data.
    """

    def __init__(self, owners: Sequence[NetworkOwner], source: str = "<memory>") -> None:
        self.owners = tuple(owners)
        self.source = source
        self._by_asn: dict[int, NetworkOwner] = {}
        # Earlier entries win, so iterate in reverse and let earlier ones overwrite.
        for owner in reversed(self.owners):
            for asn in owner.asns:
                self._by_asn[asn] = owner
        self._by_org: dict[str, NetworkOwner | None] = {}
        # Most organisation names match no owner, so a no must be cheap: one
        # regex match at position 0 among the patterns sharing the name's first
        # character, and one search of the few others (bench/location measures it).
        patterns = [pattern for owner in self.owners for pattern in owner.org_patterns]
        # Anchored patterns that begin with a letter or digit are filed under that
        # character, so a name is tried only against the few starting like it.
        by_initial: dict[str, list[str]] = {}
        general: list[str] = []
        for pattern in patterns:
            initial = _literal_initial(pattern)
            if initial is not None:
                by_initial.setdefault(initial, []).append(pattern[1:])
            else:
                general.append(pattern)
        self._by_initial = {
            initial: re.compile("|".join(f"(?:{p})" for p in group), re.IGNORECASE)
            for initial, group in by_initial.items()
        }
        self._general = (
            re.compile("|".join(f"(?:{p})" for p in general), re.IGNORECASE) if general else None
        )

    @classmethod
    def load(cls, path: Path | None = None) -> OwnerTable:
        """Read a data file in the shape of policies/data/network-owners.yaml."""
        target = path or default_owners_path()
        try:
            document = yaml.safe_load(target.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise JurisdictionDataError(str(target), "file not found") from None
        except (OSError, yaml.YAMLError) as error:
            raise JurisdictionDataError(str(target), f"cannot be read ({error})") from None
        return cls.from_document(document, str(target))

    @classmethod
    def from_document(cls, document: Any, source: str) -> OwnerTable:
        """Build a table from the parsed YAML document (a mapping with `owners`)."""
        if not isinstance(document, Mapping) or not isinstance(document.get("owners"), list):
            raise JurisdictionDataError(source, "expected a mapping with an `owners` list")
        return cls.from_entries(document["owners"], source)

    @classmethod
    def from_entries(cls, entries: Iterable[Any], source: str) -> OwnerTable:
        """Build a table from owner entries (mappings with name, jurisdiction, asns, ...)."""
        return cls([_owner_from(entry, source, i) for i, entry in enumerate(entries)], source)

    def with_overrides(self, overrides: Sequence[NetworkOwner]) -> OwnerTable:
        """A table where `overrides` come before (and so win over) these owners."""
        if not overrides:
            return self
        return OwnerTable([*overrides, *self.owners], f"{self.source} + policy overrides")

    def owner_of(self, asn: int | None, organisation: str | None) -> NetworkOwner | None:
        """The owner of an AS, or None when the data knows neither its number nor its name."""
        if asn is not None:
            owner = self._by_asn.get(asn)
            if owner is not None:
                return owner
        if not organisation:
            return None
        try:
            return self._by_org[organisation]
        except KeyError:
            found = self._match_org(organisation)
            self._by_org[organisation] = found
            return found

    def _match_org(self, organisation: str) -> NetworkOwner | None:
        # When a pattern matches, the owners are tried in order, since the first
        # owner in the table (overrides first) must win.
        initial = self._by_initial.get(organisation[:1].lower())
        if not (
            (initial is not None and initial.match(organisation))
            or (self._general is not None and self._general.search(organisation))
        ):
            return None
        return next((o for o in self.owners if o.matches_org(organisation)), None)
