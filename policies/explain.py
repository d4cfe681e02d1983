"""Why an event got its decision: every rule considered, matched or not, and why.

Explain runs the same engine as enforcement and then walks the stream plan
and the egress steps beside the decision, so what it shows cannot drift from
what is enforced. Like the decision, it names fields and rules, never values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from policies.egress import LocatedAddress
from policies.engine import UNDECLARED, Decision, PolicyEngine, lookup_path

StepResult = Literal["matched", "not matched", "needs location", "denies"]


@dataclass(frozen=True, slots=True)
class ExplainStep:
    """One rule considered for an event."""

    rule_id: str
    subject: str
    result: StepResult
    action: str | None
    why: str


@dataclass(frozen=True, slots=True)
class Explanation:
    """The decision and the steps that led to it."""

    decision: Decision
    steps: tuple[ExplainStep, ...]


def explain(
    engine: PolicyEngine,
    event: Mapping[str, Any],
    stream: str,
    destination: str | None = None,
    detected: Mapping[str, Sequence[str]] | None = None,
    *,
    located: Sequence[LocatedAddress] | None = None,
) -> Explanation:
    """Decide and explain, rule by rule."""
    decision = engine.decide(event, stream, destination, detected, located=located)
    plan = engine.stream(stream)
    steps: list[ExplainStep] = []
    decided = {d.path: d for d in decision.fields}
    detected = detected or {}
    for path, fp in plan.fields.items():
        present, value = (
            lookup_path(event, fp.parts) if isinstance(event, Mapping) else (False, None)
        )
        if not present:
            why = "not in the event"
            if fp.required:
                steps.append(
                    ExplainStep(
                        fp.rule_id, path, "denies", None, f"{why}, and the field is required"
                    )
                )
            else:
                steps.append(ExplainStep(fp.rule_id, path, "not matched", None, why))
            continue
        fd = decided.get(path)
        why = f"declared as {fp.pii_class}"
        if fp.type != "any":
            why += f", type {fp.type}"
        if fp.scan is not None:
            found = list(detected.get(path, ()))
            if found:
                why += f"; scanned, detectors found {', '.join(sorted(set(found)))}"
                if fp.scan.types is not None:
                    why += f" (counted: {', '.join(fp.scan.types)})"
                why += f"; on detection: {fp.scan.on_detected} ({fp.scan.scope})"
            else:
                why += "; scanned, nothing detected"
        if fp.generalise is not None:
            opts = fp.generalise.model_dump(exclude_none=True)
            why += "; generalised by " + ", ".join(f"{k}={v}" for k, v in opts.items())
        if plan.key_field == path:
            why += "; the stream's key"
        if plan.event_time_field == path:
            why += "; the event time"
            if decision.event_time_ms is not None:
                why += f" ({decision.event_time_ms} ms)"
        bad_type = any(r.startswith(f"field {path!r}: expected") for r in decision.reasons)
        if bad_type:
            steps.append(
                ExplainStep(
                    fp.rule_id, path, "denies", None, f"{why}; but the value has the wrong type"
                )
            )
        elif fd is not None:
            steps.append(ExplainStep(fd.rule_id, path, "matched", fd.action, why))
        elif value is None:
            steps.append(ExplainStep(fp.rule_id, path, "not matched", None, "null in the event"))
    for fd in decision.fields:
        if fd.pii_class == UNDECLARED:
            result: StepResult = "denies" if plan.undeclared == "deny" else "matched"
            steps.append(
                ExplainStep(
                    fd.rule_id,
                    fd.path,
                    result,
                    fd.action,
                    f"not declared; the stream's undeclared_fields is {plan.undeclared}",
                )
            )
    for reason in decision.reasons:
        if reason.startswith("event-time field") and plan.event_time_field:
            steps.append(
                ExplainStep(
                    f"streams.{stream}.event_time", plan.event_time_field, "denies", None, reason
                )
            )
    if decision.egress is not None:
        for step in decision.egress.steps:
            res: StepResult = (
                "needs location"
                if step.result == "needs location"
                else ("matched" if step.result == "matched" else "not matched")
            )
            action = (
                decision.egress.outcome
                if step.rule_id == decision.egress.rule_id and (res == "matched")
                else None
            )
            steps.append(
                ExplainStep(step.rule_id, decision.egress.destination, res, action, step.why)
            )
    return Explanation(decision, tuple(steps))
