"""The compiled fast path of a pipeline (the `fjordgate_native` module, native/).

The Python steps are the reference. The compiled core runs the same steps for
the common case only: a flat event whose decision the pipeline has already
memoised by its shape, with a plan of keep, drop, pseudonymise and redact. It
reads the memoised decisions and their plans, as the steps do; scans,
pseudonyms and span redactions it caches itself, with the steps' bounds (a
lookup by text, without a Python string per lookup, was 0.75-0.93x the time
per event of the steps' Python dicts). It makes a request's
records (`make_records`). Scans with the shipped `Detector`
(native/src/detector.rs, which defers the rare texts it does not replicate to
the Python detector), pseudonyms of the shipped `Pseudonymiser` and redactions
of the shipped `redact` it computes itself; other detectors, tokenisers and
redactors it calls. A record it cannot finish it leaves untouched for the steps: the first
event of every shape, every rejection, nested fields, event times that are not
plain ISO 8601, encryption and generalisation.

Measured (bench/gateway): the Python pipeline costs 8 to 16 times the floor
`orjson.loads` + `orjson.dumps`, nearly all of it interpreter work per field;
that is why this part is compiled, and why what remains per event is mostly
Python objects made and freed (record, message, audit record, pseudonyms).
tests/gateway/test_native.py holds the two paths to the same records, byte for
byte.

The module also writes a batch's answer (`results_json`) and holds a
transactional Kafka producer on librdkafka's C API (`txn_producer`, used by
`gateway.publish.NativeProducer`).

`FJORDGATE_NATIVE=0` turns it off (the pure Python pipeline, confluent-kafka's
producer); without the module the gateway runs the Python steps, and says so
once in its log.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
from collections.abc import Sequence
from typing import Any

import orjson
import structlog

from gateway import record
from gateway.fields import nested_parts
from gateway.idempotency import EventIdIndex, IdIndex
from gateway.pii.detector import Detector
from gateway.pii.findings import PII_TYPES, Finding
from gateway.pii.pseudonymise import Pseudonymiser
from gateway.pii.transforms import REDACTED, redact
from gateway.record import EventRecord
from gateway.steps import (
    _DETECTED_AS_POLICY_CLASS,
    _NOTHING,
    EVENT_ID_HEADER,
    Audit,
    DeadLetter,
    Decide,
    DecisionEntry,
    Identify,
    Parse,
    Publish,
    Step,
    Tag,
    Transform,
    Validate,
)

log = structlog.get_logger("gateway.native")

fjordgate_native: Any
try:
    import fjordgate_native
except ImportError:  # pragma: no cover - the setup script builds it; CI requires it
    fjordgate_native = None

_warned = False


def available() -> bool:
    """Whether the compiled module is installed."""
    return fjordgate_native is not None


def enabled() -> bool:
    """Whether pipelines get the compiled fast path (module installed, not turned off)."""
    global _warned
    if os.environ.get("FJORDGATE_NATIVE", "1") == "0":
        return False
    if fjordgate_native is None:
        if not _warned:
            _warned = True
            log.warning(
                "native_core_missing",
                hint="the pipeline runs in Python only; build it with deploy/dev/setup.sh",
            )
        return False
    return True


_factory: Any = None


def _record_factory() -> Any:
    global _factory
    if _factory is None:
        fields = list(EventRecord.__slots__)
        proto = EventRecord("", 0)
        defaults = [getattr(proto, name) for name in fields]
        # Shared by every record it makes: immutable values only.
        assert all(type(d) in (type(None), str, int, bool) or d == () for d in defaults)
        _factory = fjordgate_native.RecordFactory(EventRecord, fields, defaults)
    return _factory


def make_records(stream: str, items: list[Any], source: str = "http") -> list[EventRecord]:
    """`gateway.record.make_records`, made by the compiled module when it is enabled."""
    if not enabled():
        return record.make_records(stream, items, source)
    made: list[EventRecord] = _record_factory().make(stream, items, source, orjson.dumps)
    return made


def event_id_index(capacity: int) -> IdIndex:
    """The event-id index: the compiled one when it is enabled (no pause when a
    generation is forgotten, ids looked up without the GIL), else the reference."""
    if not enabled():
        return EventIdIndex(capacity)
    index: IdIndex = fjordgate_native.EventIdIndex(capacity)
    return index


def results_json(records: list[EventRecord]) -> tuple[bytes, dict[str, int]] | None:
    """A batch's per-event results as JSON bytes, as `gateway.ingest.Ingest.results`
    writes them, and the count per outcome; None when the compiled module is off or a
    record holds something it does not write (the caller builds them in Python)."""
    if not enabled():
        return None
    written: tuple[bytes, dict[str, int]] | None = _record_factory().results(records)
    return written


def split_array(body: bytes) -> list[bytes] | None:
    """A JSON-array body's events as bytes, when the compiled module is enabled and vouches
    that orjson reads the body as an array of objects; None otherwise (parse it with orjson)."""
    if not enabled():
        return None
    events: list[bytes] | None = fjordgate_native.split_array(body)
    return events


@functools.cache
def rdkafka_library() -> str | None:
    """The file of the librdkafka this process loaded with confluent-kafka (the one its
    wheel ships, or the system's it was built against), for the compiled producer to
    use the same library; None when it cannot be told (not Linux)."""
    import confluent_kafka

    confluent_kafka.libversion()  # loaded
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                path = line.rstrip("\n").split(maxsplit=5)[-1]
                if "/librdkafka" in path and os.path.isfile(path):
                    return path
    except OSError:
        return None
    return None


def txn_producer(config: dict[str, Any]) -> Any:
    """A `fjordgate_native.TxnProducer` with this librdkafka configuration, or None when
    the compiled module is off, the library cannot be found, or a setting is not a plain
    value (a callback: confluent-kafka's producer takes those)."""
    if not enabled():
        return None
    settings: list[tuple[str, str]] = []
    for name, value in config.items():
        if type(value) is bool:
            settings.append((name, "true" if value else "false"))
        elif type(value) in (int, float, str):
            settings.append((name, str(value)))
        else:
            return None
    library = rdkafka_library()
    if library is None:
        return None
    return fjordgate_native.TxnProducer(library, settings)


class NativeCore:
    """The compiled core of one pipeline: `run` finishes the records it can and returns
    the others, untouched, for the pipeline's steps."""

    __slots__ = ("_core",)

    def __init__(self, core: Any) -> None:
        self._core = core

    def run(self, records: Sequence[EventRecord]) -> list[EventRecord]:
        left: list[EventRecord] = self._core.run(records)
        return left

    def run_array(
        self, body: bytes, stream: str, source: str, max_events: int
    ) -> tuple[int, list[EventRecord] | None, list[EventRecord] | None] | None:
        """A JSON-array body's records, made and, where it can, finished by the core:
        (events, records, those left for the steps); both lists None when there are more
        than `max_events`; None when the body is not an array of objects the compiled
        scan vouches for, or the core is in use (parse the body and run the records)."""
        made: tuple[int, list[EventRecord] | None, list[EventRecord] | None] | None = (
            self._core.run_array(body, _record_factory(), stream, source, max_events)
        )
        return made

    def cached_pseudonyms(self) -> list[int]:
        """How many pseudonyms the core keeps, per pseudonymiser."""
        counts: list[int] = self._core.cached_pseudonyms()
        return counts

    def plans(self) -> tuple[int, int]:
        """(compiled plans, decisions it leaves to the steps)."""
        counts: tuple[int, int] = self._core.plans()
        return counts


def attach(stream: Any, steps: Sequence[Step]) -> NativeCore | None:
    """The compiled core for a pipeline of these steps over `stream` (the policy's
    declaration), or None when the steps are not the standard composition or use
    something only the Python steps do (nested paths, event times without ISO 8601)."""
    if not enabled():
        return None
    by_type: dict[type, Step] = {}
    for step in steps:
        by_type[type(step)] = step
    standard = (Parse, Identify, Validate, Decide, Transform, Audit, Publish)
    allowed = {*standard, Tag, DeadLetter}
    if any(type(step) not in allowed for step in steps) or any(t not in by_type for t in standard):
        return None
    identify = by_type[Identify]
    decide = by_type[Decide]
    transform = by_type[Transform]
    publish = by_type[Publish]
    tag = by_type.get(Tag)
    assert isinstance(identify, Identify)
    assert isinstance(decide, Decide) and isinstance(transform, Transform)
    assert isinstance(publish, Publish)
    assert tag is None or isinstance(tag, Tag)
    shapes = decide.shapes
    if shapes is None:
        return None
    paths = list(stream.fields)
    if identify.field in stream.fields or any(nested_parts(p) is not None for p in paths):
        return None
    time = stream.event_time
    if time is not None and (nested_parts(time.field) is not None or "iso8601" not in time.formats):
        return None
    if publish.key_parts is not None:
        return None
    tags = []
    if tag is not None:
        # The compiled detector stands for `Tag._scan` over a `Detector()` of every type;
        # another detector or scan the core calls.
        compiled = (
            type(tag) is Tag
            and type(tag.detector) is Detector
            and tag.detector.types == frozenset(PII_TYPES)
        )
        # The step's cache of scans stays the step's: the core keeps its own.
        for path, _parts, wanted, _cache in tag._fields:
            scan = functools.partial(tag._scan, wanted=wanted)
            tags.append((path, scan, compiled, None if wanted is None else set(wanted)))
    config = {
        "id_field": identify.field,
        "id_max": identify.max_length,
        "checks": [(path, rule.type, bool(rule.required)) for path, rule in stream.fields.items()],
        "time_field": (time.field, bool(time.required)) if time is not None else None,
        "declared": set(stream.fields) if stream.undeclared_fields == "deny" else None,
        "tags": tags,
        "nothing": _NOTHING,
        "finding_cls": Finding,
        "finding_cls_fields": _bare_fields(Finding),
        "classes": _DETECTED_AS_POLICY_CLASS,
        "cache_size": Tag.cache_size,
        "shapes": shapes,
        "entries": shapes.entries,
        "kinds": (str, int, float, bool, type(None)),
        "compile": functools.partial(_compile, transform, stream),
        "redactor": transform.redactor,
        "own_redact": transform.redactor is redact,
        "redacted": REDACTED,
        "record_cls": EventRecord,  # its fields the core reads and sets (native/src/lib.rs)
        "topic": publish.topic,
        "key_field": publish.key_field,
        "event_id_header": EVENT_ID_HEADER,
        "policy_header": publish.policy_header,
        "stream_header": publish.stream_header,
    }
    try:
        return NativeCore(fjordgate_native.Core(config))
    except ValueError as exc:  # a field type it does not know: the steps do all
        log.info("native_core_not_used", reason=str(exc))
        return None


def _bare_fields(cls: type) -> list[str]:
    """The fields of a class whose instances the core makes without calling it (allocated,
    each field set as the generated `__init__` sets it): a slotted dataclass whose
    `__init__` does nothing else."""
    names = [f.name for f in dataclasses.fields(cls)]
    members = vars(cls)
    plain = (
        "__slots__" in members
        and not hasattr(cls, "__post_init__")
        and "__new__" not in members
        # every parameter of __init__ a field, in order (no InitVar, no init=False field)
        and list(inspect.signature(members["__init__"]).parameters)[1:] == names
    )
    if not plain:
        raise TypeError(f"{cls.__qualname__} is not a plain slotted dataclass")
    return names


def _compile(
    transform: Transform, stream: Any, entry: DecisionEntry
) -> tuple[bool, list[tuple[Any, ...]], Any, dict[str, Any] | None] | None:
    """A memoised decision's plan as the compiled core's operations, or None until the
    steps have made the plan and the audit part (the first event of a shape)."""
    plan, base = entry.plan, entry.audit_base
    if plan is None or base is None:
        return None
    items: list[tuple[Any, ...]] = []
    for path, parts, action, pseudonymise, change in plan:
        rule = stream.fields.get(path)
        scan = rule.scan if rule is not None else None
        if parts is not None:
            return (False, [], None, None)
        key = orjson.dumps(path) + b":"
        if pseudonymise is not None:
            owner = getattr(pseudonymise, "__self__", None)
            if type(owner) is Pseudonymiser and pseudonymise == owner.pseudonymise:
                # The core computes the same HMAC itself (a Python call per new value
                # cost 2.0 µs; compiled, about 0.3 µs) and keeps its own cache of them,
                # one per pseudonymiser (its cache dict names it), of the same bound.
                secret, prefix = owner.hmac_key_and_prefix()
                known, size = owner.cache()
                items.append((path, change, "hmac", key, (secret, known, size), prefix))
                continue
            # Another tokeniser: the core calls it, reading its cache when it has one.
            cache = getattr(owner, "_cache", None)
            cache = cache if type(cache) is dict else None
            items.append((path, change, "pseudonymise", key, pseudonymise, cache))
        elif action == "allow":
            items.append((path, change, "keep", key, None, None))
        elif action == "drop":
            items.append((path, change, "drop", key, None, None))
        elif action == "redact":
            spans = scan is not None and scan.scope == "spans"
            texts = transform._redacted.setdefault(path, {})
            items.append((path, change, "redact", key, spans, texts))
        else:  # encrypt, generalise, span pseudonyms: the transform step does them
            return (False, [], None, None)
    return (True, items, entry.decision, base)
