"""The floor: a raw confluent-kafka consumer that only parses each event's JSON."""

from __future__ import annotations

import time
import uuid

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition


def raw_consumer_floor(bootstrap: str, topic: str, partitions: int, total: int) -> float:
    """Seconds to consume and parse `total` events, from the first message to the last."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"floor-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 100,
            "queued.min.messages": 200_000,
        }
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    loads = orjson.loads
    seen = 0
    t0 = 0.0
    while seen < total:
        messages = consumer.consume(10_000, 1.0)
        if messages and not t0:
            t0 = time.perf_counter()
        for m in messages:
            if m.error() is None:
                loads(m.value())
                seen += 1
    seconds = time.perf_counter() - t0
    consumer.close()
    return seconds
