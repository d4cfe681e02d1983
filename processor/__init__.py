"""The co-located windowing processor: event-time windows over RocksDB state."""

from processor.errors import (
    CheckpointError,
    ConfigError,
    EgressDenied,
    EventDecodeError,
    JobDefinitionError,
    LocalLogError,
    ProcessorError,
    SinkError,
    StateError,
)
from processor.locallog import LocalLog, LocalLogReader, LogPosition, LogRecord, TailRecovery

__all__ = [
    "CheckpointError",
    "ConfigError",
    "EgressDenied",
    "EventDecodeError",
    "JobDefinitionError",
    "LocalLog",
    "LocalLogError",
    "LocalLogReader",
    "LogPosition",
    "LogRecord",
    "ProcessorError",
    "SinkError",
    "StateError",
    "TailRecovery",
]
