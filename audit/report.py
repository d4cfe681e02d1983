"""The audit report's content: one verifying pass over every instance log that also totals the
decisions, egress, placement, policy and key events of a period, for the DPO and the auditor."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from audit.canonical import parse_timestamp, utc_timestamp
from audit.keys import PublicKey
from audit.log import SIGNING_KEY_ROTATION
from audit.segments import instance_logs
from audit.shared import SharedIndex
from audit.verify import ProgressCallback, VerificationReport, verify_log

LIST_LIMIT = 2000  # rows kept per event list; totals always count everything


@dataclass
class InstanceStatus:
    """Verification of one instance log, as the report shows it."""

    name: str
    log_id: str | None
    intact: bool
    records: int
    tree_heads: int
    segments: int
    pinned: bool
    latest_root: str | None
    latest_tree_size: int | None
    latest_tree_head_time: str | None
    problem: str | None
    warnings: list[str]
    archived_records: int = 0  # before an archive checkpoint: counted, not read

    @classmethod
    def of(cls, name: str, report: VerificationReport) -> InstanceStatus:
        head = report.latest_tree_head
        return cls(
            name=name,
            log_id=report.log_id,
            intact=report.ok,
            records=report.records,
            tree_heads=report.tree_heads,
            segments=report.segments,
            pinned=report.pinned,
            latest_root=head.root_hash if head else None,
            latest_tree_size=head.tree_size if head else None,
            latest_tree_head_time=head.timestamp if head else None,
            problem=str(report.problem) if report.problem else None,
            warnings=list(report.warnings),
            archived_records=report.archived_records,
        )


@dataclass
class EventList:
    """Rows of one kind of event, capped at LIST_LIMIT, with the full count."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    total: int = 0

    def add(self, row: dict[str, Any]) -> None:
        self.total += 1
        if len(self.rows) < LIST_LIMIT:
            self.rows.append(row)


