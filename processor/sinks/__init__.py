"""Where window results go, each with an exactly-once effect on restart."""

from processor.sinks.base import ResultColumns, Sink
from processor.sinks.jsonl import JsonlSink
from processor.sinks.kafka import KafkaSink
from processor.sinks.postgres import PostgresSink
from processor.sinks.sqlite import SqliteSink

__all__ = ["JsonlSink", "KafkaSink", "PostgresSink", "ResultColumns", "Sink", "SqliteSink"]
