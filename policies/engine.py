"""The compiled evaluator: per stream a plan (field → action) built once, then `decide`.

`PolicyEngine(policy).decide(event, stream, destination, detected)` is a pure
function of its inputs and the policy; it never looks at the network. The
`Decision` it returns names field paths, actions, rule ids and reasons, and
never a value of the event, so it can go to the audit log as it is.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any, Literal

from policies.egress import EgressVerdict, LocatedAddress, evaluate_egress
from policies.errors import InvalidDestination, UnknownStream
from policies.models import (
    FieldRule,
    Generalisation,
    Policy,
    ScanRule,
    Stream,
    field_rule_id,
)

Outcome = Literal["allow", "deny"]
UNDECLARED = "undeclared"

# Plausible epoch-millisecond range (2000-01-01 .. 2100-01-01): a value outside
# it is almost always seconds sent as milliseconds, or the reverse.
_EPOCH_MS_MIN = 946_684_800_000
_EPOCH_MS_MAX = 4_102_444_800_000

_TYPE_CHECKS: dict[str, tuple[type | tuple[type, ...], ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict, Mapping),
    "array": (list, tuple),
}


@dataclass(frozen=True, slots=True)
class FieldDecision:
    """What happens to one field of an event, and which rule says so."""

    path: str
    pii_class: str
    action: str
    rule_id: str
    detected: tuple[str, ...] = ()

    def to_record(self) -> dict[str, Any]:
        """Audit-safe form (names and actions only)."""
        record: dict[str, Any] = {
            "path": self.path,
            "pii_class": self.pii_class,
            "action": self.action,
            "rule_id": self.rule_id,
        }
        if self.detected:
            record["detected"] = list(self.detected)
        return record


@dataclass(frozen=True, slots=True)
class Decision:
    """The policy's decision about one event (and, if given, one destination)."""

    outcome: Outcome
    stream: str
    destination: str | None
    fields: tuple[FieldDecision, ...]
    rule_ids: tuple[str, ...]
    reasons: tuple[str, ...]
    policy_hash: str
    mode: str = "enforce"
    egress: EgressVerdict | None = None
    event_time_ms: int | None = None

    @property
    def blocks(self) -> bool:
        """True when the event must not pass: a deny in enforce mode (observe only reports)."""
        return self.outcome == "deny" and self.mode == "enforce"

    def field(self, path: str) -> FieldDecision | None:
        """The decision for one field path, if the event had it."""
        for decision in self.fields:
            if decision.path == path:
                return decision
        return None

    def actions(self) -> dict[str, str]:
        """Field path → action."""
        return {d.path: d.action for d in self.fields}

    def to_record(self) -> dict[str, Any]:
        """Audit-safe dict: field names, actions, rule ids, reasons, the policy hash; no values."""
        return {
            "type": "decision",
            "outcome": self.outcome,
            "mode": self.mode,
            "stream": self.stream,
            "destination": self.destination,
            "fields": [d.to_record() for d in self.fields],
            "rule_ids": list(self.rule_ids),
            "reasons": list(self.reasons),
            "policy_hash": self.policy_hash,
            "egress": self.egress.to_record() if self.egress else None,
        }


@dataclass(frozen=True, slots=True)
class FieldPlan:
    """A declared field, compiled: its path parts and everything decide() needs."""

    path: str
    parts: tuple[str, ...]
    pii_class: str
    action: str
    rule_id: str
    type: str
    required: bool
    scan: ScanRule | None
    generalise: Generalisation | None
    key_id: str | None
    decision: FieldDecision  # the decision when nothing is detected, built once


@dataclass(frozen=True, slots=True)
class StreamPlan:
    """A stream compiled once: field path → plan, containers of nested fields, key, time."""

    name: str
    fields: Mapping[str, FieldPlan]
    containers: frozenset[str]
    required: tuple[FieldPlan, ...]
    key_field: str | None
    event_time_field: str | None
    event_time_formats: tuple[str, ...]
    event_time_required: bool
    undeclared: str
    undeclared_rule_id: str

    @classmethod
    def compile(cls, name: str, stream: Stream) -> StreamPlan:
        """Build the plan of one stream."""
        plans: dict[str, FieldPlan] = {}
        containers: set[str] = set()
        for path, rule in stream.fields.items():
            plans[path] = _field_plan(name, path, rule)
            parts = path.split(".")
            for i in range(1, len(parts)):
                containers.add(".".join(parts[:i]))
        et = stream.event_time
        return cls(
            name=name,
            fields=MappingProxyType(plans),
            containers=frozenset(containers),
            required=tuple(p for p in plans.values() if p.required),
            key_field=stream.key,
            event_time_field=et.field if et else None,
            event_time_formats=tuple(et.formats) if et else (),
            event_time_required=et.required if et else False,
            undeclared=stream.undeclared_fields,
            undeclared_rule_id=f"streams.{name}.undeclared_fields",
        )


