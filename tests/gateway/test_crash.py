"""kill -9 of the gateway under load: no acknowledged event is lost or published twice."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from gateway.synthetic import TrafficGenerator
from tests.gateway.kafka_support import (
    ServedGateway,
    audited_event_ids,
    read_topic,
    write_config,
)

CYCLES = 10
BATCH = 25


class Load:
    """A producer that retries every batch until the gateway acknowledges it."""

    def __init__(self, key: str, seed: int) -> None:
        self.key = key
        self.generator = TrafficGenerator(seed=seed)
        self.acked: list[str] = []
        self.pending: list[dict[str, object]] | None = None
        self.answers: Counter[int] = Counter()
        self.stop = threading.Event()
        self.finish = threading.Event()  # stop after the next acknowledged batch

    def run(self, url: str) -> None:
        with httpx.Client(headers={"X-API-Key": self.key}, timeout=10.0) as client:
            while not self.stop.is_set():
                batch = self.pending or self.generator.batch(BATCH)
                self.pending = batch
                try:
                    response = client.post(f"{url}/v1/streams/norway-traffic/events", json=batch)
                except httpx.HTTPError:
                    self.answers[0] += 1
                    time.sleep(0.05)
                    continue
                self.answers[response.status_code] += 1
                if response.status_code == 200:
                    results = response.json()["results"]
                    assert all(r["status"] in ("accepted", "duplicate") for r in results)
                    self.acked += [str(r["event_id"]) for r in results]
                    self.pending = None
                    if self.finish.is_set():
                        return
                else:
                    assert response.status_code in (429, 503), response.text
                    time.sleep(0.05)


@pytest.mark.kafka
@pytest.mark.slow
def test_kill_9_under_load_loses_no_acknowledged_event_and_doubles_none(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    config, key = write_config(tmp_path, kafka_bootstrap)
    import yaml

    port = yaml.safe_load(config.read_text())["http"]["port"]
    served = ServedGateway(config, port, tmp_path / "gateway.log")
    load = Load(key, seed=31)
    rng = random.Random(31)
    kills = 0
    for _ in range(CYCLES):
        served.start()
        served.wait_ready()
        load.stop.clear()
        worker = threading.Thread(target=load.run, args=(served.url,))
        worker.start()
        acked_before = len(load.acked)
        # Let some batches through, then kill mid-stream at a random moment.
        while len(load.acked) < acked_before + BATCH * rng.randint(2, 6):
            time.sleep(0.01)
        time.sleep(rng.random() * 0.2)
        served.kill()
        kills += 1
        load.stop.set()
        worker.join()

    # A last life to let the client's pending batch through, then a clean stop.
    served.start()
    served.wait_ready()
    load.stop.clear()
    load.finish.set()
    load.run(served.url)
    assert load.pending is None
    served.terminate()

    assert kills == CYCLES
    topic = yaml.safe_load(config.read_text())["kafka"]["tagged_topic"].replace(
        "{stream}", "norway-traffic"
    )
    published = Counter(event_id for event_id, _, _ in read_topic(kafka_bootstrap, topic))
    acked = set(load.acked)
    assert len(acked) >= CYCLES * BATCH * 2
    missing = [event_id for event_id in acked if published[event_id] == 0]
    doubled = [event_id for event_id, n in published.items() if n > 1]
    assert missing == [] and doubled == []
    audited = audited_event_ids(tmp_path / "audit")
    assert [event_id for event_id in acked if audited[event_id] == 0] == []


def _local_log_ids(directory: Path) -> Counter[str]:
    import orjson

    from processor import LocalLog

    ids: Counter[str] = Counter()
    with LocalLog.open(directory / "log") as log:
        for partition in range(log.partition_count("norway-traffic.tagged")):
            with log.reader("norway-traffic.tagged", [partition]) as reader:
                # A poll returns at most one read chunk: read until nothing is left.
                while batch := reader.poll(100_000):
                    for record in batch:
                        ids[orjson.loads(record.value)["event_id"]] += 1
                # Every durable record was read (a check that stops early "loses" events).
                end = log.end_offset("norway-traffic.tagged", partition)
                assert reader.position(partition) == end, (partition, reader.position(partition))
    return ids


class EmbeddedGateway(ServedGateway):
    def __init__(self, directory: Path, port: int, digest: str) -> None:
        super().__init__(directory / "unused.yaml", port, directory / "gateway.log")
        self.directory = directory
        self.digest = digest

    def start(self) -> None:
        import subprocess
        import sys

        root = Path(__file__).resolve().parents[2]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.gateway.embedded_server", str(self.directory),
                 str(self.port), self.digest],
                stdout=log,
                stderr=log,
                cwd=root,
            )  # fmt: skip


@pytest.mark.slow
def test_kill_9_of_the_embedded_gateway_keeps_every_acknowledged_event_in_the_local_log(
    tmp_path: Path,
) -> None:
    from gateway.auth import hash_api_key, new_api_key
    from tests.gateway.kafka_support import free_port

    key = new_api_key()
    served = EmbeddedGateway(tmp_path, free_port(), hash_api_key(key))
    load = Load(key, seed=41)
    rng = random.Random(41)
    for _ in range(CYCLES):
        served.start()
        served.wait_ready()
        load.stop.clear()
        worker = threading.Thread(target=load.run, args=(served.url,))
        worker.start()
        acked_before = len(load.acked)
        while len(load.acked) < acked_before + BATCH * rng.randint(2, 6):
            time.sleep(0.01)
        time.sleep(rng.random() * 0.2)
        served.kill()
        load.stop.set()
        worker.join()
    served.start()
    served.wait_ready()
    load.stop.clear()
    load.finish.set()
    load.run(served.url)
    served.terminate()

    published = _local_log_ids(tmp_path)
    acked = set(load.acked)
    assert len(acked) >= CYCLES * BATCH * 2
    assert [event_id for event_id in acked if published[event_id] == 0] == []
    assert [event_id for event_id, n in published.items() if n > 1] == []
    audited = audited_event_ids(tmp_path / "audit")
    assert [event_id for event_id in acked if audited[event_id] == 0] == []
