"""Event ids already made durable, so that a retried batch is not published twice.

The publisher's log (the tagged Kafka topic, read committed, or the local log)
is the source of truth: at start the index is rebuilt from its tail, so ids
acknowledged before a crash are still known after it. In memory the index is
bounded: the oldest ids are forgotten first, which bounds how late a retry
can come and still be recognised (`capacity` events).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from itertools import islice


class EventIdIndex:
    """A bounded, insertion-ordered set of event ids, safe to share between threads."""

    def __init__(self, capacity: int = 2_000_000) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._ids: dict[str, None] = {}
        self._lock = threading.Lock()

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add_many(self, event_ids: Iterable[str]) -> None:
        """Remember ids; the oldest are forgotten once over capacity."""
        with self._lock:
            ids = self._ids
            for event_id in event_ids:
                ids[event_id] = None
            overflow = len(ids) - self.capacity
            if overflow > 0:
                for old in list(islice(ids, overflow)):
                    del ids[old]
