"""The enforcement pipeline: a list of steps per stream, composed from the policy in force.

`Pipeline.run` passes one record through its steps in order; a rejection
skips the remaining steps except those that account for refusals (audit,
dead-letter). `PolicyPipelines` holds one pipeline per declared stream for
one policy, and is replaced whole when the policy is reloaded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway import native
from gateway.errors import EventRejected
from gateway.native import NativeCore
from gateway.record import EventRecord
from gateway.steps import (
    Audit,
    DeadLetter,
    Decide,
    DecisionEngine,
    DecisionShapes,
    Encrypter,
    Identify,
    Parse,
    Publish,
    Redactor,
    Step,
    Tag,
    TextScanner,
    Tokeniser,
    Transform,
    Validate,
)


class Pipeline:
    """Steps over one event record, run in order."""

    __slots__ = ("native", "steps", "stream")

    def __init__(
        self, stream: str, steps: Sequence[Step], native: NativeCore | None = None
    ) -> None:
        self.stream = stream
        self.steps = tuple(steps)
        # The compiled fast path (gateway.native), or None: the steps do everything.
        self.native = native

    @property
    def step_names(self) -> list[str]:
        """The steps' names in order (for `gateway explain` and tests)."""
        return [step.name for step in self.steps]

    def run(self, record: EventRecord) -> EventRecord:
        """Pass `record` through every step; a rejection is recorded, not raised."""
        for step in self.steps:
            if record.rejected is not None and not step.on_rejected:
                continue
            try:
                step(record)
            except EventRejected as exc:
                record.rejected = exc
                record.status = "rejected"
        return record

    def run_array(
        self, body: bytes, source: str, max_events: int
    ) -> tuple[int, list[EventRecord] | None] | None:
        """A JSON-array body's records, run (the HTTP path's fast way to `make_records`
        then `run_batch`): the compiled core makes the records of the events it finishes
        without a bytes object each, and the steps run over the rest. (events, records),
        records None when there are more than `max_events` (none made); None when there
        is no compiled core or it does not vouch for the body: parse it and `run_batch`."""
        if self.native is None:
            return None
        made = self.native.run_array(body, self.stream, source, max_events)
        if made is None:
            return None
        count, records, left = made
        if left:
            self._run_steps(left)
        return count, records

    def run_batch(self, records: Sequence[EventRecord]) -> None:
        """Pass a batch through every step, step by step: the same outcome per record as
        `run`, with one call per step and batch (the gateway's path).

        The compiled core, when there is one, finishes the records it can first; the
        steps run over the rest."""
        if self.native is not None:
            records = self.native.run(records)
            if not records:
                return
        self._run_steps(records)

    def _run_steps(self, records: Sequence[EventRecord]) -> None:
        """Every step over the batch, one step at a time."""
        for step in self.steps:
            step.batch(records)


@dataclass(frozen=True)
class PiiTools:
    """The detectors and transforms the steps use (from `gateway.pii`)."""

    detector: TextScanner
    tokenisers: Callable[[str | None], Tokeniser]
    cipher: Encrypter
    redactor: Redactor


@dataclass(frozen=True)
class Topics:
    """Topic names per stream: `{stream}` in a template is replaced by the stream's name."""

    tagged: str = "{stream}.tagged"
    raw: str = "{stream}.raw"
    dead_letter: str = "{stream}.dead-letter"

    def tagged_for(self, stream: str) -> str:
        return self.tagged.replace("{stream}", stream)

    def raw_for(self, stream: str) -> str:
        return self.raw.replace("{stream}", stream)

    def dead_letter_for(self, stream: str) -> str:
        return self.dead_letter.replace("{stream}", stream)


def build_pipeline(
    policy: Any,
    engine: DecisionEngine,
    stream: str,
    tools: PiiTools,
    *,
    topics: Topics,
    destination: str | None,
    egress_per_event: bool = True,
    source: str = "http",
    event_id_field: str = "event_id",
    assign_missing_ids: bool = True,
) -> Pipeline:
    """Compose the steps one stream needs under `policy`.

    `destination` names where minimised events go (audited with every
    decision). With `egress_per_event` the engine also decides egress to it
    per event, which suits destinations the policy decides from their text
    (loopback, private addresses); otherwise the gateway checks egress with
    location facts once at start (`policies.location.decide_egress`).

    The tag step is there only when the stream declares fields to scan; the
    dead-letter step only for Kafka ingress (an HTTP producer gets the reason
    in its response instead).
    """
    declared = policy.streams[stream]
    policy_hash: str = policy.content_hash
    egress_destination = destination if egress_per_event else None
    steps: list[Step] = [
        Parse(),
        Identify(event_id_field, assign_missing=assign_missing_ids),
        Validate(declared),
    ]
    if any(rule.scan is not None for rule in declared.fields.values()):
        steps.append(Tag(declared, tools.detector))
    steps += [
        # Validate runs before: memoising decisions by event shape is sound.
        Decide(engine, destination=egress_destination, shapes=DecisionShapes()),
        Transform(
            stream,
            declared,
            tokenisers=tools.tokenisers,
            cipher=tools.cipher,
            redactor=tools.redactor,
            event_id_field=event_id_field,
        ),
        Audit(source=source, policy_hash=policy_hash, destination=destination),
        Publish(
            topic=topics.tagged_for(stream),
            key_field=declared.key,
            policy_hash=policy_hash,
            stream=stream,
        ),
    ]
    if source == "kafka":
        steps.append(
            DeadLetter(topic=topics.dead_letter_for(stream), policy_hash=policy_hash, stream=stream)
        )
    return Pipeline(stream, steps, native.attach(declared, steps))


@dataclass
class PolicyPipelines:
    """One policy in force: its engine and a pipeline per declared stream."""

    policy: Any
    engine: Any
    pipelines: dict[str, Pipeline] = field(default_factory=dict)

    @property
    def content_hash(self) -> str:
        return str(self.policy.content_hash)

    @classmethod
    def build(
        cls,
        policy: Any,
        engine: Any,
        tools: PiiTools,
        *,
        topics: Topics,
        destination: str | None,
        egress_per_event: bool = True,
        source: str = "http",
        event_id_field: str = "event_id",
    ) -> PolicyPipelines:
        pipelines = {
            name: build_pipeline(
                policy,
                engine,
                name,
                tools,
                topics=topics,
                destination=destination,
                egress_per_event=egress_per_event,
                source=source,
                event_id_field=event_id_field,
            )
            for name in policy.streams
        }
        return cls(policy=policy, engine=engine, pipelines=pipelines)

    def get(self, stream: str) -> Pipeline | None:
        return self.pipelines.get(stream)
