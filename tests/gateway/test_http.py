"""The HTTP front, end to end over a real audit log and a real local log."""

from __future__ import annotations

import orjson

from audit import AuditLog
from gateway.synthetic import TrafficGenerator
from tests.gateway.conftest import STREAM, LocalGateway

URL = f"/v1/streams/{STREAM}/events"


def audit_records(lg: LocalGateway) -> list[dict[str, object]]:
    out = []
    for segment in sorted((lg.directory / "audit").glob("*")):
        if segment.is_file():
            for line in segment.read_bytes().splitlines():
                try:
                    entry = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                if isinstance(entry, dict):
                    out.append(entry.get("record", entry))
    return out


def test_accepted_events_are_minimised_published_and_audited(local_gateway: LocalGateway) -> None:
    events = TrafficGenerator(seed=1).batch(5)
    with local_gateway.client() as client:
        response = client.post(URL, json=events, headers=local_gateway.headers())
    assert response.status_code == 200
    body = response.json()
    assert body["accepted"] == 5 and body["rejected"] == 0
    first = body["results"][0]
    assert first["status"] == "accepted" and first["event_id"] == events[0]["event_id"]
    actions = {t["field"]: t["action"] for t in first["transformed"]}
    assert actions["driver_id"] == "pseudonymise" and actions["plate"] == "pseudonymise"

    published = [orjson.loads(v) for v in local_gateway.published_values()]
    assert sorted(p["event_id"] for p in published) == sorted(e["event_id"] for e in events)
    text = b"".join(local_gateway.published_values())
    for event in events:
        assert event["driver_id"].encode() not in text
        assert event["plate"].encode() not in text
    audit_text = b"".join(
        p.read_bytes() for p in (local_gateway.directory / "audit").rglob("*") if p.is_file()
    )
    for event in events:
        assert event["event_id"].encode() in audit_text
        assert event["driver_id"].encode() not in audit_text
        assert event["plate"].encode() not in audit_text


def test_a_retried_batch_is_not_published_twice(local_gateway: LocalGateway) -> None:
    events = TrafficGenerator(seed=2).batch(10)
    with local_gateway.client() as client:
        first = client.post(URL, json=events, headers=local_gateway.headers())
        again = client.post(URL, json=events, headers=local_gateway.headers())
    assert first.status_code == 200 and first.json()["accepted"] == 10
    assert again.status_code == 200
    assert again.json()["accepted"] == 0 and again.json()["duplicates"] == 10
    assert len(local_gateway.published_values()) == 10


def test_duplicates_inside_one_batch_are_published_once(local_gateway: LocalGateway) -> None:
    event = TrafficGenerator(seed=3).event()
    with local_gateway.client() as client:
        response = client.post(URL, json=[event, dict(event)], headers=local_gateway.headers())
    assert [r["status"] for r in response.json()["results"]] == ["accepted", "duplicate"]
    assert len(local_gateway.published_values()) == 1


def test_ndjson_batches_are_accepted_line_by_line(local_gateway: LocalGateway) -> None:
    events = TrafficGenerator(seed=4).batch(3)
    body = b"\n".join(orjson.dumps(e) for e in events) + b"\n{not json\n"
    with local_gateway.client() as client:
        response = client.post(
            URL,
            content=body,
            headers={**local_gateway.headers(), "Content-Type": "application/x-ndjson"},
        )
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["accepted"] * 3 + ["rejected"]
    assert results[3]["error"]["code"] == "invalid_json"


def test_malformed_json_is_a_400_that_does_not_echo_the_body(local_gateway: LocalGateway) -> None:
    secret = "01817512345"
    with local_gateway.client() as client:
        response = client.post(
            URL,
            content=b'[{"driver_id": ' + secret.encode() + b"x}",
            headers={**local_gateway.headers(), "Content-Type": "application/json"},
        )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"
    assert secret not in response.text


def test_wrong_types_are_rejected_per_event_naming_the_field_not_the_value(
    local_gateway: LocalGateway,
) -> None:
    event = TrafficGenerator(seed=5).event()
    event["speed"] = "fast, driver 01817512345"
    with local_gateway.client() as client:
        response = client.post(URL, json=[event], headers=local_gateway.headers())
    assert response.status_code == 422
    result = response.json()["results"][0]
    assert result["status"] == "rejected"
    assert result["error"]["code"] == "wrong_type" and result["error"]["field"] == "speed"
    assert "01817512345" not in response.text
    assert local_gateway.published_values() == []


def test_a_mixed_batch_keeps_the_good_events(local_gateway: LocalGateway) -> None:
    good, bad = TrafficGenerator(seed=6).batch(2)
    del bad["region"]
    with local_gateway.client() as client:
        response = client.post(URL, json=[good, bad], headers=local_gateway.headers())
    assert response.status_code == 200
    assert [r["status"] for r in response.json()["results"]] == ["accepted", "rejected"]
    assert response.json()["results"][1]["error"]["code"] == "missing_field"


def test_unknown_stream_is_404_without_echoing_the_name(local_gateway: LocalGateway) -> None:
    with local_gateway.client() as client:
        response = client.post(
            "/v1/streams/01817512345/events", json=[{}], headers=local_gateway.headers()
        )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_stream"
    assert "01817512345" not in response.text
    assert "norway-traffic" in response.json()["error"]["message"]


def test_missing_and_bad_api_keys_are_401(local_gateway: LocalGateway) -> None:
    with local_gateway.client() as client:
        missing = client.post(URL, json=[{}])
        bad = client.post(URL, json=[{}], headers={"X-API-Key": "fjg_not-a-key"})
        bearer = client.post(
            URL,
            json=TrafficGenerator(seed=7).batch(1),
            headers={"Authorization": f"Bearer {local_gateway.key}"},
        )
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "missing_api_key"
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "invalid_api_key"
    assert "fjg_not-a-key" not in bad.text
    assert bearer.status_code == 200


