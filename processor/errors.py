"""The one exception hierarchy of the processor package.

Every error says what was wrong, where (file, partition, offset, job field) and
what to do about it; none carries a field value of an event.
"""

from __future__ import annotations


class ProcessorError(Exception):
    """Base class of every error raised by the processor package."""


class LocalLogError(ProcessorError):
    """The embedded local log cannot be opened, read or appended to."""


class JobDefinitionError(ProcessorError):
    """A job (Python API or YAML file) is incomplete or inconsistent."""

    def __init__(self, message: str, *, source: str | None = None, line: int | None = None) -> None:
        where = ""
        if source is not None:
            where = f"{source}:{line}: " if line is not None else f"{source}: "
        super().__init__(f"{where}{message}")
        self.source = source
        self.line = line


class EventDecodeError(ProcessorError):
    """An input event cannot be decoded (bad JSON, missing field, bad event time)."""


class StateError(ProcessorError):
    """The RocksDB state store cannot be opened, restored or written."""


class CheckpointError(ProcessorError):
    """A checkpoint cannot be written, listed or restored."""


class SinkError(ProcessorError):
    """A sink cannot be opened or cannot commit a batch."""


class EgressDenied(ProcessorError):
    """A sink destination was refused by the policy's egress rules at start."""


class ConfigError(ProcessorError):
    """A processor configuration key is unknown or has a bad value."""
