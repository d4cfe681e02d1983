"""Kafka restarted mid-run: the processor rides it out and the result is still exact.

Also: the Kafka sink commits results in Kafka transactions with the source offsets.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

FJORDGATE = Path(sys.executable).parent / "fjordgate"
BASE = 1_764_000_000_000


def make_events(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {
            "event_time": BASE + i * 20 - rng.randint(0, 4_000),
            "region": f"region-{rng.randrange(25):02d}",
            "speed": round(rng.uniform(20, 130), 3),
        }
        for i in range(n)
    ]


def reference(events: list[dict[str, Any]]) -> dict[tuple[int, str], float]:
    ref: dict[tuple[int, str], float] = {}
    for e in events:
        t = int(e["event_time"])
        key = (t - t % 60_000, str(e["region"]))
        ref[key] = max(ref.get(key, e["speed"]), e["speed"])
    return ref


def end_markers(events: list[dict[str, Any]], partitions: int) -> list[tuple[int, bytes]]:
    """One far-future event per partition, so every real window fires."""
    end = max(int(e["event_time"]) for e in events) + 600_000
    return [
        (p, orjson.dumps({"event_time": end, "region": f"~end-{p}", "speed": 0}))
        for p in range(partitions)
    ]


def stored_disorder_ms(bootstrap: str, topic: str, partitions: int, count: int) -> int:
    """How far back in event time any stored event is from its partition's maximum."""
    from confluent_kafka import Consumer, TopicPartition

    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": "order-check"})
    reader.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    high: dict[int, int] = {}
    worst = seen = idle = 0
    while seen < count and idle < 30:
        batch = reader.consume(1_000, 1.0)
        idle = 0 if batch else idle + 1
        for m in batch:
            assert m.error() is None, m.error()
            t = int(orjson.loads(m.value() or b"null")["event_time"])
            p = m.partition()
            worst = max(worst, high.get(p, t) - t)
            high[p] = max(high.get(p, t), t)
            seen += 1
    reader.close()
    assert seen == count, f"read {seen} of {count} stored events"
    return worst


@pytest.mark.kafka
@pytest.mark.postgres
def test_kafka_restarted_mid_run_still_gives_the_exact_table(
    tmp_path: Path, kafka_broker: Any, kafka_bootstrap: str, kafka_topic: str, postgres_dsn: str
) -> None:
    import psycopg
    from confluent_kafka import Producer

    events = make_events(40_000, seed=5)
    first, second = events[:20_000], events[20_000:]

    def produce(batch: list[dict[str, Any]], markers: bool) -> None:
        # Idempotent, so a batch retried across the broker's restart cannot land after
        # later ones: without it librdkafka may reorder on retry, and the exact table
        # below would then be wrong by design (those events are too late).
        producer = Producer(
            {"bootstrap.servers": kafka_bootstrap, "linger.ms": 20, "enable.idempotence": True}
        )
        for e in batch:
            producer.produce(kafka_topic, key=str(e["region"]).encode(), value=orjson.dumps(e))
            producer.poll(0)
        if markers:
            for p, value in end_markers(events, 3):
                producer.produce(kafka_topic, value=value, partition=p)
        assert producer.flush(120) == 0

    produce(first, markers=False)
    job = tmp_path / "job.yaml"
    job.write_text(
        "job: kafka-restart\n"
        f"source: {{kafka: {{bootstrap: '{kafka_bootstrap}', topic: {kafka_topic}}}}}\n"
        "watermarks: {out_of_orderness: 5 s}\nkey_by: region\nwindow: {tumbling: 1 min}\n"
        "aggregate: {max: speed}\n"
        "sink: {postgresql: {dsn: '${PG_DSN}', table: max_speed}, key_column: region,"
        " value_column: max_speed}\n"
    )
    config = tmp_path / "processor.yaml"
    config.write_text(
        f"state.backend.rocksdb.localdir: {tmp_path / 'state'}\n"
        "execution.checkpointing.interval: 500 ms\n"
        "kafka.reconnect.backoff.max.ms: 1000\n"
    )
    env = {**os.environ, "PG_DSN": postgres_dsn}
    log = (tmp_path / "processor.log").open("wb")
    proc = subprocess.Popen(
        [str(FJORDGATE), "processor", "run", str(job), "--config", str(config)],
        env=env, stdout=log, stderr=log,
    )  # fmt: skip
    time.sleep(4)
    kafka_broker.stop()
    time.sleep(3)
    kafka_broker.start()
    loader = threading.Thread(target=produce, args=(second, True))
    loader.start()
    loader.join()

    # The input as stored must be in order within the 5 s bound, else a late event
    # would be the test's own doing, not the processor's.
    assert stored_disorder_ms(kafka_bootstrap, kafka_topic, 3, len(events) + 3) < 5_000
    expected = reference(events)

    def rows() -> dict[tuple[int, str], float]:
        with psycopg.connect(postgres_dsn) as conn:
            got = conn.execute(
                "SELECT (extract(epoch from window_start) * 1000)::bigint, region, max_speed"
                " FROM max_speed"
            ).fetchall()
        return {(int(s), r): v for s, r, v in got}

    # A generous bound, not a speed claim: after a broker restart the consumer group
    # waits for the coordinator to reload its offsets, which takes long on a loaded
    # machine with the topics and groups of a whole test session on one broker.
    for _ in range(600):
        if proc.poll() is not None or rows() == expected:
            break
        time.sleep(0.5)
    assert proc.poll() is None, (tmp_path / "processor.log").read_text()[-3000:]
    proc.send_signal(signal.SIGTERM)
    proc.wait()
    got = rows()
    missing = sorted(set(expected) - set(got))
    assert got == expected, (
        f"{len(missing)} windows missing (first {missing[:3]}), "
        f"{sum(1 for k in got if k in expected and got[k] != expected[k])} differ; "
        "processor log tail:\n"
        + "".join(
            line
            for line in (tmp_path / "processor.log").read_text().splitlines(True)
            if not line.startswith("%")
        )[-3000:]
    )


