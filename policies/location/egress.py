"""`decide_egress`: resolve a destination, locate every address, apply the egress rules.

The rules themselves are evaluated by `policies.egress.evaluate_egress` (one
place for their order: forbidden provider jurisdiction, the rules in order, home
and adequate countries, the default). This module supplies the facts it needs:
every A/AAAA address of the destination with its country and its network owner's
jurisdiction, and fails closed in `enforce` mode when a fact is missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from policies.egress import Destination, EgressVerdict, evaluate_egress, sanitise_destination
from policies.errors import InvalidDestination
from policies.location.errors import MalformedAddress, UnresolvableHost
from policies.location.locator import Location, Locator
from policies.models import LegalBasis, Policy

RULE_UNRESOLVABLE = "location.unresolvable"
RULE_UNKNOWN_COUNTRY = "location.unknown_country"
RULE_INVALID = "location.invalid_destination"

EgressDecisionOutcome = Literal["allow", "deny"]


@dataclass(frozen=True)
class EgressDecision:
    """May data go to a destination: the outcome, the rule that decided, and the facts."""

    destination: str
    outcome: EgressDecisionOutcome
    rule_id: str
    reasons: tuple[str, ...]
    locations: tuple[Location, ...]
    logged: bool = False
    legal_basis: LegalBasis | None = None
    mode: str = "enforce"
    policy_hash: str = ""

    @property
    def allowed(self) -> bool:
        """True when data may go there."""
        return self.outcome == "allow"

    def to_record(self) -> dict[str, Any]:
        """Audit-safe form (type `egress`): destination without credentials, facts, rule."""
        return {
            "type": "egress",
            "destination": self.destination,
            "outcome": self.outcome,
            "rule_id": self.rule_id,
            "reasons": list(self.reasons),
            "logged": self.logged,
            "legal_basis": self.legal_basis.model_dump(mode="json") if self.legal_basis else None,
            "mode": self.mode,
            "policy_hash": self.policy_hash,
            "locations": [location.to_json() for location in self.locations],
        }


def _facts(locations: tuple[Location, ...]) -> str:
    return "; ".join(
        f"{loc.address}: country {loc.country or 'unknown'}, AS{loc.asn or '?'} "
        f"{loc.owner or 'unknown owner'}, jurisdiction {loc.jurisdiction or 'unknown'}"
        for loc in locations
    )


def decide_egress(destination: str, policy: Policy, locator: Locator) -> EgressDecision:
    """Decide whether data may go to `destination` (host, host:port, URL or IP address).

    Every address the host resolves to is located; the policy's rules see all of
    them, so the strictest outcome over the addresses wins. In `enforce` mode a
    stale geo database raises StaleGeoDatabase, and an unresolvable destination or
    an address of unknown country that only the default would let through is
    denied; in `observe` mode those are allowed and logged, with the reason.
    """
    enforce = policy.mode == "enforce"
    if enforce:
        locator.check_freshness(policy.geoip.max_age_days)
    locator = locator.for_policy(policy)
    # A DSN may carry a user name and password: they never reach a decision.
    safe_text = sanitise_destination(destination.strip())

    def decision(
        outcome: EgressDecisionOutcome,
        rule_id: str,
        reasons: tuple[str, ...],
        locations: tuple[Location, ...] = (),
        *,
        logged: bool = False,
        legal_basis: LegalBasis | None = None,
        text: str = safe_text,
    ) -> EgressDecision:
        return EgressDecision(
            destination=text,
            outcome=outcome,
            rule_id=rule_id,
            reasons=reasons,
            locations=locations,
            logged=logged,
            legal_basis=legal_basis,
            mode=policy.mode,
            policy_hash=policy.content_hash,
        )

    def fail_closed(
        rule_id: str, reason: str, locations: tuple[Location, ...] = (), text: str = safe_text
    ) -> EgressDecision:
        if enforce:
            return decision("deny", rule_id, (reason,), locations, text=text)
        return decision(
            "allow",
            rule_id,
            (reason + "; allowed and logged because the policy is in observe mode",),
            locations,
            logged=True,
            text=text,
        )

    try:
        parsed = Destination.parse(destination)
    except InvalidDestination as error:
        return fail_closed(RULE_INVALID, str(error))
    text = parsed.text
    try:
        addresses = locator.resolve(parsed.host)
        locations = tuple(locator.locate(address) for address in addresses)
    except MalformedAddress as error:
        return fail_closed(RULE_INVALID, f"egress to {text}: {error}", text=text)
    except UnresolvableHost as error:
        return fail_closed(RULE_UNRESOLVABLE, f"egress to {text}: {error}", text=text)

    verdict: EgressVerdict = evaluate_egress(policy, text, locations)
    facts = f"located: {_facts(locations)}"
    reasons = (*verdict.reasons, facts)
    unknown = [loc.address for loc in locations if loc.country is None]
    if verdict.outcome == "allow" and unknown and verdict.rule_id == "egress.default":
        # Only the default let it through, and the default cannot have weighed a
        # country nobody knows: fail closed (an explicit rule, e.g. a CIDR, may allow).
        return fail_closed(
            RULE_UNKNOWN_COUNTRY,
            f"egress to {text}: no country is known for {', '.join(unknown)}; {facts}",
            locations,
            text=text,
        )
    if verdict.outcome == "unresolved":
        return fail_closed(verdict.rule_id, "; ".join(reasons), locations, text=text)
    return decision(
        "allow" if verdict.outcome == "allow" else "deny",
        verdict.rule_id,
        reasons,
        locations,
        logged=verdict.logged,
        legal_basis=verdict.legal_basis,
        text=text,
    )
