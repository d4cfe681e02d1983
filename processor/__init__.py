"""The co-located windowing processor: event-time windows over RocksDB state.

`Job` describes source → watermarks → key_by → window → aggregate → sink;
`run_job` runs it with checkpoints and an exactly-once effect at the sink.
`LocalLog` is the durable local log that stands in for Kafka in embedded mode.
"""

from processor.aggregations import Aggregate, Aggregation, Count, Max, Mean, Min, Reduce, Sum
from processor.checkpoints import CheckpointInfo, CheckpointStore
from processor.config import ProcessorConfig
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
from processor.guard import PolicyGuard, RecordingGuard, StartGuard
from processor.job import Job
from processor.jobfile import load_job
from processor.locallog import LocalLog, LocalLogReader, LogPosition, LogRecord, TailRecovery
from processor.operators.base import LateEvent, WindowResult
from processor.runner import JobMetrics, JobRunner, make_runner, run_job
from processor.sideoutput import FileSideOutput, KafkaSideOutput, LocalLogSideOutput, SideOutput
from processor.sinks import JsonlSink, KafkaSink, PostgresSink, ResultColumns, Sink, SqliteSink
from processor.sources import KafkaSource, LocalLogSource, PartitionBatch, Source
from processor.watermarks import MAX_WATERMARK, MIN_WATERMARK, WatermarkTracker
from processor.windows import HoppingWindow, SessionWindow, SlidingWindow, TumblingWindow, Window

__all__ = [
    "MAX_WATERMARK",
    "MIN_WATERMARK",
    "Aggregate",
    "Aggregation",
    "CheckpointError",
    "CheckpointInfo",
    "CheckpointStore",
    "ConfigError",
    "Count",
    "EgressDenied",
    "EventDecodeError",
    "FileSideOutput",
    "HoppingWindow",
    "Job",
    "JobDefinitionError",
    "JobMetrics",
    "JobRunner",
    "JsonlSink",
    "KafkaSideOutput",
    "KafkaSink",
    "KafkaSource",
    "LateEvent",
    "LocalLog",
    "LocalLogError",
    "LocalLogReader",
    "LocalLogSideOutput",
    "LocalLogSource",
    "LogPosition",
    "LogRecord",
    "Max",
    "Mean",
    "Min",
    "PartitionBatch",
    "PolicyGuard",
    "PostgresSink",
    "ProcessorConfig",
    "ProcessorError",
    "RecordingGuard",
    "Reduce",
    "ResultColumns",
    "SessionWindow",
    "SideOutput",
    "Sink",
    "SinkError",
    "SlidingWindow",
    "Source",
    "SqliteSink",
    "StartGuard",
    "StateError",
    "Sum",
    "TailRecovery",
    "TumblingWindow",
    "WatermarkTracker",
    "Window",
    "WindowResult",
    "load_job",
    "make_runner",
    "run_job",
]
