"""The pipeline's steps: small callables over one `EventRecord`, each testable alone.

In the spirit of structlog's processors: a step takes the record, fills in
the part it owns and returns it, or raises `EventRejected` to take the event
out of the normal path. Steps marked `on_rejected` (audit, dead-letter) still
run for a rejected record, so that every refusal is accounted for.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from itertools import islice
from math import isfinite
from typing import Any, ClassVar, Protocol

import orjson

from audit.shared import SHARED, SharedMembers
from gateway.errors import EventRejected
from gateway.fields import (
    MISSING,
    generalise_value,
    get_path,
    leaf_paths,
    nested_parts,
    set_path,
)
from gateway.record import EventRecord, OutgoingMessage
from policies import json_type_name, parse_event_time

EVENT_ID_HEADER = "fjordgate-event-id"
POLICY_HEADER = "fjordgate-policy"
STREAM_HEADER = "fjordgate-stream"
REASON_HEADER = "fjordgate-reason"
REASON_CODE_HEADER = "fjordgate-reason-code"

# Detector type names that the policy vocabulary spells differently.
_DETECTED_AS_POLICY_CLASS = {"kontonummer": "bank_account"}

# -- what the steps need from other packages (structural, per the interface contract) ---------


class FieldDecisionLike(Protocol):
    @property
    def path(self) -> str: ...
    @property
    def action(self) -> str: ...


class DecisionLike(Protocol):
    @property
    def outcome(self) -> str: ...
    @property
    def fields(self) -> Sequence[Any]: ...
    @property
    def reasons(self) -> Sequence[str]: ...
    @property
    def policy_hash(self) -> str: ...
    def to_record(self) -> dict[str, Any]: ...


class DecisionEngine(Protocol):
    def decide(
        self,
        event: Mapping[str, Any],
        stream: str,
        destination: str | None = None,
        detected: Mapping[str, Sequence[str]] | None = None,
    ) -> Any: ...


class TextScanner(Protocol):
    def scan(self, text: str) -> list[Any]: ...


class Tokeniser(Protocol):
    def pseudonymise(self, value: str) -> str: ...


class Encrypter(Protocol):
    def encrypt(self, value: str, *, stream: str, field: str, event_id: str) -> str: ...


Redactor = Callable[..., str]

# -- steps --------------------------------------------------------------------------------------


class Step(ABC):
    """Base of the steps: a name for metrics and errors, and whether it sees rejected records."""

    name: ClassVar[str] = "step"
    on_rejected: ClassVar[bool] = False

    @abstractmethod
    def __call__(self, record: EventRecord) -> EventRecord:
        """Process one event record and return it (the same object, updated)."""

    def batch(self, records: Sequence[EventRecord]) -> None:
        """Process a batch, one record at a time; a rejection is recorded on its record.

        The gateway runs whole batches step by step (`Pipeline.run_batch`): one
        call per step and batch instead of one per step and event.
        """
        step = self.__call__
        if self.on_rejected:
            for record in records:
                step(record)
            return
        for record in records:
            if record.rejected is None:
                try:
                    step(record)
                except EventRejected as exc:
                    record.rejected = exc
                    record.status = "rejected"


class Parse(Step):
    """Bytes → JSON object (a JSON-array batch arrives parsed when orjson read the body,
    as bytes when the compiled split did: `gateway.native.split_array`)."""

    name = "parse"

    def __call__(self, record: EventRecord) -> EventRecord:
        if record.event is not None:
            return record
        if not record.raw:
            raise EventRejected("empty_event", "the event is empty; send one JSON object")
        try:
            value = orjson.loads(record.raw)
        except orjson.JSONDecodeError as exc:
            # Position only: orjson's message may quote the input.
            raise EventRejected(
                "invalid_json",
                f"the event is not valid JSON (line {exc.lineno}, column {exc.colno})",
            ) from None
        if not isinstance(value, dict):
            raise EventRejected(
                "not_an_object", f"an event must be a JSON object, not {json_type_name(value)}"
            )
        record.event = value
        return record


class Identify(Step):
    """Take the event id (the idempotency key) out of its field, or assign one.

    The id leaves the event before the policy sees it: it is the gateway's
    envelope, not a field of the stream, and goes back into the output as is.
    """

    name = "identify"
    max_length: ClassVar[int] = 200

    def __init__(self, field: str = "event_id", *, assign_missing: bool = True) -> None:
        self.field = field
        self.assign_missing = assign_missing

    def __call__(self, record: EventRecord) -> EventRecord:
        assert record.event is not None
        value = record.event.pop(self.field, None)
        if value is None:
            if not self.assign_missing:
                raise EventRejected(
                    "missing_event_id",
                    f"field {self.field!r} is required: a unique id per event, "
                    "so that a retried batch is not published twice",
                    field=self.field,
                )
            record.event_id = uuid.uuid4().hex
            return record
        if type(value) is str and 0 < len(value) <= self.max_length and value.isprintable():
            record.event_id = value
            return record
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise EventRejected(
                "invalid_event_id",
                f"field {self.field!r} must be a string or an integer, not {json_type_name(value)}",
                field=self.field,
            )
        text = str(value)
        if not 0 < len(text) <= self.max_length or not text.isprintable():
            raise EventRejected(
                "invalid_event_id",
                f"field {self.field!r} must be 1 to {self.max_length} printable characters",
                field=self.field,
            )
        record.event_id = text
        return record


_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}


class Validate(Step):
    """Check an event against its stream's declared schema: types, required fields, event time."""

    name = "validate"

    def __init__(self, stream: Any) -> None:
        # (path, parts for a nested path else None, types, required, type name)
        self._checks: list[
            tuple[str, tuple[str, ...] | None, tuple[type, ...] | None, bool, str]
        ] = []
        for path, rule in stream.fields.items():
            types = _TYPES.get(rule.type)
            self._checks.append((path, nested_parts(path), types, bool(rule.required), rule.type))
        event_time = stream.event_time
        self._time: tuple[str, tuple[str, ...] | None, list[str], bool] | None = None
        self._iso = False
        if event_time is not None:
            self._time = (
                event_time.field,
                nested_parts(event_time.field),
                list(event_time.formats),
                bool(event_time.required),
            )
            self._iso = "iso8601" in event_time.formats
        self._deny_undeclared = stream.undeclared_fields == "deny"
        self._declared = set(stream.fields)

    def __call__(self, record: EventRecord) -> EventRecord:
        event = record.event
        assert event is not None
        for path, parts, types, required, type_name in self._checks:
            value = event.get(path) if parts is None else get_path(event, parts)
            if value is None or value is MISSING:
                if required:
                    raise EventRejected("missing_field", f"field {path!r} is required", field=path)
                continue
            # `type(value) in types` is exact for what JSON decodes to (a bool is no int
            # there); anything else gets isinstance, which a bool passes for int only.
            if (
                types is not None
                and type(value) not in types
                and (not isinstance(value, types) or isinstance(value, bool))
            ):
                raise EventRejected(
                    "wrong_type",
                    f"field {path!r} must be {type_name}, not {json_type_name(value)}",
                    field=path,
                )
        if self._time is not None:
            self._check_time(event)
        if self._deny_undeclared:
            for path in leaf_paths(event):
                if path not in self._declared and not any(
                    path.startswith(d + ".") for d in self._declared
                ):
                    raise EventRejected(
                        "undeclared_field",
                        f"field {path!r} is not declared for stream {record.stream!r}, "
                        "and the policy denies undeclared fields",
                        field=path,
                    )
        return record

    def _check_time(self, event: dict[str, Any]) -> None:
        assert self._time is not None
        path, parts, formats, required = self._time
        value = event.get(path) if parts is None else get_path(event, parts)
        if value is None or value is MISSING:
            if required:
                raise EventRejected(
                    "missing_event_time", f"event-time field {path!r} is required", field=path
                )
            return
        if self._iso and type(value) is str:
            # The common case first: the engine's rule for an ISO 8601 string, without
            # computing the milliseconds, which the gateway does not use.
            try:
                if _from_iso(value).tzinfo is not None:
                    return
            except ValueError:
                pass
        millis, why = parse_event_time(value, formats)
        if millis is None:
            raise EventRejected(
                "invalid_event_time",
                f"event-time field {path!r}: {why} (accepted: {', '.join(formats)})",
                field=path,
            )


