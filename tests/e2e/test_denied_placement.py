"""The denied path: services whose address locates outside Norway, on real Kafka and PostgreSQL.

The test GeoIP database puts 127.0.0.1, where the test broker and database listen,
in Sweden on Amazon's network: a US cloud's Stockholm region, the Schrems II case.
Under norway-strict, `enforce` refuses to start (non-zero exit, a message naming the
check and the facts, an audit record of the refusal); `observe` starts and records
the same failure for the DPO.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import psycopg
import pytest
import yaml

from tests.e2e.support import (
    FJORDGATE,
    STREAM,
    US_CLOUD_IN_SWEDEN,
    export_public_key,
    export_report,
    gateway_setup,
    norway_strict_copy,
    plant_geo,
    processor_setup,
)
from tests.location.conftest import TELENOR


def _tables(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
    return {name for (name,) in rows}


@pytest.mark.kafka
def test_gateway_refuses_to_start_in_enforce_mode_when_the_broker_is_on_a_us_cloud(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    policy = norway_strict_copy(tmp_path, mode="enforce")
    geo = plant_geo(tmp_path / "geo", US_CLOUD_IN_SWEDEN)
    gw = gateway_setup(tmp_path / "gateway", kafka_bootstrap, policy, geo)

    done = subprocess.run(
        [FJORDGATE, "--log-json", "gateway", "serve", "--config", str(gw.config)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "400"},  # the refusal on one line
    )

    assert done.returncode != 0
    message = " ".join((done.stdout + done.stderr).split())
    assert "refusing to start" in message
    assert "kafka.brokers" in message and "under US jurisdiction" in message
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{gw.port}/healthz", timeout=2.0)

    key = export_public_key(gw.signing_key, tmp_path / "audit.pub")
    report = export_report(gw.audit_dir, key, tmp_path / "report.json")
    assert report["verification"]["intact"]
    [placement] = report["placement_attestations"]["rows"]
    assert (placement["component"], placement["mode"], placement["outcome"]) == (
        "gateway",
        "enforce",
        "fail",
    )
    assert "kafka.brokers" in placement["not_passed"]
    assert report["decisions_by_outcome"] == {}
    # The gateway closes its log on the way out: the refusal is under a signed tree head.
    assert _verify_strict(gw.audit_dir, gw.signing_key, tmp_path) == 0


@pytest.mark.kafka
def test_gateway_starts_in_observe_mode_and_records_the_failed_placement(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    policy = norway_strict_copy(tmp_path, mode="observe")
    geo = plant_geo(tmp_path / "geo", US_CLOUD_IN_SWEDEN)
    gw = gateway_setup(tmp_path / "gateway", kafka_bootstrap, policy, geo)
    served = gw.served(tmp_path / "gateway.log")
    served.start()
    try:
        served.wait_ready()
        event = {"event_id": "observe-1", "region": "Oslo", "speed": 80.5,
                 "event_time": "2026-03-02T07:00:00.000Z"}  # fmt: skip
        response = httpx.post(
            f"{served.url}/v1/streams/{STREAM}/events",
            json=[event],
            headers={"X-API-Key": gw.api_key},
            timeout=30.0,
        )
        assert response.status_code == 200
        assert response.json()["accepted"] == 1
    finally:
        served.terminate()

    key = export_public_key(gw.signing_key, tmp_path / "audit.pub")
    report = export_report(gw.audit_dir, key, tmp_path / "report.json")
    [placement] = report["placement_attestations"]["rows"]
    assert (placement["component"], placement["mode"], placement["outcome"]) == (
        "gateway",
        "observe",
        "fail",
    )
    assert "kafka.brokers" in placement["not_passed"]
    assert report["decisions_by_outcome"] == {"allow": 1}


@pytest.mark.kafka
@pytest.mark.postgres
def test_processor_refuses_a_postgres_sink_on_a_us_cloud_in_enforce_mode(
    tmp_path: Path, kafka_bootstrap: str, kafka_topic: str, postgres_dsn: str
) -> None:
    policy = norway_strict_copy(tmp_path, mode="enforce")
    geo = plant_geo(tmp_path / "geo", US_CLOUD_IN_SWEDEN)
    proc = processor_setup(
        tmp_path / "processor", kafka_bootstrap, kafka_topic, postgres_dsn, policy, geo
    )

    done = subprocess.run(
        [*proc.args, "--until-end"], env=proc.env, capture_output=True, text=True, timeout=300
    )

    assert done.returncode != 0
    assert "sink destination postgresql://127.0.0.1:" in done.stderr
    assert "refused" in done.stderr and "US" in done.stderr
    assert _tables(postgres_dsn) == set(), "nothing may be written before the check"

    key = export_public_key(proc.signing_key, tmp_path / "audit.pub")
    report = export_report(proc.audit_dir, key, tmp_path / "report.json")
    assert report["verification"]["intact"]
    [denied] = report["denied_egress"]["rows"]
    assert denied["component"] == "processor"
    assert denied["destination"].startswith("postgresql://127.0.0.1:")
    assert "US" in denied["reasons"]
    # The refusal itself is under a signed tree head: the log was closed on exit.
    assert _verify_strict(proc.audit_dir, proc.signing_key, tmp_path) == 0


@pytest.mark.kafka
@pytest.mark.postgres
def test_processor_runs_in_observe_mode_and_records_the_denied_sink(
    tmp_path: Path, kafka_bootstrap: str, kafka_topic: str, postgres_dsn: str
) -> None:
    policy = norway_strict_copy(tmp_path, mode="observe")
    geo = plant_geo(tmp_path / "geo", US_CLOUD_IN_SWEDEN)
    proc = processor_setup(
        tmp_path / "processor", kafka_bootstrap, kafka_topic, postgres_dsn, policy, geo
    )

    done = subprocess.run(
        [*proc.args, "--until-end"], env=proc.env, capture_output=True, text=True, timeout=300
    )

    assert done.returncode == 0, done.stderr[-3000:]
    assert "max_speed_per_region" in _tables(postgres_dsn)
    key = export_public_key(proc.signing_key, tmp_path / "audit.pub")
    report = export_report(proc.audit_dir, key, tmp_path / "report.json")
    [denied] = report["denied_egress"]["rows"]
    assert denied["destination"].startswith("postgresql://127.0.0.1:")
    assert "egress_denied_observe_mode" in done.stderr


def _verify_strict(audit_dir: Path, signing_key: Path, tmp_path: Path) -> int:
    """`fjordgate audit verify --strict`: every record under a signed tree head."""
    key = export_public_key(signing_key, tmp_path / "strict.pub")
    verify = subprocess.run(
        [FJORDGATE, "audit", "verify", str(audit_dir), "--public-key", str(key), "--strict"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    return verify.returncode


@pytest.mark.kafka
def test_gateway_starts_with_brokers_on_a_declared_site_network(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    policy = norway_strict_copy(tmp_path, mode="enforce")
    # A geo database that knows nothing of 127.0.0.0/8, like any real one for 10.0.0.0/8.
    geo = plant_geo(tmp_path / "geo", ({"192.0.2.0/24": "NO"}, {"192.0.2.0/24": TELENOR}))
    gw = gateway_setup(tmp_path / "gateway", kafka_bootstrap, policy, geo)
    config = yaml.safe_load(gw.config.read_text())
    config["placement"]["site_networks"] = {"127.0.0.0/8": "NO"}
    gw.config.write_text(yaml.safe_dump(config))
    served = gw.served(tmp_path / "gateway.log")
    served.start()
    try:
        served.wait_ready()
    finally:
        served.terminate()

    key = export_public_key(gw.signing_key, tmp_path / "audit.pub")
    report = export_report(gw.audit_dir, key, tmp_path / "report.json")
    [placement] = report["placement_attestations"]["rows"]
    assert placement["mode"] == "enforce" and placement["outcome"] in ("pass", "warn")
    assert "kafka.brokers" not in placement["not_passed"]
