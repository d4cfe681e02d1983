"""Helpers for the gateway's Kafka tests: configs, a served gateway process, topic readers."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import yaml
from confluent_kafka import Consumer, KafkaError, TopicPartition

from audit import SigningKey
from gateway.auth import hash_api_key, new_api_key
from gateway.pii import Keyring
from tests.gateway.conftest import NORWAY_STRICT

EVENT_ID_HEADER = "fjordgate-event-id"


def observe_mode_policy(directory: Path) -> Path:
    """The shipped pack in `observe` mode: placement failures on a test machine (no GeoIP
    database, a loose vm.swappiness) are audited instead of refusing to start."""
    data = yaml.safe_load(NORWAY_STRICT.read_text())
    data["mode"] = "observe"
    path = directory / "policy.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(
    directory: Path, bootstrap: str, *, policy: Path | None = None, **kafka: object
) -> tuple[Path, str]:
    """A gateway config in `directory` with its own audit key, keyring and API key."""
    directory.mkdir(parents=True, exist_ok=True)
    key = new_api_key()
    signing = directory / "audit-key.pem"
    if not signing.exists():
        SigningKey.create(signing)
    keyring = directory / "keyring.json"
    if not keyring.exists():
        Keyring.generate(keyring)
    suffix = uuid.uuid4().hex[:8]
    config = {
        "policy": str(policy or observe_mode_policy(directory)),
        "keyring": str(keyring),
        "audit": {"directory": str(directory / "audit"), "signing_key": str(signing)},
        "kafka": {
            "bootstrap": bootstrap,
            "transactional_id": f"gw-test-{suffix}",
            "tagged_topic": f"{{stream}}.tagged.{suffix}",
            "raw_topic": f"{{stream}}.raw.{suffix}",
            "dead_letter_topic": f"{{stream}}.dead-letter.{suffix}",
            "timeout_s": 5.0,
            "partitions": 2,
            **kafka,
        },
        "http": {"host": "127.0.0.1", "port": free_port()},
        "api_keys": [
            {"name": "test-producer", "digest": hash_api_key(key), "streams": ["norway-traffic"]}
        ],
    }
    path = directory / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, key


def committed_messages(bootstrap: str, topic: str) -> list[Any]:
    """Every committed message of a topic (read committed, from the start), as
    confluent-kafka's `Message`s."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = list(metadata.topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        open_partitions = set(partitions)
        out: list[Any] = []
        idle = 0
        while open_partitions and idle < 40:
            batch = consumer.consume(1000, 0.5)
            if not batch:
                idle += 1
            for msg in batch:
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        open_partitions.discard(msg.partition())
                    continue
                out.append(msg)
        assert not open_partitions, f"could not read {topic} to its end"
        return out
    finally:
        consumer.close()


def read_topic(bootstrap: str, topic: str) -> list[tuple[str, bytes, dict[str, bytes]]]:
    """Every committed message of a topic: (event id, value, headers)."""
    out: list[tuple[str, bytes, dict[str, bytes]]] = []
    for msg in committed_messages(bootstrap, topic):
        headers = {k: v for k, v in (msg.headers() or []) if isinstance(v, bytes)}
        out.append((headers.get(EVENT_ID_HEADER, b"").decode(), msg.value(), headers))
    return out


def audited_event_ids(audit_dir: Path) -> Counter[str]:
    """Event ids of the decision records in an audit log directory (raw segment lines)."""
    ids: Counter[str] = Counter()
    for segment in sorted(audit_dir.rglob("*")):
        if not segment.is_file():
            continue
        for line in segment.read_bytes().splitlines():
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(entry, dict):
                continue
            record = entry.get("record", entry)
            if isinstance(record, dict) and record.get("type") == "decision":
                event_id = record.get("event_id")
                if isinstance(event_id, str):
                    ids[event_id] += 1
    return ids


class ServedGateway:
    """`fjordgate gateway serve` in a child process, so that it can be killed with SIGKILL."""

    def __init__(self, config: Path, port: int, log_path: Path) -> None:
        self.config = config
        self.port = port
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        fjordgate = shutil.which("fjordgate", path=os.path.dirname(sys.executable))
        assert fjordgate is not None
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [fjordgate, "--log-json", "gateway", "serve", "--config", str(self.config)],
                stdout=log,
                stderr=log,
            )

    def wait_ready(self, attempts: int = 300) -> None:
        import httpx

        for _ in range(attempts):
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(
                    f"gateway exited with {self.process.returncode}: "
                    + self.log_path.read_text()[-3000:]
                )
            try:
                if httpx.get(self.url + "/readyz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError("gateway did not become ready: " + self.log_path.read_text()[-3000:])

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