def _field_plan(stream: str, path: str, rule: FieldRule) -> FieldPlan:
    rule_id = field_rule_id(stream, path, rule)
    return FieldPlan(
        path=path,
        parts=tuple(path.split(".")),
        pii_class=rule.pii,
        action=rule.action,
        rule_id=rule_id,
        type=rule.type,
        required=rule.required,
        scan=rule.scan,
        generalise=rule.generalise,
        key_id=rule.key_id,
        decision=FieldDecision(path, rule.pii, rule.action, rule_id),
    )


def lookup_path(event: Mapping[str, Any], parts: tuple[str, ...]) -> tuple[bool, Any]:
    """Whether a dotted path (split in parts) is present in an event, and its value."""
    current: Any = event
    for part in parts:
        if (type(current) is not dict and not isinstance(current, Mapping)) or (
            part not in current
        ):
            return False, None
        current = current[part]
    return True, current


def json_type_name(value: Any) -> str:
    """The JSON Schema type name of a parsed JSON value (what a policy's `type` names)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


# Exact types JSON decoders produce, checked before the slower isinstance on ABCs.
_EXACT_TYPES: dict[str, frozenset[type]] = {
    "string": frozenset({str}),
    "integer": frozenset({int}),
    "number": frozenset({int}),
    "boolean": frozenset({bool}),
    "object": frozenset({dict}),
    "array": frozenset({list}),
}


def _has_type(value: Any, wanted: str) -> bool:
    if wanted == "any":
        return True
    kind = type(value)
    if kind is bool:
        return wanted == "boolean"  # bool is an int in Python, never in an event schema
    if kind is float and wanted == "number":
        return math.isfinite(value)
    if kind in _EXACT_TYPES[wanted]:
        return True
    return isinstance(value, _TYPE_CHECKS[wanted])


def parse_event_time(value: Any, formats: Sequence[str]) -> tuple[int | None, str]:
    """Milliseconds since the epoch from an event-time value, or None and why not."""
    for fmt in formats:
        if fmt == "iso8601" and isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                continue
            if parsed.tzinfo is None:
                return None, "ISO 8601 time without a time zone (add Z or an offset)"
            return int(parsed.timestamp() * 1000), ""
        if (
            fmt in ("epoch_ms", "epoch_s")
            and isinstance(value, int | float)
            and not isinstance(value, bool)
        ):
            if not math.isfinite(value):
                continue
            ms = int(value) if fmt == "epoch_ms" else int(value * 1000)
            if _EPOCH_MS_MIN <= ms <= _EPOCH_MS_MAX:
                return ms, ""
            return None, f"{fmt} value outside years 2000-2100 (seconds vs milliseconds?)"
    return None, f"{json_type_name(value)} value matching none of the formats {', '.join(formats)}"


class PolicyEngine:
    """A policy compiled for evaluation: one plan per stream, built once."""

    _EGRESS_CACHE_SIZE = 1024

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.policy_hash = policy.content_hash
        self.mode = policy.mode
        self._plans: dict[str, StreamPlan] = {
            name: StreamPlan.compile(name, stream) for name, stream in policy.streams.items()
        }
        # Egress without location facts depends only on the destination text;
        # lru_cache is thread-safe, and the gateway decides from several threads.
        self._egress_by_text = functools.lru_cache(maxsize=self._EGRESS_CACHE_SIZE)(
            functools.partial(evaluate_egress, policy)
        )

    @property
    def streams(self) -> tuple[str, ...]:
        """Names of the declared streams."""
        return tuple(self._plans)

    def stream(self, name: str) -> StreamPlan:
        """The compiled plan of a stream; raises UnknownStream."""
        try:
            return self._plans[name]
        except KeyError:
            raise UnknownStream(name, list(self._plans)) from None

    def egress(
        self, destination: str, located: Sequence[LocatedAddress] | None = None
    ) -> EgressVerdict:
        """Egress verdict for a destination (cached when no location facts are given)."""
        if located is not None:
            return evaluate_egress(self.policy, destination, located)
        verdict: EgressVerdict = self._egress_by_text(destination)
        return verdict

    def decide(
        self,
        event: Mapping[str, Any],
        stream: str,
        destination: str | None = None,
        detected: Mapping[str, Sequence[str]] | None = None,
        *,
        located: Sequence[LocatedAddress] | None = None,
    ) -> Decision:
        """Decide what happens to an event of `stream` (and whether it may go to `destination`).

        `detected` maps a dotted field path to the PII types detectors found in it;
        `located` are the destination's resolved addresses, when the caller knows them.
        """
        plan = self.stream(stream)
        fields: list[FieldDecision] = []
        rule_ids: list[str] = []
        reasons: list[str] = []
        deny = False
        detected = detected or {}

        if not isinstance(event, Mapping):
            reasons.append(f"the event is {json_type_name(event)}, not an object")
            return self._decision("deny", stream, destination, (), rule_ids, reasons, None)

        stack: list[tuple[Mapping[str, Any], str]] = [(event, "")]
        while stack:
            obj, prefix = stack.pop()
            nested: list[tuple[Mapping[str, Any], str]] = []
            # Sorted, so that the decision does not depend on the event's key order.
            for raw_key in sorted(obj, key=str):
                value = obj[raw_key]
                path = prefix + str(raw_key)
                fp = plan.fields.get(path)
                if fp is not None:
                    if not _has_type(value, fp.type) and not (value is None and not fp.required):
                        deny = True
                        rule_ids.append(fp.rule_id)
                        reasons.append(
                            f"field {path!r}: expected {fp.type}, got {json_type_name(value)}"
                        )
                    found = detected.get(path)
                    if found and fp.scan is not None:
                        decision, denied = _scanned(fp, fp.scan, found, reasons)
                        deny = deny or denied
                        fields.append(decision)
                        rule_ids.append(decision.rule_id)
                    elif found:
                        fields.append(
                            FieldDecision(
                                path, fp.pii_class, fp.action, fp.rule_id, tuple(sorted(set(found)))
                            )
                        )
                        rule_ids.append(fp.rule_id)
                    else:
                        fields.append(fp.decision)
                        rule_ids.append(fp.rule_id)
                elif path in plan.containers:
                    if type(value) is dict or isinstance(value, Mapping):
                        nested.append((value, path + "."))
                    else:
                        deny = True
                        reasons.append(
                            f"field {path!r}: expected an object holding declared fields, "
                            f"got {json_type_name(value)}"
                        )
                else:
                    if plan.undeclared == "deny":
                        deny = True
                        reasons.append(
                            f"field {path!r} is not declared and the stream denies "
                            "undeclared fields"
                        )
                    found = detected.get(path)
                    action = "drop" if plan.undeclared == "deny" else plan.undeclared
                    fields.append(
                        FieldDecision(
                            path,
                            UNDECLARED,
                            action,
                            plan.undeclared_rule_id,
                            tuple(sorted(set(found))) if found else (),
                        )
                    )
                    rule_ids.append(plan.undeclared_rule_id)
            stack.extend(reversed(nested))

        for fp in plan.required:
            present, value = lookup_path(event, fp.parts)
            if not present or value is None:
                deny = True
                rule_ids.append(fp.rule_id)
                reasons.append(f"required field {fp.path!r} is missing")

        event_time_ms: int | None = None
        if plan.event_time_field is not None:
            present, value = lookup_path(event, plan.fields[plan.event_time_field].parts)
            if present and value is not None:
                event_time_ms, why = parse_event_time(value, plan.event_time_formats)
                if event_time_ms is None:
                    deny = True
                    reasons.append(f"event-time field {plan.event_time_field!r}: {why}")
            elif plan.event_time_required:
                deny = True
                reasons.append(f"event-time field {plan.event_time_field!r} is missing")

        verdict: EgressVerdict | None = None
        if destination is not None:
            try:
                verdict = self.egress(destination, located)
            except InvalidDestination as exc:
                deny = True
                reasons.append(str(exc))
            else:
                rule_ids.append(verdict.rule_id)
                reasons.extend(verdict.reasons)
                if verdict.outcome != "allow":
                    deny = True

        outcome: Outcome = "deny" if deny else "allow"
        return self._decision(
            outcome, stream, destination, tuple(fields), rule_ids, reasons, verdict, event_time_ms
        )

    def _decision(
        self,
        outcome: Outcome,
        stream: str,
        destination: str | None,
        fields: tuple[FieldDecision, ...],
        rule_ids: list[str],
        reasons: list[str],
        verdict: EgressVerdict | None,
        event_time_ms: int | None = None,
    ) -> Decision:
        return Decision(
            outcome=outcome,
            stream=stream,
            destination=verdict.destination if verdict else destination,
            fields=fields,
            rule_ids=tuple(dict.fromkeys(rule_ids)),
            reasons=tuple(reasons),
            policy_hash=self.policy_hash,
            mode=self.mode,
            egress=verdict,
            event_time_ms=event_time_ms,
        )


def _scanned(
    fp: FieldPlan, scan: ScanRule, found: Sequence[str], reasons: list[str]
) -> tuple[FieldDecision, bool]:
    """The decision for a scanned free-text field in which detectors found PII."""
    types = tuple(sorted(set(found)))
    counted = types if scan.types is None else tuple(t for t in types if t in scan.types)
    if not counted:
        return FieldDecision(fp.path, fp.pii_class, fp.action, fp.rule_id, types), False
    rule_id = fp.rule_id + ".scan"
    if scan.on_detected == "deny":
        reasons.append(f"field {fp.path!r}: detected {', '.join(counted)} and the policy denies it")
        return FieldDecision(fp.path, fp.pii_class, "drop", rule_id, types), True
    reasons.append(f"field {fp.path!r}: detected {', '.join(counted)}; {scan.on_detected}")
    return FieldDecision(fp.path, fp.pii_class, scan.on_detected, rule_id, types), False
