"""The Kafka ingress across a broker restart: it recovers by itself, and the result is exactly once.

The broker is stopped and started again (same port, same data) while the ingress is moving raw
events; a transactional call that librdkafka leaves hanging while the group coordinator is away
(confluentinc/librdkafka#5456, #5511) must not stall it.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer
from starlette.testclient import TestClient

from gateway.config import GatewayConfig
from gateway.kafka_ingress import KafkaIngress
from gateway.serve import KafkaGateway, build_kafka_gateway
from gateway.synthetic import TrafficGenerator
from tests.conftest import KafkaBroker
from tests.gateway.kafka_support import audited_event_ids, read_topic, write_config

pytestmark = pytest.mark.kafka
STREAM = "norway-traffic"
RESTARTS = 3


def produce_raw(bootstrap: str, topic: str, events: list[dict[str, Any]], per_s: int) -> None:
    """Produce `events` at about `per_s` a second, riding out the broker's restart."""
    # Idempotent, so that the producer's own retries around the restart write each event once.
    producer = Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5}
    )
    chunk = max(per_s // 10, 1)
    for start in range(0, len(events), chunk):
        for event in events[start : start + chunk]:
            producer.produce(topic, orjson.dumps(event))
        producer.poll(0.1)
    assert producer.flush(300) == 0, "the raw events could not be produced"


def wait_for(what: str, check: Callable[[], bool], describe: Callable[[], str]) -> None:
    """Wait generously for `check`; fail saying what was awaited and what was seen."""
    for _ in range(600):
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}: {describe()}")


def ingress_config(tmp_path: Path, bootstrap: str) -> tuple[GatewayConfig, str, str, str]:
    """A gateway config with Kafka ingress for the stream, and its raw, tagged and
    dead-letter topics."""
    config_path, _ = write_config(tmp_path, bootstrap, ingress_streams=[STREAM])
    config = GatewayConfig.load(config_path)
    topics = (config.kafka.raw_topic, config.kafka.tagged_topic, config.kafka.dead_letter_topic)
    raw, tagged, dead = (t.replace("{stream}", STREAM) for t in topics)
    return config, raw, tagged, dead


def test_ingress_recovers_by_itself_after_a_broker_restart_and_publishes_each_event_once(
    tmp_path: Path, kafka_broker: KafkaBroker, kafka_bootstrap: str
) -> None:
    config, raw, tagged, dead = ingress_config(tmp_path, kafka_bootstrap)
    generator = TrafficGenerator(seed=41)
    events = generator.batch(30_000)
    for event in events[::97]:
        event["speed"] = "very fast"  # refused: goes to the dead-letter topic
    expected = Counter(e["event_id"] for e in events)

    parts: KafkaGateway = build_kafka_gateway(config)
    try:
        ingress = parts.ingress
        assert ingress is not None
        loader = threading.Thread(
            target=produce_raw, args=(kafka_bootstrap, raw, events, 1_500), daemon=True
        )
        loader.start()
        for restart in range(RESTARTS):
            # Restart only once the ingress is moving, so that the broker leaves mid-transaction.
            moving_from = ingress.batches_committed
            wait_for(
                "the ingress to commit batches",
                lambda: ingress.batches_committed >= moving_from + 2,  # noqa: B023
                lambda: f"{ingress.batches_committed} batches committed",
            )
            if restart % 2 == 0:
                kafka_broker.stop()
            else:
                kafka_broker.kill()
            time.sleep(1)
            kafka_broker.start()
        loader.join()

        def published() -> Counter[str]:
            return Counter(
                event_id
                for topic in (tagged, dead)
                for event_id, _, _ in read_topic(kafka_bootstrap, topic)
            )

        seen: Counter[str] = Counter()

        def all_published() -> bool:
            nonlocal seen
            seen = published()
            return set(seen) >= set(expected)

        wait_for(
            "every raw event in the tagged or dead-letter topic",
            all_published,
            lambda: (
                f"{len(set(seen))} of {len(expected)} event ids published, "
                f"ingress healthy: {ingress.healthy()}"
            ),
        )
        assert ingress.healthy()
        assert TestClient(parts.gateway.app).get("/readyz").status_code == 200
    finally:
        parts.close()

    assert_exactly_once(published(), expected)
    assert_audited_once(config.audit.directory, expected)


def assert_exactly_once(published: Counter[str], expected: Counter[str]) -> None:
    doubled = [event_id for event_id, n in published.items() if n > 1]
    assert not doubled, f"{len(doubled)} event ids published more than once, e.g. {doubled[:3]}"
    missing = set(expected) - set(published)
    assert not missing, f"{len(missing)} event ids never published, e.g. {sorted(missing)[:3]}"
    assert published == expected