_from_iso = datetime.fromisoformat


class Tag(Step):
    """Run the detectors on the free-text fields the policy says to scan.

    What a text held is kept per field for the last `cache_size` distinct texts (the
    oldest quarter is forgotten when it is full):
    free text in event streams repeats (templated notes, the same address), and a
    scan costs several times the event's parse (bench/gateway). The entries live
    in this process's memory only, bounded, as the events in flight do.
    """

    name = "tag"
    cache_size: ClassVar[int] = 4096

    def __init__(self, stream: Any, detector: TextScanner) -> None:
        self.detector = detector
        self._fields: list[
            tuple[str, tuple[str, ...] | None, frozenset[str] | None, dict[str, _Scanned]]
        ] = []
        for path, rule in stream.fields.items():
            if rule.scan is not None:
                wanted = frozenset(rule.scan.types) if rule.scan.types else None
                self._fields.append((path, nested_parts(path), wanted, {}))

    def __call__(self, record: EventRecord) -> EventRecord:
        event = record.event
        assert event is not None
        for path, parts, wanted, cache in self._fields:
            value = event.get(path) if parts is None else get_path(event, parts)
            if type(value) is not str or not value:
                continue
            scanned = cache.get(value)
            if scanned is None:
                scanned = self._scan(value, wanted)
                if len(cache) >= self.cache_size:
                    _forget_oldest(cache, self.cache_size)
                cache[value] = scanned
            if scanned is not _NOTHING:
                findings, types = scanned
                if record.findings is None:
                    record.findings = {}
                    record.detected = {}
                assert record.detected is not None
                record.findings[path] = findings
                record.detected[path] = list(types)
        return record

    def _scan(self, text: str, wanted: frozenset[str] | None) -> _Scanned:
        findings = self.detector.scan(text)
        if wanted is not None:
            findings = [
                f for f in findings if _DETECTED_AS_POLICY_CLASS.get(f.type, f.type) in wanted
            ]
        if not findings:
            return _NOTHING
        types = sorted({_DETECTED_AS_POLICY_CLASS.get(f.type, f.type) for f in findings})
        return findings, tuple(types)


