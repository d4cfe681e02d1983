"""The whole production path on real services, as an operator runs it:

HTTP → `fjordgate gateway serve` (norway-strict in enforce mode, placement checked
against a GeoIP database that puts 127.0.0.1 in Norway on a Norwegian network) →
Apache Kafka (KRaft) → `fjordgate processor run` (the shipped seed job) → PostgreSQL.

At the end: the window table equals a reference computed from what was sent, no
personal data reached Kafka unminimised, both audit logs verify against their pinned
public keys, and the exported report counts exactly what was sent.
"""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pytest

from gateway.synthetic import TrafficGenerator
from tests.e2e.support import (
    FJORDGATE,
    IN_NORWAY,
    STREAM,
    export_public_key,
    export_report,
    fjordgate,
    gateway_setup,
    norway_strict_copy,
    plant_geo,
    processor_setup,
)
from tests.gateway.kafka_support import read_topic

# A fixed event-time spread: 600 events over five minutes, each up to 3 s out of
# order (inside the seed job's 5 s bound, so none is late), posted in batches of 50.
EVENT_TIME_START = dt.datetime(2026, 3, 2, 7, 0, 0, tzinfo=dt.UTC)
EVENTS = 600
SPACING = dt.timedelta(milliseconds=500)
BATCH = 50
WINDOW_MS = 60_000
# The identifier types whose values must never reach Kafka in the clear.
IDENTIFIER_TYPES = {
    "fodselsnummer", "d_nummer", "h_nummer", "organisasjonsnummer", "kontonummer", "iban",
    "payment_card", "email", "phone", "ip_address", "vehicle_plate",
}  # fmt: skip


def traffic() -> list[dict[str, Any]]:
    """Valid synthetic norway-traffic events: synthetic fødselsnummer, plates, free-text
    notes carrying a phone number, an e-mail address or a national id, and on every
    tenth event an undeclared field holding an e-mail address."""
    generator = TrafficGenerator(seed=2026, disorder_s=3.0)
    events = []
    for i in range(EVENTS):
        event = generator.event(EVENT_TIME_START + i * SPACING)
        if i % 10 == 0:
            event["owner_email"] = f"eier{i}@example.no"
        events.append(event)
    return events


def invalid_events() -> list[dict[str, Any]]:
    """Events the policy's schema refuses; each still carries personal data."""
    base = traffic()[0] | {"event_id": "invalid-0"}
    missing_speed = {k: v for k, v in base.items() if k != "speed"}
    return [
        missing_speed | {"event_id": "invalid-missing-speed"},
        base | {"event_id": "invalid-speed-type", "speed": "fast"},
        base | {"event_id": "invalid-event-time", "event_time": "yesterday"},
        {k: v for k, v in base.items() if k != "region"} | {"event_id": "invalid-no-region"},
    ]


def epoch_ms(text: str) -> int:
    return int(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def reference_windows(events: list[dict[str, Any]]) -> dict[tuple[int, str], float]:
    """Max speed per region per one-minute event-time window, computed from what was sent."""
    ref: dict[tuple[int, str], float] = {}
    for event in events:
        t = epoch_ms(event["event_time"])
        key = (t - t % WINDOW_MS, event["region"])
        ref[key] = max(ref.get(key, event["speed"]), event["speed"])
    return ref


def window_table(dsn: str) -> dict[tuple[int, str], float]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT window_start, window_end, region, max_speed FROM max_speed_per_region"
        ).fetchall()
    table = {}
    for start, end, region, speed in rows:
        assert end - start == dt.timedelta(milliseconds=WINDOW_MS)
        table[(int(start.timestamp() * 1000), region)] = speed
    return table


def post(client: httpx.Client, url: str, batch: list[dict[str, Any]]) -> dict[str, Any]:
    response = client.post(f"{url}/v1/streams/{STREAM}/events", json=batch)
    assert response.status_code in (200, 422), response.text
    body: dict[str, Any] = response.json()
    return body


def wait_for_first_window(dsn: str, processor: subprocess.Popen[bytes], log: Path) -> None:
    """Bounded wait: fails only if the running processor writes nothing at all."""
    for _ in range(600):
        assert processor.poll() is None, log.read_text()[-3000:]
        try:
            if window_table(dsn):
                return
        except psycopg.errors.UndefinedTable:
            pass
        time.sleep(0.2)
    raise AssertionError("the processor wrote no window: " + log.read_text()[-3000:])


