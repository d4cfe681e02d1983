"""Start-time checks of a job's destinations and state directory, and their audit trail.

The runner calls a `StartGuard` for every sink and side output destination and
for the state directory before it reads a single event. `PolicyGuard` decides
with the policy's egress and placement rules (`policies.location`) and writes
each decision to the audit log; in `enforce` mode a refusal stops the job.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from processor.errors import EgressDenied

if TYPE_CHECKING:
    from audit import AuditLog
    from policies import Policy
    from policies.location import Locator

log = structlog.get_logger(__name__)


class StartGuard(Protocol):
    """What the runner asks before a job starts, and where it reports notable events."""

    def check_destination(self, destination: str, *, job: str, role: str) -> None:
        """Raise EgressDenied when data of this job may not go to `destination`."""

    def check_state_dir(self, path: Path, *, job: str) -> None:
        """Raise EgressDenied when state may not be kept at `path`."""

    def record(self, record: Mapping[str, Any]) -> None:
        """Audit a processor event (recovery, checkpoint restored, ...)."""


class RecordingGuard:
    """Allows everything and keeps the records in memory (no policy configured).

    For tests and policy-less local runs; `fjordgate processor run` warns when
    it runs a job this way.
    """

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def check_destination(self, destination: str, *, job: str, role: str) -> None:
        self.records.append(
            {"type": "egress", "component": "processor", "job": job, "role": role,
             "destination": destination, "outcome": "allow", "rule_id": "no-policy"}
        )  # fmt: skip

    def check_state_dir(self, path: Path, *, job: str) -> None:
        self.records.append(
            {"type": "placement", "component": "processor", "job": job, "outcome": "skip",
             "mode": "none", "checks": [{"name": "state.filesystem", "status": "skip",
                                         "detail": f"no policy: {path} not checked"}]}
        )  # fmt: skip

    def record(self, record: Mapping[str, Any]) -> None:
        self.records.append(dict(record))


class PolicyGuard:
    """Decides with the policy's egress and placement rules and audits every decision."""

    def __init__(self, policy: Policy, locator: Locator, audit_log: AuditLog | None) -> None:
        self.policy = policy
        self.locator = locator
        self.audit_log = audit_log

    def _audit(self, record: Mapping[str, Any]) -> None:
        if self.audit_log is not None:
            self.audit_log.append(record)

    def check_destination(self, destination: str, *, job: str, role: str) -> None:
        from policies.location import decide_egress

        base = {
            "type": "egress",
            "component": "processor",
            "job": job,
            "role": role,
            "destination": destination,
            "policy_hash": self.policy.content_hash,
        }
        if destination.startswith("file://"):
            # A local file never leaves the machine; still recorded so the
            # audit trail lists every place results were written.
            self._audit({**base, "outcome": "allow", "rule_id": "local-file", "reasons": []})
            return
        decision = decide_egress(destination, self.policy, self.locator)
        self._audit(
            {
                **base,
                "outcome": decision.outcome,
                "rule_id": decision.rule_id,
                "reasons": list(decision.reasons),
                "countries": sorted({loc.country or "??" for loc in decision.locations}),
                "mode": self.policy.mode,
            }
        )
        if decision.outcome == "deny":
            if self.policy.mode == "enforce":
                raise EgressDenied(
                    f"job {job}: {role} destination {destination} refused by rule "
                    f"{decision.rule_id}: {'; '.join(decision.reasons)}"
                )
            log.warning("egress_denied_observe_mode", job=job, role=role, rule=decision.rule_id)

    def check_state_dir(self, path: Path, *, job: str) -> None:
        from policies.location import PlacementConfig
        from policies.location.placement import check_state_filesystem, placement_record

        result = check_state_filesystem(self.policy, PlacementConfig(state_dir=path))
        # The same attestation shape as the gateway's, so the audit report reads both alike.
        self._audit(
            {**placement_record([result], self.policy), "component": "processor", "job": job}
        )
        if result.status == "fail" and self.policy.mode == "enforce":
            raise EgressDenied(
                f"job {job}: state directory {path} fails placement: {result.detail}. {result.hint}"
            )

    def record(self, record: Mapping[str, Any]) -> None:
        self._audit({"component": "processor", **record})
