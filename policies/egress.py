"""Egress rules, evaluated: may data go to this destination, and which rule says so.

A pure function of the policy, the destination string and, when known, the
located addresses behind it (country and provider jurisdiction, as the
location package finds them). What the destination string alone decides
(host, URL prefix, IP literal in a CIDR) is decided here without any lookup;
what needs location facts and has none is `unresolved`, which callers treat
as a refusal (fail closed).

Order: (1) a provider under a forbidden jurisdiction is denied; (2) the rules,
first match wins; (3) addresses all in the home country are allowed, all in
home or adequate countries allowed and logged; (4) the default.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol
from urllib.parse import urlsplit, urlunsplit

from policies.errors import InvalidDestination
from policies.models import EgressRule, LegalBasis, Policy

EgressOutcome = Literal["allow", "deny", "unresolved"]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

RULE_FORBIDDEN = "jurisdiction.forbidden_provider_jurisdictions"
RULE_HOME = "jurisdiction.home"
RULE_ADEQUATE = "jurisdiction.adequate_destinations"
RULE_DEFAULT = "egress.default"


class LocatedAddress(Protocol):
    """One resolved address of a destination; `policies.location.Location` has this shape."""

    @property
    def address(self) -> str: ...

    @property
    def country(self) -> str | None: ...

    @property
    def jurisdiction(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class KnownAddress:
    """A located address built here (an IP literal in a private range has no country)."""

    address: str
    country: str | None = None
    jurisdiction: str | None = None


@dataclass(frozen=True, slots=True)
class Destination:
    """A destination string taken apart: host, port, whether it is an IP literal, a URL."""

    text: str
    host: str
    port: int | None
    ip: IPAddress | None
    url: str | None

    @classmethod
    def parse(cls, destination: str) -> Destination:
        """Parse a URL (`kafka://h:9092/t`), `host:port`, `[v6]:port`, a host or an IP."""
        text = sanitise_destination(destination.strip())
        if not text:
            raise InvalidDestination("the destination is empty: give a host, URL or IP address")
        host: str | None
        port: int | None
        url: str | None = None
        if "://" in text:
            parts = urlsplit(text)
            host = parts.hostname
            try:
                port = parts.port
            except ValueError:
                raise InvalidDestination(f"destination {text!r} has an invalid port") from None
            url = text
        else:
            host, port = _host_port(text)
        if not host:
            raise InvalidDestination(f"destination {text!r} names no host")
        host = host.lower().rstrip(".")
        try:
            ip: IPAddress | None = ipaddress.ip_address(host)
        except ValueError:
            ip = None
            if any(ch in host for ch in " /\\@"):
                raise InvalidDestination(
                    f"destination {text!r}: {host!r} is not a host name"
                ) from None
        return cls(text=text, host=host, port=port, ip=ip, url=url)

    @property
    def without_provider(self) -> bool:
        """An IP literal no provider can own: loopback, private, link-local."""
        return self.ip is not None and (
            self.ip.is_loopback or self.ip.is_private or self.ip.is_link_local
        )


def _host_port(text: str) -> tuple[str | None, int | None]:
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, _port(rest[1:], text) if rest.startswith(":") else None
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, _port(port, text)
    return text, None  # a bare host, IPv4 or an unbracketed IPv6 address


def _port(value: str, text: str) -> int:
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise InvalidDestination(f"destination {text!r} has an invalid port {value!r}")
    return int(value)


def sanitise_destination(destination: str) -> str:
    """The destination without user name or password (a DSN may carry them)."""
    if "://" not in destination or "@" not in destination:
        return destination
    parts = urlsplit(destination)
    if parts.username is None and parts.password is None:
        return destination
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@dataclass(frozen=True, slots=True)
class EgressStep:
    """One rule considered for a destination: matched, not matched, or undecidable."""

    rule_id: str
    result: Literal["matched", "not matched", "needs location", "skipped"]
    why: str


@dataclass(frozen=True, slots=True)
class EgressVerdict:
    """Whether data may go to a destination, by which rule, and whether it is logged."""

    destination: str
    outcome: EgressOutcome
    rule_id: str
    reasons: tuple[str, ...]
    logged: bool = False
    legal_basis: LegalBasis | None = None
    steps: tuple[EgressStep, ...] = field(default=(), compare=False)

    def to_record(self) -> dict[str, object]:
        """Audit-safe form: the destination (no credentials), outcome, rule, basis."""
        return {
            "destination": self.destination,
            "outcome": self.outcome,
            "rule_id": self.rule_id,
            "reasons": list(self.reasons),
            "logged": self.logged,
            "legal_basis": self.legal_basis.model_dump(mode="json") if self.legal_basis else None,
        }


Tri = bool | None  # True / False / unknown


def _rule_matches(
    rule: EgressRule, dest: Destination, located: Sequence[LocatedAddress] | None
) -> tuple[Tri, str]:
    """Whether a rule matches, and why; None when location facts would be needed."""
    m = rule.match
    if m.host is not None and not fnmatch.fnmatchcase(dest.host, m.host.lower()):
        return False, f"host {dest.host!r} is not {m.host!r}"
    if m.url is not None:
        if dest.url is None:
            return False, f"destination is not a URL (rule wants prefix {m.url!r})"
        if not _url_has_prefix(dest.url, m.url):
            return False, f"URL does not start with {m.url!r}"
    address_conditions = m.cidr is not None or m.needs_location
    if not address_conditions:
        return True, _matched_why(rule)
    if located is None:
        if dest.ip is not None and dest.without_provider:
            located = (KnownAddress(str(dest.ip)),)
        elif dest.ip is not None and not m.needs_location:
            located = (KnownAddress(str(dest.ip)),)  # a CIDR needs only the literal
        else:
            return None, "needs the located addresses of the destination (GeoIP / ASN)"
    if not located:
        return False, "the destination resolved to no address"
    # An allow rule must hold for every address; a deny rule fires on any.
    results = [_address_matches(rule, a) for a in located]
    hit = all(r for r, _ in results) if rule.action == "allow" else any(r for r, _ in results)
    if hit:
        return True, _matched_why(rule)
    misses = [why for r, why in results if not r]
    return False, misses[0] if misses else "no address matches"


def _address_matches(rule: EgressRule, located: LocatedAddress) -> tuple[bool, str]:
    m = rule.match
    if m.cidr is not None:
        try:
            ip = ipaddress.ip_address(located.address)
        except ValueError:
            return False, f"{located.address!r} is not an IP address"
        if ip not in ipaddress.ip_network(m.cidr):
            return False, f"address {ip} is outside {m.cidr}"
    if m.country is not None and located.country not in m.country:
        return False, f"address {located.address} is in {located.country or 'no known country'}"
    if m.provider_jurisdiction is not None and located.jurisdiction not in m.provider_jurisdiction:
        return False, (
            f"address {located.address} is run under "
            f"{located.jurisdiction or 'no known jurisdiction'}"
        )
    return True, "matches"


def _needs_facts_why(rule: EgressRule) -> str:
    if rule.match.needs_location:
        return "needs the country / provider jurisdiction of the destination's addresses"
    return "needs the destination's resolved addresses (CIDR match on a host name)"


def _matched_why(rule: EgressRule) -> str:
    conditions = [f"{k}={v}" for k, v in rule.match.model_dump(exclude_none=True).items()]
    return "matches " + ", ".join(conditions)


def _url_has_prefix(url: str, prefix: str) -> bool:
    # A prefix ends at a path boundary: https://a.no must not match https://a.no.evil.com
    if not url.lower().startswith(prefix.lower()):
        return False
    rest = url[len(prefix) :]
    return prefix.endswith("/") or not rest or rest[0] in "/?#"


def evaluate_egress(
    policy: Policy,
    destination: str,
    located: Sequence[LocatedAddress] | None = None,
) -> EgressVerdict:
    """Decide egress to `destination`; `located` are its resolved addresses, if known."""
    dest = Destination.parse(destination)
    steps: list[EgressStep] = []
    jur = policy.jurisdiction
    if located is None and dest.without_provider:
        located = (KnownAddress(str(dest.ip)),)

    def verdict(
        outcome: EgressOutcome,
        rule_id: str,
        reason: str,
        logged: bool = False,
        basis: LegalBasis | None = None,
    ) -> EgressVerdict:
        return EgressVerdict(dest.text, outcome, rule_id, (reason,), logged, basis, tuple(steps))

    forbidden = set(jur.forbidden_provider_jurisdictions)
    if forbidden:
        if located is None:
            steps.append(
                EgressStep(
                    RULE_FORBIDDEN,
                    "needs location",
                    "provider jurisdiction unknown without ASN data",
                )
            )
            return verdict(
                "unresolved",
                RULE_FORBIDDEN,
                f"egress to {dest.text}: the provider's jurisdiction must be checked against "
                f"{', '.join(sorted(forbidden))}; pass the located addresses "
                "(policies.location.decide_egress)",
            )
        bad = sorted(
            {a.jurisdiction for a in located if a.jurisdiction is not None}.intersection(forbidden)
        )
        if bad:
            steps.append(EgressStep(RULE_FORBIDDEN, "matched", f"provider under {', '.join(bad)}"))
            return verdict(
                "deny",
                RULE_FORBIDDEN,
                f"egress to {dest.text}: provider under forbidden jurisdiction {', '.join(bad)}",
            )
        steps.append(
            EgressStep(
                RULE_FORBIDDEN, "not matched", "no address is run under a forbidden jurisdiction"
            )
        )

    # A rule that needs location facts we do not have is set aside: a later
    # rule that matches decides only if every rule set aside says the same
    # (then the first match, whichever it is, gives that outcome).
    pending: list[EgressRule] = []
    for rule in policy.egress.rules:
        matched, why = _rule_matches(rule, dest, located)
        if matched is None:
            steps.append(EgressStep(rule.id, "needs location", why))
            pending.append(rule)
            continue
        if not matched:
            steps.append(EgressStep(rule.id, "not matched", why))
            continue
        steps.append(EgressStep(rule.id, "matched", why))
        undecided = [p for p in pending if p.action != rule.action]
        if undecided:
            return verdict(
                "unresolved",
                undecided[0].id,
                f"egress to {dest.text}: rule {undecided[0].id!r} comes first and "
                f"{_needs_facts_why(undecided[0])}; pass the located addresses "
                "(policies.location.decide_egress)",
            )
        reason = f"egress to {dest.text}: rule {rule.id!r} says {rule.action}"
        if rule.legal_basis is not None:
            reason += f" (legal basis: {rule.legal_basis.mechanism} {rule.legal_basis.reference})"
        return verdict(
            rule.action, rule.id, reason, rule.log and rule.action == "allow", rule.legal_basis
        )
    if pending:
        return verdict(
            "unresolved",
            pending[0].id,
            f"egress to {dest.text}: rule {pending[0].id!r} {_needs_facts_why(pending[0])}; "
            "pass the located addresses (policies.location.decide_egress)",
        )

    if located is None:
        steps.append(EgressStep(RULE_HOME, "needs location", "countries unknown without GeoIP"))
        return verdict(
            "unresolved",
            RULE_HOME,
            f"egress to {dest.text}: no rule matches the destination text; its countries are "
            "needed (policies.location.decide_egress)",
        )
    # Home and adequacy need both: every server in such a country, and every
    # provider under such a jurisdiction (a US-owned cloud's Frankfurt region
    # is not an adequate destination, it is a US provider).
    countries = {a.country for a in located}
    owners = {a.jurisdiction for a in located}
    home = {jur.home}
    adequate = {jur.home, *jur.adequate_destinations}
    if not located or None in countries:
        steps.append(EgressStep(RULE_HOME, "not matched", "an address has no known country"))
    elif None in owners:
        steps.append(
            EgressStep(RULE_HOME, "not matched", "an address has no known provider jurisdiction")
        )
    elif countries <= home and owners <= home:
        steps.append(
            EgressStep(RULE_HOME, "matched", f"every address is in {jur.home}, under {jur.home}")
        )
        return verdict("allow", RULE_HOME, f"egress to {dest.text}: stays in {jur.home}")
    elif countries <= adequate and owners <= adequate:
        shown = ", ".join(sorted(c for c in countries if c))
        steps.append(EgressStep(RULE_HOME, "not matched", f"addresses in {shown}"))
        steps.append(
            EgressStep(RULE_ADEQUATE, "matched", f"addresses in {shown}, adequate providers")
        )
        return verdict(
            "allow",
            RULE_ADEQUATE,
            f"egress to {dest.text}: {shown} is home or has an adequacy decision",
            logged=True,
        )
    else:
        outside = sorted(c for c in (countries | owners) - adequate if c)
        steps.append(
            EgressStep(
                RULE_ADEQUATE,
                "not matched",
                f"{', '.join(outside)} is neither home nor adequate (server or provider)",
            )
        )
    default = policy.egress.default
    steps.append(EgressStep(RULE_DEFAULT, "matched", f"no rule matched; default is {default}"))
    return verdict(
        default, RULE_DEFAULT, f"egress to {dest.text}: no rule matched; the default is {default}"
    )