@dataclass
class AuditReport:
    """Everything the report formats render."""

    generated: str
    period_from: str | None
    period_to: str | None
    instances: list[InstanceStatus] = field(default_factory=list)
    records_in_period: int = 0
    first_ts: str | None = None
    last_ts: str | None = None
    by_type: Counter[str] = field(default_factory=Counter)
    decisions: Counter[str] = field(default_factory=Counter)  # outcome -> count
    # Decisions for an event id already decided in the period (per stream): a producer's
    # retry after a commit that failed (503) is decided, and audited, again.
    repeated_decisions: int = 0
    decided_events: set[tuple[str, str]] = field(default_factory=set, repr=False)
    by_stream: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    by_rule: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    by_destination: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    per_minute: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    egress: Counter[str] = field(default_factory=Counter)
    denied_egress: EventList = field(default_factory=EventList)
    placements: EventList = field(default_factory=EventList)
    policies: EventList = field(default_factory=EventList)
    policy_rejections: EventList = field(default_factory=EventList)
    key_rotations: EventList = field(default_factory=EventList)
    recoveries: EventList = field(default_factory=EventList)

    @property
    def intact(self) -> bool:
        return bool(self.instances) and all(i.intact for i in self.instances)

    @property
    def pinned(self) -> bool:
        return bool(self.instances) and all(i.pinned for i in self.instances)

    def timeline(self, max_buckets: int = 48) -> tuple[int, list[tuple[str, Counter[str]]]]:
        """Decisions over time in at most `max_buckets` equal buckets: (bucket seconds, rows)."""
        if not self.per_minute:
            return 60, []
        minutes = sorted(self.per_minute)
        start = parse_timestamp(minutes[0]).timestamp()
        end = parse_timestamp(minutes[-1]).timestamp() + 60
        step = 60
        for candidate in (60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400, 30 * 86400):
            step = candidate
            if (end - start) / candidate <= max_buckets:
                break
        origin = start - start % step
        buckets: dict[int, Counter[str]] = {}
        count = int((end - origin + step - 1) // step)
        for index in range(max(count, 1)):
            buckets[index] = Counter()
        for minute, counts in self.per_minute.items():
            index = int((parse_timestamp(minute).timestamp() - origin) // step)
            buckets.setdefault(index, Counter()).update(counts)
        rows = [
            (utc_timestamp(datetime.fromtimestamp(origin + i * step, UTC))[:16] + "Z", c)
            for i, c in sorted(buckets.items())
        ]
        return step, rows


def _as_str(value: Any) -> str:
    return "" if value is None else str(value)


class _Collector:
    """The visitor that folds each verified record of one instance into the report."""

    def __init__(self, report: AuditReport, instance: str, start: str | None, end: str | None):
        self.report = report
        self.instance = instance
        self.start = start
        self.end = end
        self.shared = SharedIndex()  # sees every record: definitions may precede the period

    def __call__(self, record: dict[str, Any], segment: str, offset: int) -> None:
        record = self.shared.add(record, segment)  # the verifier has checked the references
        ts = record["ts"]
        if (self.start is not None and ts < self.start) or (
            self.end is not None and ts >= self.end
        ):
            return
        report = self.report
        report.records_in_period += 1
        if report.first_ts is None or ts < report.first_ts:
            report.first_ts = ts
        if report.last_ts is None or ts > report.last_ts:
            report.last_ts = ts
        kind = record["type"]
        report.by_type[kind] += 1
        where = {"instance": self.instance, "seq": record["seq"], "ts": ts}
        if kind == "decision":
            self.decision(record, ts)
        elif kind == "egress":
            outcome = _as_str(record.get("outcome"))
            report.egress[outcome] += 1
            destination = _as_str(record.get("destination"))
            report.by_destination[destination][outcome] += 1
            rule = record.get("rule_id")
            if rule:
                report.by_rule[str(rule)][outcome] += 1
            if outcome == "deny":
                report.denied_egress.add(
                    {
                        **where,
                        "component": _as_str(record.get("component")),
                        "destination": destination,
                        "rule_id": _as_str(rule),
                        "reasons": "; ".join(map(str, record.get("reasons") or [])),
                        "job": _as_str(record.get("job")),
                    }
                )
        elif kind == "placement":
            checks = record.get("checks") or []
            failed = [
                str(c.get("name"))
                for c in checks
                if isinstance(c, dict) and c.get("status") not in ("pass", "ok", None)
            ]
            report.placements.add(
                {
                    **where,
                    "component": _as_str(record.get("component")),
                    "outcome": _as_str(record.get("outcome")),
                    "mode": _as_str(record.get("mode")),
                    "checks": len(checks),
                    "not_passed": ", ".join(failed),
                    "policy_hash": _as_str(record.get("policy_hash")),
                }
            )
        elif kind == "policy_loaded":
            report.policies.add(
                {
                    **where,
                    "policy_hash": _as_str(record.get("policy_hash")),
                    "name": _as_str(record.get("name")),
                    "version": _as_str(record.get("version")),
                    "mode": _as_str(record.get("mode")),
                }
            )
        elif kind == "policy_rejected":
            report.policy_rejections.add(
                {
                    **where,
                    "path": _as_str(record.get("path")),
                    "kept_policy_hash": _as_str(record.get("kept_policy_hash")),
                    "issues": len(record.get("issues") or []),
                }
            )
        elif kind in ("key_rotation", SIGNING_KEY_ROTATION):
            # A keyring change (`fjordgate keys new|rotate|shred`) names its `action` and the
            # `key_id` it created or destroyed; a record without them is a rotation.
            report.key_rotations.add(
                {
                    **where,
                    "key": "audit signing key"
                    if kind == SIGNING_KEY_ROTATION
                    else _as_str(record.get("keyring") or record.get("purpose") or "key"),
                    "action": _as_str(record.get("action") or "rotate"),
                    "key_id": _as_str(record.get("key_id") or record.get("new_key_id")),
                    "old_key_id": _as_str(record.get("old_key_id")),
                    "new_key_id": _as_str(record.get("new_key_id")),
                }
            )
        elif kind == "recovery":
            report.recoveries.add(
                {
                    **where,
                    "reason": _as_str(record.get("reason")),
                    "segment": _as_str(record.get("segment")),
                    "offset": record.get("offset"),
                    "bytes_discarded": record.get("bytes_discarded"),
                }
            )

    def decision(self, record: dict[str, Any], ts: str) -> None:
        report = self.report
        outcome = _as_str(record.get("outcome")) or "unknown"
        report.decisions[outcome] += 1
        stream = _as_str(record.get("stream"))
        report.by_stream[stream][outcome] += 1
        event_id = record.get("event_id")
        if event_id is not None:
            key = (stream, _as_str(event_id))
            if key in report.decided_events:
                report.repeated_decisions += 1
            else:
                report.decided_events.add(key)
        destination = record.get("destination")
        if destination:
            report.by_destination[str(destination)][outcome] += 1
        rules = {str(r) for r in record.get("rule_ids") or []}
        for item in record.get("fields") or []:
            if isinstance(item, dict) and item.get("rule_id"):
                rules.add(str(item["rule_id"]))
        for rule in rules:
            report.by_rule[rule][outcome] += 1
        report.per_minute[ts[:16] + ":00Z"][outcome] += 1


def build_report(
    directory: Path,
    public_keys: Sequence[PublicKey] = (),
    *,
    period_from: datetime | None = None,
    period_to: datetime | None = None,
    progress: ProgressCallback | None = None,
) -> AuditReport:
    """Verify every instance log under `directory` and total the records of the period."""
    start = utc_timestamp(period_from) if period_from else None
    end = utc_timestamp(period_to) if period_to else None
    report = AuditReport(generated=utc_timestamp(), period_from=start, period_to=end)
    logs = instance_logs(directory)
    for log in logs:
        name = log.name if log != directory else directory.name
        verification = verify_log(
            log, public_keys, visitor=_Collector(report, name, start, end), progress=progress
        )
        report.instances.append(InstanceStatus.of(name, verification))
    return report
