"""The seed job in PyFlink (Flink SQL on the Kafka connector, RocksDB state backend).

Run by the benchmark in its own virtualenv:
    python flink_job.py BOOTSTRAP TOPIC EVENTS EMPTY_TOPIC
The Kafka connector jar comes from Maven Central (fetched with `mvn dependency:get`).
Prints one JSON line. The same job first runs twice over an empty topic (the
first warms the JVM); the second one's time (a warm job's submission and
start-up on the local mini-cluster) is subtracted, so `seconds` is the
processing time; `raw_seconds` is the whole job, start-up included.
"""

import glob
import json
import os
import sys
import time

from pyflink.table import EnvironmentSettings, TableEnvironment

CONNECTOR = "org/apache/flink/flink-sql-connector-kafka"


def connector_jar() -> str:
    found = sorted(glob.glob(os.path.expanduser(f"~/.m2/repository/{CONNECTOR}/*/*.jar")))
    if not found:
        raise SystemExit(
            "no Kafka connector jar: mvn dependency:get "
            "-Dartifact=org.apache.flink:flink-sql-connector-kafka:4.0.1-2.0"
        )
    return found[-1]


def main() -> None:
    bootstrap, topic, total, empty = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    run(bootstrap, empty)  # warms the JVM: class loading, code generation
    startup = run(bootstrap, empty)  # a warm job's submission and start-up alone
    raw = run(bootstrap, topic)
    print(json.dumps({"events": total, "seconds": max(raw - startup, 1e-9), "raw_seconds": raw,
                      "startup_seconds": startup}))  # fmt: skip


def run(bootstrap: str, topic: str) -> float:
    env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    conf = env.get_config()
    conf.set("pipeline.jars", f"file://{connector_jar()}")
    conf.set("parallelism.default", "1")
    conf.set("state.backend.type", "rocksdb")
    conf.set("execution.checkpointing.interval", "10 s")
    env.execute_sql(
        f"""
        CREATE TEMPORARY TABLE traffic (
            event_time BIGINT, region STRING, speed DOUBLE,
            ts AS TO_TIMESTAMP_LTZ(event_time, 3),
            WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
        ) WITH (
            'connector' = 'kafka', 'topic' = '{topic}',
            'properties.bootstrap.servers' = '{bootstrap}',
            'properties.group.id' = 'flink-bench',
            'scan.startup.mode' = 'earliest-offset',
            'scan.bounded.mode' = 'latest-offset',
            'format' = 'json'
        )"""
    )
    env.execute_sql(
        "CREATE TEMPORARY TABLE results (window_start TIMESTAMP(3), region STRING,"
        " max_speed DOUBLE) WITH ('connector' = 'blackhole')"
    )
    t0 = time.perf_counter()
    env.execute_sql(
        """
        INSERT INTO results
        SELECT window_start, region, MAX(speed)
        FROM TABLE(TUMBLE(TABLE traffic, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
        GROUP BY window_start, window_end, region
        """
    ).wait()
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
