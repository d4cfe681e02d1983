"""The publisher's two producers against a real broker: the compiled `NativeProducer`
(native/src/kafka.rs, librdkafka's C API) and confluent-kafka's `Producer`, its reference.

Both must leave the same committed messages (key, value, headers), take groups larger
than the producer's queue, and keep nothing of a group whose transaction failed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from confluent_kafka import KafkaError, Producer

from gateway import Topics, build_pipeline, native, pii_tools
from gateway.errors import PublishError
from gateway.pii import Keyring
from gateway.publish import KafkaPublisher, NativeProducer
from gateway.record import Message, OutgoingMessage
from gateway.synthetic import TrafficGenerator
from policies import PolicyEngine, load_policy
from tests.gateway.conftest import NORWAY_STRICT, STREAM
from tests.gateway.kafka_support import committed_messages

pytestmark = pytest.mark.kafka

if native.fjordgate_native is None:  # CI builds it: tests/gateway/test_native.py fails there
    pytest.skip("fjordgate_native is not built here", allow_module_level=True)


def committed(bootstrap: str, topic: str) -> list[tuple[bytes | None, bytes, list[Any]]]:
    """Every committed message of `topic`: (key, value, headers), sorted."""
    found = [
        (m.key(), m.value(), list(m.headers() or [])) for m in committed_messages(bootstrap, topic)
    ]
    return sorted(found, key=lambda m: m[1])


def publisher_for(bootstrap: str, topic: str, *, compiled: bool, **settings: Any) -> KafkaPublisher:
    return KafkaPublisher(
        bootstrap,
        [topic],
        transactional_id=f"test-{uuid.uuid4().hex[:8]}",
        compiled=compiled,
        extra_config=settings or None,
    )


def messages(topic: str, count: int, tag: str) -> list[OutgoingMessage]:
    return [
        OutgoingMessage(
            topic,
            None if i % 5 == 0 else f"key-{i % 7}".encode(),
            f'{{"n":{i},"tag":"{tag}","text":"bl\\u00e5b\\u00e6r"}}'.encode(),
            [
                ("fjordgate-event-id", f"{tag}-{i}"),
                ("fjordgate-policy", b"sha256:ab"),
                ("empty", None),
            ],
            f"{tag}-{i}",
        )
        for i in range(count)
    ]


def core_messages(topic: str, count: int) -> list[Message]:
    """Messages the compiled core made (`fjordgate_native.Staged`) of synthetic events."""
    policy = load_policy(NORWAY_STRICT)
    pipeline = build_pipeline(
        policy,
        PolicyEngine(policy),
        STREAM,
        pii_tools(Keyring.ephemeral()),
        topics=Topics(tagged=topic),
        destination="local://127.0.0.1/log",
    )
    raws = [orjson.dumps(e) for e in TrafficGenerator(seed=21).batch(count)]
    pipeline.run_batch(native.make_records(STREAM, raws))  # the core learns the shapes
    records = native.make_records(STREAM, raws)
    pipeline.run_batch(records)
    made = [r.message for r in records if r.message is not None]
    assert len(made) == count
    assert all(type(m) is native.fjordgate_native.Staged for m in made)
    return made


def sent(m: Message) -> tuple[bytes | None, bytes, list[Any]]:
    """What a message's fields say the broker must hold (str header values as UTF-8)."""
    headers = [(n, v.encode() if isinstance(v, str) else v) for n, v in m.headers]
    return m.key, m.value, headers


@pytest.fixture(params=[True, False], ids=["compiled", "confluent-kafka"])
def publisher(
    request: pytest.FixtureRequest, kafka_bootstrap: str, kafka_topic: str
) -> Iterator[KafkaPublisher]:
    p = publisher_for(kafka_bootstrap, kafka_topic, compiled=request.param)
    p.start()
    expected = NativeProducer if request.param else Producer
    assert type(p._producer) is expected
    yield p
    p.close()


