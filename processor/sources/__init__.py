"""Where the processor reads events from: the embedded LocalLog or a Kafka topic."""

from processor.sources.base import PartitionBatch, Source
from processor.sources.kafka import KafkaSource
from processor.sources.locallog import LocalLogSource

__all__ = ["KafkaSource", "LocalLogSource", "PartitionBatch", "Source"]
