"""What changes between two versions of a policy: fields and destinations whose outcome changes.

Fields are compared declaration by declaration. Destinations are compared by
evaluating both policies on probe destinations derived from the rules of
either (each host, URL, network, country and provider jurisdiction they name,
plus home and the adequate countries), so a reordered or widened rule shows
up as the destinations whose verdict it changes.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from policies.egress import EgressVerdict, KnownAddress, evaluate_egress
from policies.engine import StreamPlan
from policies.models import Policy

_PROBE_ADDRESS = "192.0.2.10"  # TEST-NET-1: documentation addresses only


@dataclass(frozen=True, slots=True)
class Change:
    """One difference between the old and the new policy."""

    kind: str  # "policy", "jurisdiction", "placement", "geoip", "stream", "field", "destination"
    subject: str
    old: str
    new: str


@dataclass(frozen=True, slots=True)
class Probe:
    """A destination, with or without located addresses, to evaluate under both policies."""

    label: str
    destination: str
    located: tuple[KnownAddress, ...] | None


def _field_summary(plan: StreamPlan, path: str) -> str:
    fp = plan.fields.get(path)
    if fp is None:
        return f"undeclared ({plan.undeclared})"
    text = f"{fp.action} [{fp.pii_class}]"
    if fp.scan is not None:
        text += f", scan → {fp.scan.on_detected}"
    if fp.required:
        text += ", required"
    return text


def _verdict_outcome(verdict: EgressVerdict) -> str:
    return verdict.outcome + (" (logged)" if verdict.logged else "")


def _verdict_summary(verdict: EgressVerdict) -> str:
    return f"{_verdict_outcome(verdict)} by {verdict.rule_id}"


def probes(*policies: Policy) -> list[Probe]:
    """Probe destinations from every rule and country the policies name."""
    found: dict[str, Probe] = {}

    def add(probe: Probe) -> None:
        found.setdefault(probe.label, probe)

    countries: set[str] = set()
    jurisdictions: set[str] = set()
    home = policies[0].jurisdiction.home if policies else "NO"
    # Named destinations are probed as if located at home under a home provider,
    # so that the rules behind the jurisdiction checks are reached.
    at_home = (KnownAddress(_PROBE_ADDRESS, home, home),)
    for policy in policies:
        jur = policy.jurisdiction
        countries |= {jur.home, *jur.adequate_destinations}
        jurisdictions |= {jur.home, *jur.forbidden_provider_jurisdictions}
        for rule in policy.egress.rules:
            m = rule.match
            if m.host is not None:
                host = m.host.replace("*", "probe")
                add(Probe(f"host {host}", host, at_home))
            if m.url is not None:
                add(Probe(f"url {m.url}", m.url, at_home))
            if m.cidr is not None:
                net = ipaddress.ip_network(m.cidr)
                address = str(next(iter(net.hosts()), net.network_address))
                ip = ipaddress.ip_address(address)
                private = ip.is_private or ip.is_loopback or ip.is_link_local
                located = (KnownAddress(address) if private else KnownAddress(address, home, home),)
                add(Probe(f"address {address}", address, located))
            countries |= set(m.country or ())
            jurisdictions |= set(m.provider_jurisdiction or ())
    # Each country under its own providers, home under each jurisdiction, and
    # each country under home providers: enough to expose a changed country
    # or jurisdiction rule without the full cross product.
    pairs = {(c, c) for c in countries} | {(home, j) for j in jurisdictions}
    pairs |= {(c, home) for c in countries} | {(j, j) for j in jurisdictions}
    for country, owner in sorted(pairs):
        label = f"server in {country}, provider under {owner}"
        add(
            Probe(
                label,
                f"probe-{country.lower()}-{owner.lower()}.example",
                (KnownAddress(_PROBE_ADDRESS, country, owner),),
            )
        )
    return sorted(found.values(), key=lambda p: p.label)


def _leaves(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, dict):
        found: dict[str, Any] = {}
        for key, item in value.items():
            found.update(_leaves(item, f"{prefix}.{key}"))
        return found
    return {prefix: value}


def diff_policies(old: Policy, new: Policy) -> list[Change]:
    """Every change of outcome between two policies."""
    changes: list[Change] = []
    if old.mode != new.mode:
        changes.append(Change("policy", "mode", old.mode, new.mode))
    if old.metadata.version != new.metadata.version:
        changes.append(Change("policy", "version", old.metadata.version, new.metadata.version))
    for part in ("jurisdiction", "placement", "geoip"):
        before = _leaves(getattr(old, part).model_dump(mode="json"), part)
        after = _leaves(getattr(new, part).model_dump(mode="json"), part)
        for key in sorted(set(before) | set(after)):
            if before.get(key) != after.get(key):
                changes.append(
                    Change(
                        part, key, str(before.get(key, "(unset)")), str(after.get(key, "(unset)"))
                    )
                )
    for name in sorted(set(old.streams) | set(new.streams)):
        if name not in new.streams:
            changes.append(Change("stream", name, "declared", "removed"))
            continue
        if name not in old.streams:
            changes.append(Change("stream", name, "not declared", "added"))
            continue
        old_plan = StreamPlan.compile(name, old.streams[name])
        new_plan = StreamPlan.compile(name, new.streams[name])
        for attr in ("key_field", "event_time_field", "undeclared"):
            a, b = getattr(old_plan, attr), getattr(new_plan, attr)
            if a != b:
                changes.append(Change("stream", f"{name}.{attr}", str(a), str(b)))
        for path in sorted(set(old_plan.fields) | set(new_plan.fields)):
            a, b = _field_summary(old_plan, path), _field_summary(new_plan, path)
            if a != b:
                changes.append(Change("field", f"{name}.{path}", a, b))
    for probe in probes(old, new):
        a = evaluate_egress(old, probe.destination, probe.located)
        b = evaluate_egress(new, probe.destination, probe.located)
        # A different rule reaching the same outcome is not a change in outcome.
        if _verdict_outcome(a) != _verdict_outcome(b):
            changes.append(
                Change("destination", probe.label, _verdict_summary(a), _verdict_summary(b))
            )
    return changes