_Scanned = tuple[list[Any], tuple[str, ...]]


def _forget_oldest(cache: dict[str, Any], size: int) -> None:
    """Drop the oldest quarter of a full insertion-ordered cache."""
    # Not one entry per insert: a dict's iterator walks the deleted slots at its front,
    # so popping the oldest each time cost 2.5 µs per insert once full (0.1 µs this way).
    for old in list(islice(cache, size // 4 or 1)):
        del cache[old]


_NOTHING: _Scanned = ([], ())


class DecisionShapes:
    """Decisions memoised by the shape of an event, for the flat events most streams carry.

    The engine's decision depends on which fields an event has, the JSON type of
    each, the PII types detected per field and (for a valid event time) nothing
    else; the destination is fixed per pipeline. So events with the same top-level
    field names, value types and detections get the same decision, and the second
    one need not be computed (measured: `decide` was the largest step of the
    pipeline). Only `allow` decisions are kept; events with nested objects or
    arrays are not memoised. Valid only after `Validate`, which refuses an invalid
    event time by the engine's own rule: the memoised decision's `event_time_ms`
    is the first event's, and the gateway does not use it.
    """

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self.entries: dict[tuple[Any, ...], DecisionEntry] = {}
        self.hits = 0
        self.misses = 0

    @staticmethod
    def shape(
        event: Mapping[str, Any], detected: Mapping[str, Sequence[str]] | None
    ) -> tuple[Any, ...] | None:
        values = event.values()
        kinds = tuple(map(type, values))
        # What the value types allow, looked up by them (a stream has few): three scans
        # of `kinds` per event cost more than one lookup (measured: shape 1.5 -> 1.3 µs).
        verdict = _KIND_VERDICTS.get(kinds)
        if verdict is None:
            verdict = _kind_verdict(kinds)
            if len(_KIND_VERDICTS) < 4096:
                _KIND_VERDICTS[kinds] = verdict
        if verdict is not _PLAIN:
            if verdict is _NESTED:
                return None
            for value in values:
                if type(value) is float and not isfinite(value):
                    return None
        if detected:
            # In the tag step's field order, which is fixed per pipeline; paths and types
            # as two tuples, built without a Python-level loop.
            return (tuple(event), kinds, tuple(detected), tuple(map(tuple, detected.values())))
        return (tuple(event), kinds)

    def get(self, shape: tuple[Any, ...]) -> DecisionEntry | None:
        return self.entries.get(shape)

    def put(self, shape: tuple[Any, ...], entry: DecisionEntry) -> None:
        if len(self.entries) >= self.capacity:
            self.entries.clear()  # rare: more shapes than capacity; start again
        self.entries[shape] = entry


_PLAIN, _WITH_FLOATS, _NESTED = "plain", "with floats", "nested"
_KIND_VERDICTS: dict[tuple[type, ...], str] = {}


def _kind_verdict(kinds: tuple[type, ...]) -> str:
    """Whether events with these value types are memoised, and whether their floats
    need a finiteness check first."""
    if dict in kinds or list in kinds:
        return _NESTED
    return _WITH_FLOATS if float in kinds else _PLAIN


class DecisionEntry:
    """A decision and, once made, what the steps derive from it alone: the transform's
    plan and the audit record's shared part."""

    __slots__ = ("audit_base", "decision", "plan")

    def __init__(self, decision: Any) -> None:
        self.decision = decision
        self.audit_base: dict[str, Any] | None = None
        self.plan: list[_PlanItem] | None = None


class Decide(Step):
    """Ask the policy engine for the decision; a deny in `enforce` mode rejects the event
    (in `observe` mode it is audited and the event passes, minimised)."""

    name = "decide"

    def __init__(
        self,
        engine: DecisionEngine,
        *,
        destination: str | None,
        shapes: DecisionShapes | None = None,
    ) -> None:
        self.engine = engine
        self.destination = destination
        self.shapes = shapes

    def __call__(self, record: EventRecord) -> EventRecord:
        event = record.event
        assert event is not None
        shapes = self.shapes
        shape = shapes.shape(event, record.detected) if shapes is not None else None
        if shape is not None and shapes is not None:
            entry = shapes.get(shape)
            if entry is not None:
                shapes.hits += 1
                record.decision = entry.decision
                record.decision_entry = entry
                return record
            shapes.misses += 1
        decision = self.engine.decide(
            event, record.stream, self.destination, record.detected or None
        )
        record.decision = decision
        if decision.blocks:
            egress = decision.egress
            allowed_egress = (
                egress.reasons if egress is not None and egress.outcome == "allow" else ()
            )
            reasons = "; ".join(r for r in decision.reasons if r not in allowed_egress)
            reasons = reasons or "the policy denies this event"
            raise EventRejected("denied", f"denied by policy: {reasons}")
        if shape is not None and shapes is not None and decision.outcome == "allow":
            entry = DecisionEntry(decision)
            shapes.put(shape, entry)
            record.decision_entry = entry
        return record


_PlanItem = tuple[str, tuple[str, ...] | None, str, Callable[[str], str] | None, tuple[str, str]]


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode("utf-8")


class Transform(Step):
    """Build the minimised event from the decision: keep, pseudonymise, encrypt, redact,
    generalise or drop each field. Only decided fields (and the event id) are kept."""

    name = "transform"

    def __init__(
        self,
        stream_name: str,
        stream: Any,
        *,
        tokenisers: Callable[[str | None], Tokeniser],
        cipher: Encrypter,
        redactor: Redactor,
        event_id_field: str = "event_id",
    ) -> None:
        self.stream_name = stream_name
        self.tokenisers = tokenisers
        self.cipher = cipher
        self.redactor = redactor
        self.event_id_field = event_id_field
        self._rules = dict(stream.fields)
        # Per field, text -> (its findings, the text with their spans redacted).
        self._redacted: dict[str, dict[str, tuple[Any, str]]] = {}

    def plan(self, decision: Any) -> list[_PlanItem]:
        """What the transform does for every event under `decision`, worked out once:
        per decided field its path, the parts of a nested path (else None), the action,
        for a whole-value pseudonym the pseudonymiser's bound method, and the
        (path, action) pair that `transformed` lists (made once, not per event)."""
        out: list[_PlanItem] = []
        for fd in decision.fields:
            rule = self._rules.get(fd.path)
            scan = rule.scan if rule is not None else None
            pseudonymise = None
            if fd.action == "pseudonymise" and (scan is None or scan.scope != "spans"):
                key_id = rule.key_id if rule is not None else None
                pseudonymise = self.tokenisers(key_id).pseudonymise
            out.append(
                (fd.path, nested_parts(fd.path), fd.action, pseudonymise, (fd.path, fd.action))
            )
        return out

    def __call__(self, record: EventRecord) -> EventRecord:
        event = record.event
        decision = record.decision
        assert event is not None and decision is not None
        entry = record.decision_entry
        plan = entry.plan if entry is not None else None
        if plan is None:
            plan = self.plan(decision)
            if entry is not None:
                entry.plan = plan
        out: dict[str, Any] = {}
        transformed: list[tuple[str, str]] = []
        findings = record.findings
        missing = MISSING
        for path, parts, action, pseudonymise, change in plan:
            # Most fields are top level: a plain dict lookup, no path walk.
            value = event.get(path, missing) if parts is None else get_path(event, parts)
            if value is missing:
                continue
            if pseudonymise is not None:
                value = pseudonymise(value if type(value) is str else _as_text(value))
                if record.pseudonyms is None:
                    record.pseudonyms = {}
                record.pseudonyms[path] = value
                transformed.append(change)
            elif action == "allow":
                if findings is not None and path in findings:
                    # The policy allowed a field in which detectors found something
                    # (observe-only scan): keep, but say so in the audit record.
                    transformed.append(change)
            elif action == "drop":
                transformed.append(change)
                continue
            else:
                value = self._apply(record, path, action, value)
                transformed.append(change)
            if parts is None:
                out[path] = value
            else:
                set_path(out, parts, value)
        if record.event_id is not None:
            out[self.event_id_field] = record.event_id
        record.output = out
        record.transformed = transformed
        return record

    def _apply(self, record: EventRecord, path: str, action: str, value: Any) -> Any:
        rule = self._rules.get(path)
        findings = record.findings.get(path) if record.findings is not None else None
        scan = rule.scan if rule is not None else None
        spans = bool(findings) and scan is not None and scan.scope == "spans"
        key_id = rule.key_id if rule is not None else None
        if action == "redact":
            if not spans:
                return self.redactor(_as_text(value))
            # The same text with the same findings (the tag step's cached list, so the same
            # object) redacts alike: kept per field, bounded as the tag step's cache is.
            # Templated notes recur: the transform step ran 10-20% faster (bench, same run).
            texts = self._redacted.get(path)
            if texts is None:
                texts = self._redacted[path] = {}
            known = texts.get(value)
            if known is not None and known[0] is findings:
                return known[1]
            redacted = self.redactor(value, findings)
            if len(texts) >= Tag.cache_size:
                _forget_oldest(texts, Tag.cache_size)
            texts[value] = (findings, redacted)
            return redacted
        if action == "generalise":
            try:
                return generalise_value(value, rule.generalise if rule is not None else None)
            except ValueError as exc:
                raise EventRejected(
                    "cannot_generalise", f"field {path!r}: {exc}", field=path
                ) from None
        if action == "pseudonymise":
            tokeniser = self.tokenisers(key_id)
            if spans:
                return _replace_spans(value, findings or [], tokeniser.pseudonymise)
            token = tokeniser.pseudonymise(value if type(value) is str else _as_text(value))
            if record.pseudonyms is None:
                record.pseudonyms = {}
            record.pseudonyms[path] = token
            return token
        if action == "encrypt":
            event_id = record.event_id or ""

            def seal(text: str) -> str:
                return self.cipher.encrypt(
                    text, stream=self.stream_name, field=path, event_id=event_id
                )

            if spans:
                return _replace_spans(value, findings or [], seal)
            return seal(_as_text(value))
        raise EventRejected(
            "unknown_action", f"field {path!r}: the policy action {action!r} is not known"
        )


def _replace_spans(text: str, findings: Sequence[Any], replace: Callable[[str], str]) -> str:
    out: list[str] = []
    cursor = 0
    for finding in sorted(findings, key=lambda f: (f.start, -f.end)):
        if finding.start < cursor:
            continue
        out.append(text[cursor : finding.start])
        out.append(replace(text[finding.start : finding.end]))
        cursor = finding.end
    out.append(text[cursor:])
    return "".join(out)


# The members of a memoised decision's record that say why (audit/shared.py); what
# happened (stream, source, destination, outcome, the event's id and pseudonyms) stays in
# each record, so that a record read alone says what became of its event.
SHARED_MEMBERS = ("fields", "rule_ids", "reasons", "egress_rule", "policy_hash", "mode")


class Audit(Step):
    """Stage the audit record of the decision (or of the refusal); the committer makes it durable.

    The record holds field names, actions, rule ids, detected types and the
    policy hash, never a value.
    """

    name = "audit"
    on_rejected = True

    def __init__(self, *, source: str, policy_hash: str, destination: str | None) -> None:
        self.source = source
        self.policy_hash = policy_hash
        self.destination = destination

    @staticmethod
    def decision_part(decision: Any) -> dict[str, Any]:
        """The part of the record that depends on the decision only."""
        audit: dict[str, Any] = dict(decision.to_record())
        # The egress verdict is the same for every event to one destination: keep its
        # rule id per event, and its reasons only when it refused (the log hashes every
        # byte of every record, so repeated prose costs throughput).
        egress = audit.pop("egress", None)
        if isinstance(egress, dict):
            audit["egress_rule"] = egress.get("rule_id")
            if egress.get("outcome") == "allow":
                allowed = set(egress.get("reasons") or ())
                audit["reasons"] = [r for r in audit.get("reasons", ()) if r not in allowed]
        if not audit.get("reasons"):
            audit.pop("reasons", None)
        return audit

    def _shared_part(self, record: EventRecord, *, memoised: bool = False) -> dict[str, Any]:
        """What every record of this pipeline under the record's decision holds."""
        audit = self.decision_part(record.decision) if record.decision is not None else {}
        audit["type"] = "decision"
        audit["stream"] = record.stream
        audit["source"] = self.source
        audit["policy_hash"] = self.policy_hash
        if audit.get("destination") is None:
            audit["destination"] = self.destination
        if memoised:
            # Why the decision was made is the same for every event of the entry: the log
            # writes it once per segment and the record names it (audit/shared.py). A
            # served decision record went from about 1.5 kB to 480 bytes, and a group's
            # audit append from 37-42 ms to 24 ms (bench/gateway).
            members = {name: audit.pop(name) for name in SHARED_MEMBERS if name in audit}
            audit[SHARED] = SharedMembers.of(members)
        return audit

    def __call__(self, record: EventRecord) -> EventRecord:
        entry = record.decision_entry
        if entry is not None:
            # A memoised decision: its shared part is made once (the entry belongs to
            # this pipeline's Decide, so stream, source and destination are the same).
            base = entry.audit_base
            if base is None:
                base = entry.audit_base = self._shared_part(record, memoised=True)
            audit = base.copy()
        else:
            audit = self._shared_part(record)
        audit["event_id"] = record.event_id
        if record.pseudonyms:
            # Pseudonyms, never values: `fjordgate audit subject` finds a person's
            # decisions by recomputing these from their id.
            audit["pseudonyms"] = record.pseudonyms
        rejected = record.rejected
        if rejected is not None:
            audit["outcome"] = "deny" if rejected.code == "denied" else "rejected"
            audit["reason"] = {"code": rejected.code, "field": rejected.field}
        record.audit = audit
        return record


class Publish(Step):
    """Stage the minimised event as a message for its topic, keyed by the stream's key field."""

    name = "publish"

    def __init__(self, *, topic: str, key_field: str | None, policy_hash: str, stream: str) -> None:
        self.topic = topic
        self.key_parts = nested_parts(key_field) if key_field else None
        self.key_field = key_field if key_field and self.key_parts is None else None
        self.policy_header = (POLICY_HEADER, policy_hash.encode("utf-8"))
        self.stream_header = (STREAM_HEADER, stream.encode("utf-8"))

    def __call__(self, record: EventRecord) -> EventRecord:
        out = record.output
        event_id = record.event_id
        assert out is not None and event_id is not None
        key: bytes | None = None
        if self.key_field is not None:
            value = out.get(self.key_field)
        elif self.key_parts is not None:
            value = get_path(out, self.key_parts)
        else:
            value = None
        if value is not None and value is not MISSING:
            key = (value if type(value) is str else _as_text(value)).encode("utf-8")
        record.message = OutgoingMessage(
            self.topic,
            key,
            _exact_copy(_dumps(out)),
            # The id as text: Kafka's client writes a str header value as its UTF-8, and
            # the event's own string saves a bytes object per event.
            [(EVENT_ID_HEADER, event_id), self.policy_header, self.stream_header],
            event_id,
        )
        return record


_dumps = orjson.dumps


def _exact_copy(value: bytes) -> bytes:
    """`value` copied into an object of its own size, for a value kept until the batch is
    published.

    orjson writes into a buffer of at least a kilobyte, which the C allocator serves
    (Python's own allocator takes 512 bytes at most) and shrinks in place. Kept, a
    batch's buffers grow the C heap by a kilobyte per event; freed together, they leave
    more than its trim threshold free, so the heap is given back to the system and the
    next batch faults its pages in again. A copy the size of the message (mostly under
    512 bytes) frees the buffer at once, and the next event's buffer reuses it.
    Measured on the pipeline benchmark, whole runs interleaved: page faults 0.66 -> 0.00
    per event, time 0.77-0.99x (the copy costs about 0.1 µs).
    """
    return memoryview(value).tobytes()


class DeadLetter(Step):
    """Kafka ingress: route a refused event, as received, to the dead-letter topic,
    with the reason in headers (the reason names fields, never values)."""

    name = "dead_letter"
    on_rejected = True

    def __init__(self, *, topic: str, policy_hash: str, stream: str) -> None:
        self.topic = topic
        self.policy_hash = policy_hash.encode("utf-8")
        self.stream = stream.encode("utf-8")

    def __call__(self, record: EventRecord) -> EventRecord:
        rejected = record.rejected
        if rejected is None:
            return record
        raw = record.raw if record.raw is not None else orjson.dumps(record.event)
        event_id = record.event_id or ""
        record.message = OutgoingMessage(
            topic=self.topic,
            key=None,
            value=raw,
            headers=[
                (EVENT_ID_HEADER, event_id),
                (POLICY_HEADER, self.policy_hash),
                (STREAM_HEADER, self.stream),
                (REASON_CODE_HEADER, rejected.code.encode("utf-8")),
                (REASON_HEADER, rejected.message.encode("utf-8")),
            ],
            event_id=event_id,
        )
        return record
