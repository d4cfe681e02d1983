"""Scale-out: three processes in one consumer group, with forced rebalances (members
joining, one killed with SIGKILL), give the same table as a single process and as
the offline reference. Partitions that move are rebuilt from the changelog topic.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import orjson
import pytest

FJORDGATE = Path(sys.executable).parent / "fjordgate"
BASE = 1_764_000_000_000
REGIONS = [f"region-{i:02d}" for i in range(30)]


def reference(events: list[dict[str, object]]) -> dict[tuple[int, str], float]:
    ref: dict[tuple[int, str], float] = {}
    for e in events:
        t = int(e["event_time"])  # type: ignore[call-overload]
        key = (t - t % 60_000, str(e["region"]))
        speed = float(e["speed"])  # type: ignore[arg-type]
        ref[key] = max(ref.get(key, speed), speed)
    return ref


def table(dsn: str, name: str) -> dict[tuple[int, str], float]:
    import psycopg

    with psycopg.connect(dsn) as conn:
        exists = conn.execute("SELECT to_regclass(%s)", (name,)).fetchone()
        if exists is None or exists[0] is None:
            return {}
        rows = conn.execute(
            "SELECT (extract(epoch from window_start) * 1000)::bigint, region, max_speed"
            f" FROM {name}"
        ).fetchall()
    return {(int(s), r): v for s, r, v in rows}


def job_file(path: Path, bootstrap: str, topic: str, group: str, table_name: str) -> Path:
    path.write_text(
        f"job: {table_name.replace('_', '-')}\n"
        f"source: {{kafka: {{bootstrap: '{bootstrap}', topic: {topic}, group: {group}}}}}\n"
        "watermarks: {out_of_orderness: 5 s}\n"
        "key_by: region\n"
        "window: {tumbling: 1 min}\n"
        "aggregate: {max: speed}\n"
        f"sink: {{postgresql: {{dsn: '${{PG_DSN}}', table: {table_name}}},"
        " key_column: region, value_column: max_speed}\n"
    )
    return path


def config_file(path: Path, state: Path, instance: str) -> Path:
    path.write_text(
        f"state.backend.rocksdb.localdir: {state}\n"
        f"fjordgate.processor.instance-id: {instance}\n"
        "execution.checkpointing.interval: 500 ms\n"
        "fjordgate.processor.batch-size: 1000\n"
        "kafka.session.timeout.ms: 6000\n"
        "kafka.heartbeat.interval.ms: 1000\n"
    )
    return path


@pytest.mark.kafka
@pytest.mark.postgres
def test_three_processes_with_forced_rebalances_equal_one_process(
    tmp_path: Path, kafka_bootstrap: str, kafka_topic: str, postgres_dsn: str
) -> None:
    from confluent_kafka import Consumer, Producer, TopicPartition

    rng = random.Random(3)
    events = []
    for i in range(45_000):
        events.append(
            {
                "event_time": BASE + i * 20 - rng.randint(0, 4_000),
                "region": rng.choice(REGIONS),
                "speed": round(rng.uniform(20, 130), 3),
            }
        )
    end = max(int(e["event_time"]) for e in events)  # type: ignore[call-overload]

    def produce() -> None:
        # Idempotent: a retried batch cannot land after later ones (the exact table
        # below assumes the input in order within the 5 s bound).
        producer = Producer(
            {"bootstrap.servers": kafka_bootstrap, "linger.ms": 20, "enable.idempotence": True}
        )
        for i, e in enumerate(events):
            producer.produce(kafka_topic, key=str(e["region"]).encode(), value=orjson.dumps(e))
            producer.poll(0)
            if i % 1_000 == 999:
                time.sleep(0.15)
        # One far-future event per partition moves every partition's watermark past
        # all real windows, whoever owns the partition.
        for p in range(3):
            marker = {"event_time": end + 600_000, "region": f"~end-{p}", "speed": 0}
            producer.produce(kafka_topic, value=orjson.dumps(marker), partition=p)
        assert producer.flush(60) == 0

    env = {**os.environ, "PG_DSN": postgres_dsn, "PYTHONUNBUFFERED": "1"}
    group = f"g-{uuid.uuid4().hex[:8]}"
    grouped = job_file(tmp_path / "grouped.yaml", kafka_bootstrap, kafka_topic, group, "grouped")
    single = job_file(
        tmp_path / "single.yaml", kafka_bootstrap, kafka_topic, f"{group}-one", "single"
    )

    def start(job: Path, name: str) -> subprocess.Popen[bytes]:
        config = config_file(tmp_path / f"{name}.yaml", tmp_path / f"state-{name}", name)
        args = [str(FJORDGATE), "processor", "run", str(job), "--config", str(config)]
        log = (tmp_path / f"{name}.log").open("wb")
        return subprocess.Popen(args, env=env, stdout=log, stderr=log)

    load = threading.Thread(target=produce)
    load.start()
    one = start(single, "one")
    a = start(grouped, "a")
    time.sleep(3)
    b = start(grouped, "b")  # joins: partitions move from a to b
    time.sleep(3)
    c = start(grouped, "c")  # joins: another rebalance
    time.sleep(3)
    os.kill(b.pid, signal.SIGKILL)  # b's partitions move after the session timeout
    b.wait()
    load.join()

    expected = reference(events)
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group})
    ends = {p: consumer.get_watermark_offsets(TopicPartition(kafka_topic, p))[1] for p in range(3)}

    def caught_up(group_id: str) -> bool:
        probe = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group_id})
        committed = probe.committed([TopicPartition(kafka_topic, p) for p in range(3)], timeout=10)
        probe.close()
        return all(tp.offset >= ends[tp.partition] for tp in committed)

    for _ in range(240):  # the members commit every 500 ms; generous for a loaded machine
        if (
            caught_up(group)
            and caught_up(f"{group}-one")
            and table(postgres_dsn, "grouped") == expected
            and table(postgres_dsn, "single") == expected
        ):
            break
        time.sleep(0.5)
    consumer.close()
    for proc in (a, c, one):
        proc.send_signal(signal.SIGTERM)
    for proc in (a, c, one):
        proc.wait()

    logs = "".join((tmp_path / f"{n}.log").read_text() for n in ("a", "b", "c"))
    assert "partition_restored" in logs
    assert "partitions_revoked" in logs
    grouped_rows = table(postgres_dsn, "grouped")
    assert grouped_rows == table(postgres_dsn, "single")
    assert grouped_rows == expected
