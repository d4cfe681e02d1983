"""kill -9 of the processor under load, ten times: the final table equals a reference
computed offline from the input; no window lost or counted twice.

Runs the real `fjordgate processor run` in a child process over the embedded
LocalLog (SQLite sink) and over real Kafka (PostgreSQL sink).
"""

from __future__ import annotations

import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest

FJORDGATE = Path(sys.executable).parent / "fjordgate"
BASE = 1_764_000_000_000
REGIONS = [f"region-{i:02d}" for i in range(40)]
CYCLES = 10


def make_events(n: int, seed: int) -> list[dict[str, object]]:
    """Traffic events with disorder below the 5 s bound, so none is late."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        t = BASE + i * 20 - rng.randint(0, 4_000)
        out.append(
            {
                "event_time": t if i % 2 else _iso(t),
                "region": rng.choice(REGIONS),
                "speed": round(rng.uniform(20, 130), 3),
            }
        )
    return out


def _iso(ms: int) -> str:
    from processor.sinks.base import iso_ms

    return iso_ms(ms)


def reference(events: list[dict[str, object]]) -> dict[tuple[int, str], float]:
    from processor.eventtime import to_epoch_ms

    ref: dict[tuple[int, str], float] = {}
    for e in events:
        t = to_epoch_ms(e["event_time"])
        key = (t - t % 60_000, str(e["region"]))
        speed = float(e["speed"])  # type: ignore[arg-type]
        ref[key] = max(ref.get(key, speed), speed)
    return ref


def write_config(path: Path, state: Path) -> Path:
    path.write_text(
        f"state.backend.rocksdb.localdir: {state}\n"
        "execution.checkpointing.interval: 300 ms\n"
        "state.checkpoints.num-retained: 2\n"
        "fjordgate.processor.batch-size: 500\n"
        "fjordgate.processor.poll-timeout: 50 ms\n"
    )
    return path


_STARTED = re.compile(rb'"checkpoint": (\d+|null)[^\n]*"event": "job_started"')


def kill_cycles(args: list[str], env: dict[str, str], rng: random.Random) -> list[int]:
    """Start the processor, wait until it runs, SIGKILL it at a random moment; CYCLES times.

    Returns the checkpoint each incarnation restored (0 = none), read from its start log.
    """
    restored = []
    for _ in range(CYCLES):
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert proc.stderr is not None
        seen = b""
        while (found := _STARTED.search(seen)) is None:
            line = proc.stderr.readline()
            assert line, f"the processor exited before starting: {seen.decode()[-2000:]}"
            seen += line
        restored.append(int(found.group(1)) if found.group(1).isdigit() else 0)
        time.sleep(rng.uniform(0.1, 1.2))
        assert proc.poll() is None, "the processor stopped on its own"
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
        assert proc.returncode == -signal.SIGKILL
    return restored


def finish(args: list[str], env: dict[str, str]) -> dict[str, object]:
    done = subprocess.run([*args, "--until-end"], env=env, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    metrics: dict[str, object] = orjson.loads(done.stdout)
    return metrics


def test_kill_9_ten_times_on_the_local_log_gives_the_reference_table(tmp_path: Path) -> None:
    from processor import LocalLog

    events = make_events(150_000, seed=9)
    with LocalLog.open(tmp_path / "log", partitions=3) as log:
        log.append_many(
            "norway-traffic",
            [(str(e["region"]).encode(), orjson.dumps(e)) for e in events],
        )
    job = tmp_path / "job.yaml"
    job.write_text(
        "job: crash-local\n"
        f"source: {{locallog: {{path: {tmp_path / 'log'}, topic: norway-traffic}}}}\n"
        "watermarks: {out_of_orderness: 5 s}\n"
        "key_by: region\n"
        "window: {tumbling: 1 min}\n"
        "aggregate: {max: speed}\n"
        f"sink: {{sqlite: {{path: {tmp_path / 'out.db'}, table: max_speed}},"
        " key_column: region, value_column: max_speed}\n"
    )
    config = write_config(tmp_path / "processor.yaml", tmp_path / "state")
    args = [str(FJORDGATE), "processor", "run", str(job), "--config", str(config)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    args = [str(FJORDGATE), "--log-json", *args[1:]]
    restored = kill_cycles(args, env, random.Random(1))
    metrics = finish(args, env)

    # Killed mid-work: later incarnations resumed from later checkpoints.
    assert len({r for r in restored if r > 0}) >= 3, restored
    assert restored == sorted(restored), restored
    assert metrics["restored_checkpoint"] is not None
    with sqlite3.connect(tmp_path / "out.db") as conn:
        rows = conn.execute("SELECT window_start, region, max_speed FROM max_speed").fetchall()
    from processor.sinks.base import iso_ms

    expected = {(iso_ms(s), r): v for (s, r), v in reference(events).items()}
    assert {(s, r): v for s, r, v in rows} == expected
    assert len(rows) == len(expected)


@pytest.mark.kafka
@pytest.mark.postgres
def test_kill_9_ten_times_on_kafka_gives_the_reference_postgres_table(
    tmp_path: Path, kafka_bootstrap: str, kafka_topic: str, postgres_dsn: str
) -> None:
    import psycopg
    from confluent_kafka import Producer

    events = make_events(150_000, seed=11)

    def produce() -> None:
        # Load arrives while the processor is being killed: ~12 s of traffic.
        # Idempotent: a retried batch cannot land after later ones (the exact table
        # below assumes the input in order within the 5 s bound).
        producer = Producer(
            {"bootstrap.servers": kafka_bootstrap, "linger.ms": 20, "enable.idempotence": True}
        )
        for i, e in enumerate(events):
            producer.produce(kafka_topic, key=str(e["region"]).encode(), value=orjson.dumps(e))
            producer.poll(0)
            if i % 1_000 == 999:
                time.sleep(0.08)
        assert producer.flush(60) == 0

    load = threading.Thread(target=produce)
    load.start()
    job = tmp_path / "job.yaml"
    job.write_text(
        "job: crash-kafka\n"
        f"source: {{kafka: {{bootstrap: '{kafka_bootstrap}', topic: {kafka_topic}}}}}\n"
        "watermarks: {out_of_orderness: 5 s}\n"
        "key_by: region\n"
        "window: {tumbling: 1 min}\n"
        "aggregate: {max: speed}\n"
        "sink: {postgresql: {dsn: '${PG_DSN}', table: max_speed_per_region},"
        " key_column: region, value_column: max_speed}\n"
    )
    config = write_config(tmp_path / "processor.yaml", tmp_path / "state")
    args = [str(FJORDGATE), "processor", "run", str(job), "--config", str(config)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PG_DSN": postgres_dsn}
    args = [str(FJORDGATE), "--log-json", *args[1:]]
    restored = kill_cycles(args, env, random.Random(2))
    load.join()
    finish(args, env)

    assert len({r for r in restored if r > 0}) >= 3, restored
    with psycopg.connect(postgres_dsn) as conn:
        rows = conn.execute(
            "SELECT (extract(epoch from window_start) * 1000)::bigint, region, max_speed"
            " FROM max_speed_per_region"
        ).fetchall()
    assert {(int(s), r): v for s, r, v in rows} == reference(events)
