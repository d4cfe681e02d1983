"""The test services are the real thing: Apache Kafka (KRaft) and PostgreSQL."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

pytestmark = pytest.mark.kafka


def _consume_all(
    bootstrap: str,
    topic: str,
    *,
    isolation: str,
    expect: int,
    group: str | None = None,
    max_polls: int = 200,
) -> list[bytes]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group or f"g-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "isolation.level": isolation,
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    values: list[bytes] = []
    idle = 0
    try:
        for _ in range(max_polls):
            msg = consumer.poll(0.5)
            if msg is None:
                idle += 1
                if len(values) >= expect and idle >= 4:
                    break
                continue
            if msg.error():
                raise KafkaException(msg.error())
            idle = 0
            values.append(msg.value())
    finally:
        consumer.close()
    return values


def test_produce_and_consume_round_trip(kafka_bootstrap: str, kafka_topic: str) -> None:
    producer = Producer(
        {"bootstrap.servers": kafka_bootstrap, "acks": "all", "enable.idempotence": True}
    )
    sent = [f"event-{i}".encode() for i in range(50)]
    for value in sent:
        producer.produce(kafka_topic, value=value, key=value[-1:])
    assert producer.flush(30) == 0
    received = _consume_all(
        kafka_bootstrap, kafka_topic, isolation="read_committed", expect=len(sent)
    )
    assert sorted(received) == sorted(sent)


def test_aborted_transaction_is_invisible_to_read_committed(
    kafka_bootstrap: str, kafka_topic: str
) -> None:
    producer = Producer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "transactional.id": f"tx-{uuid.uuid4().hex}",
            "enable.idempotence": True,
        }
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    for i in range(10):
        producer.produce(kafka_topic, value=f"aborted-{i}".encode())
    producer.flush(30)
    producer.abort_transaction(30)
    producer.begin_transaction()
    for i in range(5):
        producer.produce(kafka_topic, value=f"committed-{i}".encode())
    producer.commit_transaction(30)

    committed = _consume_all(kafka_bootstrap, kafka_topic, isolation="read_committed", expect=5)
    assert sorted(committed) == sorted(f"committed-{i}".encode() for i in range(5))
    # The aborted records are physically in the log: read_uncommitted sees them.
    uncommitted = _consume_all(
        kafka_bootstrap, kafka_topic, isolation="read_uncommitted", expect=15
    )
    assert {v for v in uncommitted if v.startswith(b"aborted-")} == {
        f"aborted-{i}".encode() for i in range(10)
    }


def _assignment_after_poll(consumer: Consumer, polls: int = 40) -> set[int]:
    for _ in range(polls):
        consumer.poll(0.25)
        parts = {tp.partition for tp in consumer.assignment()}
        if parts:
            return parts
    return set()


def test_two_consumers_in_one_group_share_partitions_after_rebalance(
    kafka_bootstrap: str, kafka_topic: str
) -> None:
    group = f"g-{uuid.uuid4().hex}"
    config = {
        "bootstrap.servers": kafka_bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
    }
    first = Consumer(config)
    first.subscribe([kafka_topic])
    assert _assignment_after_poll(first) == {0, 1, 2}

    second = Consumer(config)
    second.subscribe([kafka_topic])
    a: set[int] = set()
    b: set[int] = set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        first.poll(0.2)
        second.poll(0.2)
        a = {tp.partition for tp in first.assignment()}
        b = {tp.partition for tp in second.assignment()}
        if a and b and not (a & b) and (a | b) == {0, 1, 2}:
            break
    first.close()
    second.close()
    assert a and b, f"both members must own partitions after the rebalance (got {a} and {b})"
    assert not (a & b)
    assert a | b == {0, 1, 2}


def test_committed_offsets_survive_a_new_consumer(kafka_bootstrap: str, kafka_topic: str) -> None:
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(20):
        producer.produce(kafka_topic, value=str(i).encode(), partition=0)
    assert producer.flush(30) == 0
    group = f"g-{uuid.uuid4().hex}"
    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.assign([TopicPartition(kafka_topic, 0, 0)])
    seen = 0
    while seen < 12:
        msg = consumer.poll(1)
        if msg is not None and not msg.error():
            seen += 1
            last = msg
    consumer.commit(message=last, asynchronous=False)
    consumer.close()
    again = Consumer(
        {"bootstrap.servers": kafka_bootstrap, "group.id": group, "auto.offset.reset": "earliest"}
    )
    committed = again.committed([TopicPartition(kafka_topic, 0)], timeout=10)
    again.close()
    assert committed[0].offset == 12


@pytest.mark.postgres
def test_postgres_round_trip(postgres_dsn: str) -> None:
    import psycopg

    with psycopg.connect(postgres_dsn) as conn:
        conn.execute(
            "CREATE TABLE windows (window_start timestamptz, region text, max_speed real,"
            " PRIMARY KEY (window_start, region))"
        )
        conn.execute("INSERT INTO windows VALUES ('2026-11-25T06:00:00Z', 'Oslo', 82.5)")
        conn.execute(
            "INSERT INTO windows VALUES ('2026-11-25T06:00:00Z', 'Oslo', 90.0) "
            "ON CONFLICT (window_start, region) DO UPDATE SET max_speed = EXCLUDED.max_speed"
        )
        conn.commit()
    with psycopg.connect(postgres_dsn) as conn:
        rows = conn.execute("SELECT region, max_speed FROM windows").fetchall()
        version = conn.execute("SHOW server_version").fetchone()
    assert rows == [("Oslo", 90.0)]
    assert version is not None and int(str(version[0]).split(".")[0]) >= 13


@pytest.mark.postgres
def test_each_test_gets_a_fresh_database(postgres_dsn: str) -> None:
    import psycopg

    with psycopg.connect(postgres_dsn) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
    assert tables == (0,)