@pytest.mark.kafka
@pytest.mark.postgres
def test_http_to_postgres_in_enforce_mode_is_exact_minimised_and_accounted_for(
    tmp_path: Path, kafka_bootstrap: str, postgres_dsn: str
) -> None:
    policy = norway_strict_copy(tmp_path, mode="enforce")
    geo = plant_geo(tmp_path / "geo", IN_NORWAY)
    gw = gateway_setup(tmp_path / "gateway", kafka_bootstrap, policy, geo)
    served = gw.served(tmp_path / "gateway.log")
    processor: subprocess.Popen[bytes] | None = None
    served.start()
    try:
        served.wait_ready()
        proc = processor_setup(
            tmp_path / "processor", kafka_bootstrap, gw.tagged_topic, postgres_dsn, policy, geo
        )
        processor_log = tmp_path / "processor.log"
        with processor_log.open("wb") as log:
            processor = subprocess.Popen(proc.args, env=proc.env, stdout=log, stderr=log)

        # -- a producer posts the traffic, the invalid events, and retries one batch ------
        sent = traffic()
        invalid = invalid_events()
        answers: Counter[str] = Counter()
        with httpx.Client(headers={"X-API-Key": gw.api_key}, timeout=30.0) as client:
            for i in range(0, EVENTS, BATCH):
                body = post(client, served.url, sent[i : i + BATCH])
                answers.update(r["status"] for r in body["results"])
            body = post(client, served.url, invalid)
            answers.update(r["status"] for r in body["results"])
            retried = post(client, served.url, sent[:BATCH])
            assert retried["duplicates"] == BATCH and retried["accepted"] == 0
        assert answers == {"accepted": EVENTS, "rejected": len(invalid)}

        # -- the processor streams, is stopped, and a bounded run finishes the input ------
        wait_for_first_window(postgres_dsn, processor, processor_log)
        processor.send_signal(signal.SIGTERM)
        assert processor.wait(timeout=120) == 0, processor_log.read_text()[-3000:]
        finish = subprocess.run(
            [*proc.args, "--until-end"], env=proc.env, capture_output=True, timeout=600
        )
        assert finish.returncode == 0, finish.stderr.decode()[-3000:]
        metrics = orjson.loads(finish.stdout)
        assert metrics["too_late"] == 0 and metrics["undecodable"] == 0
    finally:
        if processor is not None and processor.poll() is None:  # a failed step above
            processor.kill()
            processor.wait()
        served.terminate()
    # A clean stop: uvicorn re-raises SIGTERM once it has shut down (and the audit log is
    # closed: `audit verify --strict` below finds every record under a signed tree head).
    assert served.process is not None and served.process.returncode in (0, -signal.SIGTERM)

    # -- the window table is exact -------------------------------------------------------
    assert window_table(postgres_dsn) == reference_windows(sent)

    # -- Kafka holds every accepted event once, minimised -------------------------------
    messages = read_topic(kafka_bootstrap, gw.tagged_topic)
    assert sorted(event_id for event_id, _, _ in messages) == sorted(e["event_id"] for e in sent)
    tagged = tmp_path / "tagged.jsonl"
    tagged.write_bytes(b"".join(value + b"\n" for _, value, _ in messages))
    published = [orjson.loads(value) for _, value, _ in messages]
    assert all(e["driver_id"].startswith("ps1:") for e in published)
    assert all(e["plate"].startswith("ps1:") for e in published)
    assert not any("owner_email" in e for e in published)
    # The same scan over what the producer sent finds the identifiers: it can see them.
    as_sent = tmp_path / "as-sent.jsonl"
    as_sent.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in sent))
    scan = fjordgate("pii", "scan", "--jsonl", str(as_sent))
    assert scan.returncode == 0, scan.stderr
    seen = {orjson.loads(line)["type"] for line in scan.stdout.splitlines() if line.strip()}
    assert {"fodselsnummer", "vehicle_plate", "email", "phone"} <= seen
    scan = fjordgate("pii", "scan", "--jsonl", str(tagged))
    assert scan.returncode == 0, scan.stderr
    findings = [orjson.loads(line) for line in scan.stdout.splitlines() if line.strip()]
    assert [f for f in findings if f["type"] in IDENTIFIER_TYPES] == []
    raw = tagged.read_text(encoding="utf-8")
    personal = {e["driver_id"] for e in sent} | {e["plate"] for e in sent}
    personal |= {e["owner_email"] for e in sent if "owner_email" in e}
    assert [value for value in personal if value in raw] == []
    # Nor the services' logs.
    logs = (tmp_path / "gateway.log").read_text() + processor_log.read_text()
    logs += finish.stderr.decode()
    assert [value for value in personal if value in logs] == []
    notes_with_pii = [e for e in sent if any(c in e.get("note", "") for c in "@+")]
    assert notes_with_pii, "the traffic must carry free text with personal data"

    # -- both audit logs verify against their pinned keys; the report counts what was sent
    gateway_key = export_public_key(gw.signing_key, tmp_path / "gateway-audit.pub")
    processor_key = export_public_key(proc.signing_key, tmp_path / "processor-audit.pub")
    verify = fjordgate(
        "audit", "verify", str(gw.audit_dir), "--public-key", str(gateway_key), "--strict"
    )  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr
    # Not --strict: `processor run` leaves its last records unsigned until the log is
    # reopened (see test_processor_signs_its_audit_log_when_it_stops_cleanly).
    verify = fjordgate("audit", "verify", str(proc.audit_dir), "--public-key", str(processor_key))
    assert verify.returncode == 0, verify.stdout + verify.stderr

    report = export_report(gw.audit_dir, gateway_key, tmp_path / "gateway-report.json")
    assert report["verification"]["intact"] and report["verification"]["pinned_key"]
    assert report["decisions_by_outcome"] == {"allow": EVENTS, "rejected": len(invalid)}
    assert report["decisions_by_stream"] == {STREAM: {"allow": EVENTS, "rejected": len(invalid)}}
    placements = report["placement_attestations"]["rows"]
    assert [(p["component"], p["mode"]) for p in placements] == [("gateway", "enforce")]
    # Warnings only (state on a rotational disk, checks this gateway has nothing for).
    assert placements[0]["outcome"] in ("pass", "warn")
    assert "kafka.brokers" not in placements[0]["not_passed"]

    # A data subject's access request finds every decision about one driver, through
    # the pseudonyms, though the log never holds the national id.
    driver = next(e["driver_id"] for e in sent if e["driver_id"] != invalid[0]["driver_id"])
    subject = subprocess.run(
        [FJORDGATE, "audit", "subject", str(gw.audit_dir), "--keyring", str(gw.keyring),
         "--id", "-", "--public-key", str(gateway_key), "--json"],
        input=driver, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert subject.returncode == 0, subject.stderr
    found = {r["record"]["event_id"] for r in orjson.loads(subject.stdout)["records"]}
    assert found == {e["event_id"] for e in sent if e["driver_id"] == driver}
    assert driver not in "".join(p.read_text() for p in gw.audit_dir.rglob("*.jsonl"))

    processor_report = export_report(
        proc.audit_dir, processor_key, tmp_path / "processor-report.json"
    )
    assert processor_report["verification"]["intact"]
    # Two runs (streaming, then bounded), each checking its sink and late-event file.
    assert processor_report["egress_by_outcome"] == {"allow": 4}
    assert processor_report["by_rule"] == {
        "strict.loopback": {"allow": 2},  # PostgreSQL, after the provider (Telenor, NO) passed
        "local-file": {"allow": 2},  # the late-events file
    }
    assert processor_report["denied_egress"]["total"] == 0


@pytest.mark.kafka
@pytest.mark.postgres
def test_the_processors_placement_attestation_reads_like_the_gateways_in_the_report(
    tmp_path: Path, kafka_bootstrap: str, kafka_topic: str, postgres_dsn: str
) -> None:
    policy = norway_strict_copy(tmp_path, mode="enforce")
    geo = plant_geo(tmp_path / "geo", IN_NORWAY)
    proc = processor_setup(
        tmp_path / "processor", kafka_bootstrap, kafka_topic, postgres_dsn, policy, geo
    )
    done = subprocess.run(
        [*proc.args, "--until-end"], env=proc.env, capture_output=True, timeout=600
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]

    key = export_public_key(proc.signing_key, tmp_path / "audit.pub")
    report = export_report(proc.audit_dir, key, tmp_path / "report.json")
    [placement] = report["placement_attestations"]["rows"]
    assert placement["mode"] == "enforce" and placement["outcome"] in ("pass", "warn")
    assert placement["checks"] >= 1
