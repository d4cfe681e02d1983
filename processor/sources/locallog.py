"""The embedded source: reads a topic of `processor.LocalLog` like a Kafka topic."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from processor.locallog import LocalLog, LocalLogReader
from processor.sources.base import PartitionBatch, Source


class LocalLogSource(Source):
    """Reads one topic of a LocalLog (shared in-process, or opened from a directory)."""

    def __init__(self, log: LocalLog | Path | str, topic: str) -> None:
        self._owned = not isinstance(log, LocalLog)
        self.log = log if isinstance(log, LocalLog) else LocalLog.open(Path(log))
        self.topic = topic
        self._reader: LocalLogReader | None = None

    def partitions(self) -> list[int]:
        return list(range(self.log.partition_count(self.topic)))

    def open(self, positions: Mapping[int, int]) -> None:
        self._reader = self.log.reader(self.topic, sorted(positions), start=positions)

    def poll(self, max_records: int, timeout_s: float) -> list[PartitionBatch]:
        assert self._reader is not None, "open() the source before polling"
        return [
            PartitionBatch(p, first, first + len(values), values)
            for p, first, values in self._reader.poll_values(max_records, timeout_s)
        ]

    def positions(self) -> dict[int, int]:
        return self._reader.positions() if self._reader is not None else {}

    def end_offsets(self) -> dict[int, int]:
        return {p: self.log.end_offset(self.topic, p) for p in self.partitions()}

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._owned:
            self.log.close()

    def describe(self) -> str:
        return f"file://{self.log.directory.resolve()}/{self.topic}"
