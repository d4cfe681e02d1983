"""The side output: input records the job did not count (too late or undecodable).

Written to a JSONL file or to a topic (LocalLog or Kafka), with partition,
offset and reason, so they can be inspected or reprocessed. Counted in metrics.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import orjson
from confluent_kafka import Producer

from processor.locallog import LocalLog
from processor.operators.base import LateEvent


def _line(job: str, e: LateEvent) -> bytes:
    try:
        event: object = orjson.loads(e.raw)
    except orjson.JSONDecodeError:
        event = e.raw.decode("utf-8", "replace")
    return orjson.dumps(
        {
            "job": job,
            "partition": e.partition,
            "offset": e.offset,
            "reason": e.reason,
            "event": event,
        }
    )


class SideOutput(ABC):
    """Where events not counted in any window go."""

    job = ""

    @abstractmethod
    def destination(self) -> str: ...

    def open(self, job: str) -> None:
        self.job = job

    @abstractmethod
    def write(self, events: Sequence[LateEvent]) -> None: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release files or clients."""


class FileSideOutput(SideOutput):
    """Appends one JSON line per event to a file, fsynced per batch."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    def destination(self) -> str:
        return f"file://{self.path.resolve()}"

    def open(self, job: str) -> None:
        super().open(job)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)

    def write(self, events: Sequence[LateEvent]) -> None:
        if not events:
            return
        assert self._fd is not None, "open() the side output first"
        os.write(self._fd, b"".join(_line(self.job, e) + b"\n" for e in events))
        os.fdatasync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class LocalLogSideOutput(SideOutput):
    """Appends to a topic of the embedded LocalLog."""

    def __init__(self, log: LocalLog, topic: str) -> None:
        self.log = log
        self.topic = topic

    def destination(self) -> str:
        return f"file://{self.log.directory.resolve()}/{self.topic}"

    def write(self, events: Sequence[LateEvent]) -> None:
        if events:
            self.log.append_many(self.topic, [(None, _line(self.job, e)) for e in events])


class KafkaSideOutput(SideOutput):
    """Produces to a Kafka topic and waits for the broker's acknowledgement."""

    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self._producer: Producer | None = None

    def destination(self) -> str:
        return f"kafka://{self.bootstrap_servers}/{self.topic}"

    def open(self, job: str) -> None:
        super().open(job)
        self._producer = Producer(
            {"bootstrap.servers": self.bootstrap_servers, "enable.idempotence": True}
        )

    def write(self, events: Sequence[LateEvent]) -> None:
        if not events or self._producer is None:
            return
        for e in events:
            self._producer.produce(self.topic, value=_line(self.job, e))
        self._producer.flush(60)

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(30)
            self._producer = None