@pytest.mark.kafka
def test_kafka_sink_commits_results_with_source_offsets_in_a_transaction(
    tmp_path: Path, kafka_bootstrap: str, kafka_topic: str
) -> None:
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    from processor import Job, KafkaSink, KafkaSource, Max, ProcessorConfig, TumblingWindow, run_job

    out_topic = f"{kafka_topic}-out"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(out_topic, num_partitions=1, replication_factor=1)])[
        out_topic
    ].result(30)
    events = make_events(5_000, seed=8)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for e in events:
        producer.produce(kafka_topic, key=str(e["region"]).encode(), value=orjson.dumps(e))
    assert producer.flush(60) == 0

    job = (
        Job("kafka-sink")
        .source(KafkaSource(kafka_bootstrap, kafka_topic))
        .watermarks(out_of_orderness_ms=5_000)
        .key_by("region")
        .window(TumblingWindow(60_000))
        .aggregate(Max("speed"))
        .sink(KafkaSink(kafka_bootstrap, out_topic), value_column="max_speed")
    )
    run_job(job, ProcessorConfig(localdir=tmp_path / "state", batch_size=700), stop_at_end=True)

    reader = Consumer(
        {"bootstrap.servers": kafka_bootstrap, "group.id": "verify",
         "isolation.level": "read_committed", "auto.offset.reset": "earliest"}
    )  # fmt: skip
    reader.assign([TopicPartition(out_topic, 0, 0)])
    final: dict[tuple[int, str], float] = {}
    idle = 0
    while idle < 3:
        batch = reader.consume(1_000, 1.0)
        idle = 0 if batch else idle + 1
        for m in batch:
            if m.error() is None:
                key, start, _end = orjson.loads(m.key() or b"null")
                final[(start, key)] = orjson.loads(m.value() or b"null")["max_speed"]
    reader.close()
    assert final == reference(events)

    committed = Consumer(
        {"bootstrap.servers": kafka_bootstrap, "group.id": "fjordgate-sink-kafka-sink"}
    )
    offsets = committed.committed([TopicPartition(kafka_topic, p) for p in range(3)], timeout=10)
    committed.close()
    assert sum(tp.offset for tp in offsets) == len(events)