def test_a_key_scoped_to_another_stream_is_403(local_gateway: LocalGateway) -> None:
    with local_gateway.client() as client:
        response = client.post(
            URL, json=[{}], headers=local_gateway.headers(local_gateway.other_key)
        )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "stream_not_allowed"


def test_oversized_bodies_are_413(local_gateway: LocalGateway) -> None:
    limit = local_gateway.gateway.app.max_body_bytes
    with local_gateway.client() as client:
        response = client.post(
            URL,
            content=b"[" + b" " * (limit + 10) + b"]",
            headers={**local_gateway.headers(), "Content-Type": "application/json"},
        )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"


def test_other_media_types_are_415(local_gateway: LocalGateway) -> None:
    with local_gateway.client() as client:
        response = client.post(
            URL, content=b"a,b", headers={**local_gateway.headers(), "Content-Type": "text/csv"}
        )
    assert response.status_code == 415


def test_an_audit_log_that_cannot_write_means_503_and_nothing_published(
    local_gateway: LocalGateway,
) -> None:
    local_gateway.audit.close()
    with local_gateway.client() as client:
        response = client.post(
            URL, json=TrafficGenerator(seed=8).batch(3), headers=local_gateway.headers()
        )
        ready = client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.json()["error"]["code"] == "unavailable"
    assert local_gateway.published_values() == []
    assert ready.status_code == 503 and ready.json()["checks"]["audit"] is False


def test_overload_is_429_with_retry_after(local_gateway: LocalGateway) -> None:
    committer = local_gateway.gateway.committer
    committer.max_pending_events = 5
    # As if five events were still waiting for the committer (it only ever lowers
    # this count when it takes jobs, and none are queued).
    committer._pending_events = 5
    with local_gateway.client() as client:
        response = client.post(
            URL, json=TrafficGenerator(seed=9).batch(3), headers=local_gateway.headers()
        )
    committer._pending_events = 0
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) >= 1
    assert response.json()["error"]["code"] == "overloaded"


def test_health_readiness_metrics_and_openapi(local_gateway: LocalGateway) -> None:
    with local_gateway.client() as client:
        client.post(URL, json=TrafficGenerator(seed=10).batch(2), headers=local_gateway.headers())
        health = client.get("/healthz")
        ready = client.get("/readyz")
        metrics = client.get("/metrics")
        spec = client.get("/openapi.json")
    assert health.status_code == 200
    assert ready.status_code == 200 and ready.json()["ready"] is True
    text = metrics.text
    assert (
        'fjordgate_events_total{outcome="accepted",source="http",stream="norway-traffic"} 2.0'
        in text
    )
    assert "fjordgate_audit_fsync_seconds_bucket" in text
    assert "fjordgate_http_request_seconds_bucket" in text
    assert "fjordgate_kafka_delivery_errors" in text or "kafka" not in text
    paths = spec.json()["paths"]
    assert URL in paths
    schema = spec.json()["components"]["schemas"]["Event_norway_traffic"]
    assert schema["properties"]["speed"]["type"] == "number"
    assert "region" in schema["required"]


def test_the_audit_log_holds_a_decision_per_event_and_the_policy_load(
    local_gateway: LocalGateway,
) -> None:
    events = TrafficGenerator(seed=11).batch(4)
    with local_gateway.client() as client:
        client.post(URL, json=events, headers=local_gateway.headers())
    assert isinstance(local_gateway.audit, AuditLog)
    records = audit_records(local_gateway)
    types = [r.get("type") for r in records]
    assert "policy_loaded" in types
    decided = {r["event_id"] for r in records if r.get("type") == "decision"}
    assert decided == {e["event_id"] for e in events}


def test_a_failed_placement_recheck_in_enforce_mode_stops_intake_until_it_passes(
    local_gateway: LocalGateway,
) -> None:
    committer = local_gateway.gateway.committer
    committer.refusing = "a placement re-check failed in enforce mode (kafka.brokers)"
    with local_gateway.client() as client:
        refused = client.post(
            URL, json=TrafficGenerator(seed=12).batch(2), headers=local_gateway.headers()
        )
        not_ready = client.get("/readyz")
        committer.refusing = None
        taken = client.post(
            URL, json=TrafficGenerator(seed=13).batch(2), headers=local_gateway.headers()
        )
    assert refused.status_code == 503 and "placement" in refused.json()["error"]["message"]
    assert not_ready.status_code == 503 and not_ready.json()["checks"]["placement"] is False
    assert taken.status_code == 200
    assert len(local_gateway.published_values()) == 2


def test_a_stalled_kafka_ingress_batch_makes_the_gateway_not_ready(
    local_gateway: LocalGateway,
) -> None:
    import time

    from gateway.kafka_ingress import KafkaIngress
    from gateway.pipeline import Topics

    gateway = local_gateway.gateway
    ingress = KafkaIngress(
        "127.0.0.1:9",
        ["norway-traffic"],
        pipelines=lambda: gateway.ingest.pipelines,  # type: ignore[union-attr]
        audit=local_gateway.audit,
        topics=Topics(),
        transactional_id="never-started",
        group="never-started",
        metrics=gateway.metrics,
    )
    gateway.extra_checks["kafka_ingress"] = ingress.healthy
    with local_gateway.client() as client:
        assert client.get("/readyz").json()["checks"]["kafka_ingress"] is True
        ingress._busy_since = time.monotonic() - ingress.stall_after_s - 1
        stalled = client.get("/readyz")
    assert stalled.status_code == 503 and stalled.json()["checks"]["kafka_ingress"] is False