def test_both_producers_commit_the_same_messages(
    publisher: KafkaPublisher, kafka_bootstrap: str, kafka_topic: str
) -> None:
    first, second = messages(kafka_topic, 300, "a"), messages(kafka_topic, 5, "b")
    publisher.publish(first)
    publisher.publish(second)
    got = committed(kafka_bootstrap, kafka_topic)
    want = sorted((sent(m) for m in first + second), key=lambda m: m[1])
    assert got == want


def test_both_producers_commit_the_core_s_messages_as_their_fields_read(
    publisher: KafkaPublisher, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # The compiled producer reads a core-made message in place, confluent-kafka's through
    # its Python fields; both must commit what the fields say, beside OutgoingMessages.
    made = core_messages(kafka_topic, 200)
    group: list[Message] = [*made[:100], *messages(kafka_topic, 20, "c"), *made[100:]]
    publisher.publish(group)
    got = committed(kafka_bootstrap, kafka_topic)
    want = sorted((sent(m) for m in group), key=lambda m: m[1])
    assert got == want
    key, _, headers = sent(made[0])
    assert key  # the policy keys by region, which every event has
    assert [n for n, _ in headers] == ["fjordgate-event-id", "fjordgate-policy", "fjordgate-stream"]
    assert headers[0][1] == made[0].event_id.encode() and headers[2][1] == STREAM.encode()


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "confluent-kafka"])
def test_a_group_larger_than_the_producers_queue_is_committed_whole(
    compiled: bool, kafka_bootstrap: str, kafka_topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = publisher_for(
        kafka_bootstrap, kafka_topic, compiled=compiled, **{"queue.buffering.max.messages": 10}
    )
    waited: list[OutgoingMessage] = []
    when_full = p._produce_when_room

    def counted(producer: Any, m: OutgoingMessage) -> None:
        waited.append(m)
        when_full(producer, m)

    monkeypatch.setattr(p, "_produce_when_room", counted)
    try:
        p.publish(messages(kafka_topic, 400, "q"))
    finally:
        p.close()
    assert waited, "the queue never filled: the test did not test it"
    assert len(committed(kafka_bootstrap, kafka_topic)) == 400


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "confluent-kafka"])
def test_a_failed_group_leaves_nothing_and_the_next_one_commits(
    compiled: bool, kafka_bootstrap: str, kafka_topic: str
) -> None:
    p = publisher_for(
        kafka_bootstrap, kafka_topic, compiled=compiled, **{"message.max.bytes": 2_000}
    )
    try:
        group = messages(kafka_topic, 50, "f")
        group[30].value = b"x" * 5_000  # refused by the producer: too large
        with pytest.raises(PublishError, match="not committed"):
            p.publish(group)
        p.publish(messages(kafka_topic, 20, "g"))
    finally:
        p.close()
    got = committed(kafka_bootstrap, kafka_topic)
    assert len(got) == 20 and all(b'"tag":"g"' in value for _, value, _ in got)


def test_a_setting_librdkafka_refuses_is_named() -> None:
    with pytest.raises(ValueError, match=r"no\.such\.setting"):
        NativeProducer.create({"no.such.setting": "1"})


def test_a_callback_setting_leaves_the_producer_to_confluent_kafka() -> None:
    assert NativeProducer.create({"error_cb": print}) is None


def test_an_unreachable_broker_fails_init_as_confluent_kafka_does() -> None:
    producer = NativeProducer.create(
        {"bootstrap.servers": "127.0.0.1:1", "transactional.id": "nowhere"}
    )
    assert producer is not None
    try:
        from confluent_kafka import KafkaException

        with pytest.raises(KafkaException) as caught:
            producer.init_transactions(1.0)
        assert caught.value.args[0].code() == KafkaError._TIMED_OUT
        with pytest.raises(KafkaException):
            producer.list_topics(timeout=0.5)
    finally:
        producer.close()
