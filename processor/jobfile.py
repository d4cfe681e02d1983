"""YAML job files for the common cases: one source, key, window, aggregate, sink.

`${VAR}` and `${VAR:-default}` in string values are read from the environment,
so DSNs and addresses stay out of the file. Errors name the file and line.
See processor/jobs/norway-traffic.yaml for the shape.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from processor.aggregations import Aggregation, Count, Max, Mean, Min, Sum
from processor.config import parse_duration_ms
from processor.errors import ConfigError, JobDefinitionError
from processor.job import Job
from processor.sideoutput import FileSideOutput, KafkaSideOutput, LocalLogSideOutput, SideOutput
from processor.sinks.base import Sink
from processor.sinks.jsonl import JsonlSink
from processor.sinks.kafka import KafkaSink
from processor.sinks.postgres import PostgresSink
from processor.sinks.sqlite import SqliteSink
from processor.sources.base import Source
from processor.sources.kafka import KafkaSource
from processor.sources.locallog import LocalLogSource
from processor.windows import HoppingWindow, SessionWindow, SlidingWindow, TumblingWindow, Window

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Node(dict[str, Any]):
    """A mapping that remembers the line of each key (1-based)."""

    def __init__(self, line: int = 0) -> None:
        super().__init__()
        self.lines: dict[str, int] = {}
        self.line = line


class _LineLoader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> _Node:
    out = _Node(node.start_mark.line + 1)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        out[str(key)] = loader.construct_object(value_node, deep=True)
        out.lines[str(key)] = key_node.start_mark.line + 1
    return out


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


class _Reader:
    """Field access with errors that name the file and line."""

    def __init__(self, path: Path, env: Mapping[str, str]) -> None:
        self.path = path
        self.env = env

    def fail(self, message: str, node: Any = None, key: str | None = None) -> JobDefinitionError:
        line = None
        if isinstance(node, _Node):
            line = node.lines.get(key, node.line) if key else node.line
        return JobDefinitionError(message, source=str(self.path), line=line)

    def expand(self, value: Any, node: Any, key: str) -> Any:
        if not isinstance(value, str):
            return value

        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in self.env:
                return self.env[name]
            if default is not None:
                return default
            raise self.fail(f"{key}: environment variable {name} is not set", node, key)

        return _ENV.sub(sub, value)

    def get(self, node: _Node, key: str, kind: type | None = None, *, required: bool = True) -> Any:
        if key not in node:
            if required:
                raise self.fail(f"missing '{key}'", node)
            return None
        value = self.expand(node[key], node, key)
        if kind is not None and not isinstance(value, kind):
            raise self.fail(f"'{key}' must be a {kind.__name__}", node, key)
        return value

    def duration(self, node: _Node, key: str, *, required: bool = False) -> int | None:
        value = self.get(node, key, required=required)
        if value is None:
            return None
        try:
            return parse_duration_ms(value, key)
        except ConfigError as exc:
            raise self.fail(str(exc), node, key) from None

    def one_of(self, node: _Node, what: str, choices: tuple[str, ...]) -> tuple[str, Any]:
        found = [c for c in choices if c in node]
        if len(found) != 1:
            raise self.fail(f"{what} needs exactly one of: {', '.join(choices)}", node)
        return found[0], self.expand(node[found[0]], node, found[0])


def load_job(path: Path | str, *, env: Mapping[str, str] | None = None) -> Job:
    """Build a Job from a YAML job file."""
    path = Path(path)
    try:
        raw = yaml.load(path.read_text(), Loader=_LineLoader)  # a SafeLoader subclass
    except OSError as exc:
        raise JobDefinitionError(f"cannot read job file: {exc}", source=str(path)) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise JobDefinitionError(
            f"not valid YAML: {getattr(exc, 'problem', exc)}",
            source=str(path),
            line=mark.line + 1 if mark is not None else None,
        ) from exc
    r = _Reader(path, os.environ if env is None else env)
    if not isinstance(raw, _Node):
        raise r.fail("a job file is a mapping with job, source, key_by, window, aggregate, sink")
    known = {
        "job", "source", "event_time", "watermarks", "key_by", "window", "aggregate",
        "sink", "late_events",
    }  # fmt: skip
    for key in raw:
        if key not in known:
            raise r.fail(
                f"unknown key '{key}'; expected one of {', '.join(sorted(known))}", raw, key
            )
    job = Job(str(r.get(raw, "job", str)))
    source_node = r.get(raw, "source", _Node)
    job = job.source(_source(r, source_node))
    kafka_node = source_node.get("kafka")
    if isinstance(kafka_node, _Node) and "group" in kafka_node:
        job = job.scale_out(str(r.get(kafka_node, "group", str)))
    marks = r.get(raw, "watermarks", _Node, required=False) or _Node(raw.line)
    job = job.watermarks(
        out_of_orderness_ms=r.duration(marks, "out_of_orderness") or 0,
        idle_timeout_ms=r.duration(marks, "idle_timeout"),
        time_field=str(r.get(raw, "event_time", str, required=False) or "event_time"),
    )
    job = job.key_by(str(r.get(raw, "key_by", str)))
    wnode = r.get(raw, "window", _Node)
    job = job.window(
        _window(r, wnode), allowed_lateness_ms=r.duration(wnode, "allowed_lateness") or 0
    )
    job = job.aggregate(_aggregate(r, r.get(raw, "aggregate", _Node)))
    snode = r.get(raw, "sink", _Node)
    job = job.sink(
        _sink(r, snode),
        key_column=r.get(snode, "key_column", str, required=False),
        value_column=r.get(snode, "value_column", str, required=False),
    )
    late = r.get(raw, "late_events", _Node, required=False)
    if late is not None:
        job = job.side_output(_side_output(r, late))
    job.check()
    return job


def _source(r: _Reader, node: _Node) -> Source:
    kind, spec = r.one_of(node, "source", ("kafka", "locallog"))
    if not isinstance(spec, _Node):
        raise r.fail(f"source.{kind} must be a mapping", node, kind)
    if kind == "kafka":
        group = r.get(spec, "group", str, required=False)
        return KafkaSource(str(r.get(spec, "bootstrap")), str(r.get(spec, "topic")), group_id=group)
    return LocalLogSource(Path(str(r.get(spec, "path"))), str(r.get(spec, "topic")))


def _window(r: _Reader, node: _Node) -> Window:
    kind, spec = r.one_of(node, "window", ("tumbling", "hopping", "sliding", "session"))
    try:
        if kind == "tumbling":
            return TumblingWindow(parse_duration_ms(spec, "window.tumbling"))
        if kind == "sliding":
            return SlidingWindow(parse_duration_ms(spec, "window.sliding"))
        if not isinstance(spec, _Node):
            raise r.fail(f"window.{kind} must be a mapping", node, kind)
        if kind == "hopping":
            size = r.duration(spec, "size", required=True)
            advance = r.duration(spec, "advance", required=True)
            assert size is not None and advance is not None
            return HoppingWindow(size, advance)
        gap = r.duration(spec, "gap", required=True)
        assert gap is not None
        return SessionWindow(gap)
    except ConfigError as exc:
        raise r.fail(str(exc), node, kind) from None
    except JobDefinitionError as exc:
        if exc.source is not None:
            raise
        raise r.fail(str(exc), node, kind) from None


def _aggregate(r: _Reader, node: _Node) -> Aggregation[Any]:
    kind, field = r.one_of(node, "aggregate", ("max", "min", "sum", "mean", "count"))
    if kind == "count":
        return Count()
    if not isinstance(field, str):
        raise r.fail(f"aggregate.{kind} names the numeric field, e.g. '{kind}: speed'", node, kind)
    if kind == "max":
        return Max(field)
    if kind == "min":
        return Min(field)
    if kind == "sum":
        return Sum(field)
    return Mean(field)


def _sink(r: _Reader, node: _Node) -> Sink:
    kind, spec = r.one_of(node, "sink", ("postgresql", "sqlite", "jsonl", "kafka"))
    if not isinstance(spec, _Node):
        raise r.fail(f"sink.{kind} must be a mapping", node, kind)
    if kind == "postgresql":
        return PostgresSink(str(r.get(spec, "dsn")), str(r.get(spec, "table")))
    if kind == "sqlite":
        return SqliteSink(Path(str(r.get(spec, "path"))), str(r.get(spec, "table")))
    if kind == "jsonl":
        return JsonlSink(Path(str(r.get(spec, "path"))))
    return KafkaSink(str(r.get(spec, "bootstrap")), str(r.get(spec, "topic")))


def _side_output(r: _Reader, node: _Node) -> SideOutput:
    kind, spec = r.one_of(node, "late_events", ("file", "kafka", "locallog"))
    if kind == "file":
        return FileSideOutput(Path(str(spec)))
    if not isinstance(spec, _Node):
        raise r.fail(f"late_events.{kind} must be a mapping", node, kind)
    if kind == "kafka":
        return KafkaSideOutput(str(r.get(spec, "bootstrap")), str(r.get(spec, "topic")))
    from processor.locallog import LocalLog

    return LocalLogSideOutput(
        LocalLog.open(Path(str(r.get(spec, "path")))), str(r.get(spec, "topic"))
    )
