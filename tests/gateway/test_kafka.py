"""The gateway against a real Kafka broker: transactions, idempotency, outages, ingress."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer
from starlette.testclient import TestClient

from gateway.config import GatewayConfig
from gateway.errors import PlacementRefused
from gateway.serve import build_kafka_gateway
from gateway.synthetic import TrafficGenerator
from tests.conftest import KafkaBroker
from tests.gateway.conftest import NORWAY_STRICT
from tests.gateway.kafka_support import audited_event_ids, read_topic, write_config

pytestmark = pytest.mark.kafka
URL = "/v1/streams/norway-traffic/events"


class Served:
    def __init__(self, config_path: Path, key: str) -> None:
        self.config_path = config_path
        self.config = GatewayConfig.load(config_path)
        self.key = key
        self.parts = build_kafka_gateway(self.config)
        self.gateway, self.audit, self.ingress = (
            self.parts.gateway,
            self.parts.audit,
            self.parts.ingress,
        )

    @property
    def tagged(self) -> str:
        return self.config.kafka.tagged_topic.replace("{stream}", "norway-traffic")

    def client(self) -> TestClient:
        return TestClient(self.gateway.app)

    def post(self, client: TestClient, events: list[dict[str, object]]) -> object:
        return client.post(URL, json=events, headers={"X-API-Key": self.key})

    def close(self) -> None:
        self.parts.close()


@pytest.fixture
def served(tmp_path: Path, kafka_bootstrap: str) -> Iterator[Served]:
    config, key = write_config(tmp_path, kafka_bootstrap)
    s = Served(config, key)
    yield s
    s.close()


def test_acknowledged_events_are_in_the_tagged_topic_once_with_their_audit_record(
    served: Served, kafka_bootstrap: str
) -> None:
    events = TrafficGenerator(seed=21).batch(20)
    with served.client() as client:
        first = client.post(URL, json=events, headers={"X-API-Key": served.key})
        retry = client.post(URL, json=events, headers={"X-API-Key": served.key})
    assert first.status_code == 200 and first.json()["accepted"] == 20
    assert retry.status_code == 200 and retry.json()["duplicates"] == 20

    messages = read_topic(kafka_bootstrap, served.tagged)
    ids = Counter(event_id for event_id, _, _ in messages)
    assert ids == Counter(e["event_id"] for e in events)
    _, value, headers = messages[0]
    assert headers["fjordgate-policy"].startswith(b"sha256:")
    assert b"ps1:" in value
    for event in events:
        assert event["driver_id"].encode() not in value
    audited = audited_event_ids(served.config.audit.directory)
    assert set(ids) <= set(audited)


def test_a_restarted_gateway_remembers_what_it_published(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    config, key = write_config(tmp_path, kafka_bootstrap)
    events = TrafficGenerator(seed=22).batch(15)
    first = Served(config, key)
    with first.client() as client:
        assert first.post(client, events).status_code == 200  # type: ignore[attr-defined]
    tagged = first.tagged
    first.close()

    second = Served(config, key)
    try:
        with second.client() as client:
            again = client.post(URL, json=events, headers={"X-API-Key": key})
        assert again.json()["duplicates"] == 15 and again.json()["accepted"] == 0
    finally:
        second.close()
    assert len(read_topic(kafka_bootstrap, tagged)) == 15


def test_kafka_stopped_means_503_nothing_acknowledged_and_recovery_when_it_returns(
    served: Served, kafka_broker: KafkaBroker, kafka_bootstrap: str
) -> None:
    generator = TrafficGenerator(seed=23)
    acked: list[str] = []
    with served.client() as client:
        before = generator.batch(10)
        assert served.post(client, before).status_code == 200  # type: ignore[attr-defined]
        acked += [e["event_id"] for e in before]

        kafka_broker.stop()
        try:
            during = generator.batch(10)
            response = client.post(URL, json=during, headers={"X-API-Key": served.key})
            assert response.status_code == 503
            assert int(response.headers["Retry-After"]) >= 1
            assert client.get("/readyz").status_code == 503
        finally:
            kafka_broker.start()

        # The client retries the refused batch until the gateway takes it.
        status = 0
        for _ in range(120):
            retry = client.post(URL, json=during, headers={"X-API-Key": served.key})
            status = retry.status_code
            if status == 200:
                break
            assert status == 503
            time.sleep(0.5)
        assert status == 200
        acked += [e["event_id"] for e in during]
        assert client.get("/readyz").status_code == 200

    ids = Counter(event_id for event_id, _, _ in read_topic(kafka_bootstrap, served.tagged))
    assert all(ids[event_id] == 1 for event_id in acked), (
        "an acknowledged event is missing or doubled"
    )
    assert set(ids) == set(acked)


def test_kafka_ingress_moves_raw_events_to_tagged_and_refusals_to_dead_letter(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    config, key = write_config(tmp_path, kafka_bootstrap, ingress_streams=["norway-traffic"])
    served = Served(config, key)
    try:
        raw_topic = served.config.kafka.raw_topic.replace("{stream}", "norway-traffic")
        dead = served.config.kafka.dead_letter_topic.replace("{stream}", "norway-traffic")
        good = TrafficGenerator(seed=24).batch(8)
        bad = TrafficGenerator(seed=25).event()
        bad["speed"] = "very fast"
        producer = Producer({"bootstrap.servers": kafka_bootstrap})
        for event in [*good, bad]:
            producer.produce(raw_topic, orjson.dumps(event))
        producer.produce(raw_topic, b"{not json")
        assert producer.flush(30) == 0

        tagged: list[tuple[str, bytes, dict[str, bytes]]] = []
        for _ in range(120):
            tagged = read_topic(kafka_bootstrap, served.tagged)
            if len(tagged) >= 8:
                break
            time.sleep(0.5)
        assert Counter(i for i, _, _ in tagged) == Counter(e["event_id"] for e in good)
        refused = read_topic(kafka_bootstrap, dead)
        codes = sorted(h["fjordgate-reason-code"] for _, _, h in refused)
        assert codes == [b"invalid_json", b"wrong_type"]
        reasons = [h["fjordgate-reason"] for _, _, h in refused]
        assert all(reasons) and not any(b"very fast" in r for r in reasons)
    finally:
        served.close()


def test_enforce_mode_refuses_to_start_when_placement_fails(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    # No GeoIP database is configured: in enforce mode the broker cannot be placed.
    config, _ = write_config(tmp_path, kafka_bootstrap, policy=NORWAY_STRICT)
    with pytest.raises(PlacementRefused, match="placement checks failed"):
        build_kafka_gateway(GatewayConfig.load(config))
    records = (tmp_path / "audit").rglob("*.jsonl")
    text = b"".join(p.read_bytes() for p in records)
    assert b'"type":"placement"' in text and b'"outcome":"fail"' in text