def assert_audited_once(audit_dir: Path, expected: Counter[str]) -> None:
    audited = audited_event_ids(audit_dir)
    missing = set(expected) - set(audited)
    assert not missing, f"{len(missing)} events without an audit record, e.g. {sorted(missing)[:3]}"
    # Reprocessing in the same process does not append a decision again.
    doubled = [event_id for event_id, n in audited.items() if n > 1]
    assert not doubled, f"{len(doubled)} events audited more than once, e.g. {doubled[:3]}"


class OffsetsHangUntilReleased:
    """A transactional producer whose send_offsets_to_transaction blocks, as librdkafka's does
    while the group coordinator is away (confluentinc/librdkafka#5456)."""

    def __init__(self, producer: Producer, release: threading.Event) -> None:
        self._producer = producer
        self._release = release

    def __getattr__(self, name: str) -> Any:
        return getattr(self._producer, name)

    def send_offsets_to_transaction(self, *args: Any) -> None:
        self._release.wait()
        self._producer.send_offsets_to_transaction(*args)  # fenced by then


def test_a_transaction_stuck_in_librdkafka_is_abandoned_and_its_batch_published_once(
    tmp_path: Path, kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    hung: list[OffsetsHangUntilReleased] = []

    class FirstProducerHangs(KafkaIngress):
        def _producer(self) -> Producer:
            producer = super()._producer()
            if hung:
                return producer
            hung.append(OffsetsHangUntilReleased(producer, release))
            return hung[0]  # type: ignore[return-value]

    monkeypatch.setattr("gateway.serve.KafkaIngress", FirstProducerHangs)
    config, raw, tagged, _ = ingress_config(tmp_path, kafka_bootstrap)
    events = TrafficGenerator(seed=42).batch(2_000)
    expected = Counter(e["event_id"] for e in events)

    parts = build_kafka_gateway(config)
    try:
        ingress = parts.ingress
        assert ingress is not None
        produce_raw(kafka_bootstrap, raw, events, 10_000)
        seen: Counter[str] = Counter()

        def all_published() -> bool:
            nonlocal seen
            seen = Counter(i for i, _, _ in read_topic(kafka_bootstrap, tagged))
            return set(seen) >= set(expected)

        wait_for(
            "every raw event in the tagged topic",
            all_published,
            lambda: (
                f"{len(set(seen))} of {len(expected)} published, "
                f"{ingress.pairs_abandoned} producer/consumer pairs abandoned"
            ),
        )
        assert hung and ingress.pairs_abandoned >= 1
        assert ingress.healthy()
    finally:
        release.set()
        parts.close()

    assert_exactly_once(Counter(i for i, _, _ in read_topic(kafka_bootstrap, tagged)), expected)
    assert_audited_once(config.audit.directory, expected)


def test_an_idle_ingress_picks_up_again_after_a_broker_restart(
    tmp_path: Path, kafka_broker: KafkaBroker, kafka_bootstrap: str
) -> None:
    config, raw, tagged, _ = ingress_config(tmp_path, kafka_bootstrap)
    events = TrafficGenerator(seed=43).batch(600)
    first, second = events[:300], events[300:]
    seen: Counter[str] = Counter()

    def published(wanted: list[dict[str, Any]]) -> Callable[[], bool]:
        def check() -> bool:
            nonlocal seen
            seen = Counter(i for i, _, _ in read_topic(kafka_bootstrap, tagged))
            return set(seen) >= {e["event_id"] for e in wanted}

        return check

    parts = build_kafka_gateway(config)
    try:
        ingress = parts.ingress
        assert ingress is not None
        produce_raw(kafka_bootstrap, raw, first, 10_000)
        wait_for("the first events", published(first), lambda: f"{len(seen)} published")
        kafka_broker.stop()
        kafka_broker.start()
        produce_raw(kafka_bootstrap, raw, second, 10_000)
        wait_for(
            "the events produced after the restart",
            published(events),
            lambda: f"{len(seen)} of {len(events)} published, healthy: {ingress.healthy()}",
        )
        assert ingress.healthy()
    finally:
        parts.close()

    expected = Counter(e["event_id"] for e in events)
    assert_exactly_once(Counter(i for i, _, _ in read_topic(kafka_bootstrap, tagged)), expected)
    assert_audited_once(config.audit.directory, expected)
