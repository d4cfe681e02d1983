"""The one record every pipeline step reads and fills in for a single event.

A mutable slotted dataclass, not a dict: it is created once per event on the
hot path, and each step owns the fields it sets (parse sets `event`, tag sets
`detected`, decide sets `decision`, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.errors import EventRejected

Headers = list[tuple[str, str | bytes | None]]


@dataclass(slots=True)
class OutgoingMessage:
    """One message the publisher must make durable: topic, key, value, headers."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Headers
    event_id: str


@dataclass(slots=True)
class EventRecord:
    """One event on its way through the pipeline.

    `raw` holds the bytes as received (NDJSON line, Kafka message value) until
    parse turns them into `event`; a JSON-array batch arrives already parsed.
    """

    stream: str
    index: int = 0
    raw: bytes | None = None
    event: dict[str, Any] | None = None
    event_id: str | None = None
    source: str = "http"
    detected: dict[str, list[str]] = field(default_factory=dict)  # path -> PII types found
    findings: dict[str, list[Any]] = field(default_factory=dict)  # path -> gateway.pii Findings
    decision: Any = None  # policies.Decision once decided
    decision_entry: Any = None  # steps.DecisionEntry when the decision was memoised
    output: dict[str, Any] | None = None  # the minimised event
    pseudonyms: dict[str, str] = field(default_factory=dict)  # path -> pseudonym, for audit
    transformed: list[tuple[str, str]] = field(default_factory=list)  # (path, action)
    audit: dict[str, Any] | None = None
    message: OutgoingMessage | None = None
    rejected: EventRejected | None = None
    status: str = "pending"  # pending | accepted | duplicate | rejected

    @property
    def ok(self) -> bool:
        """Whether the event is still on its way (not rejected by a step)."""
        return self.rejected is None
