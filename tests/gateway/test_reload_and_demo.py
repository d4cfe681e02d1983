"""Hot reload of the policy in force, the configuration file, and `fjordgate demo`."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import orjson
import pytest
import yaml
from typer.testing import CliRunner

from gateway.cli import app
from gateway.config import GatewayConfig
from gateway.demo import Demo
from gateway.errors import ConfigError
from gateway.synthetic import TrafficGenerator
from tests.gateway.conftest import STREAM, LocalGateway
from tests.gateway.kafka_support import audited_event_ids

URL = f"/v1/streams/{STREAM}/events"


def _audit_lines(lg: LocalGateway) -> list[dict[str, object]]:
    out = []
    for path in sorted((lg.directory / "audit").rglob("*.jsonl")):
        out += [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
    return out


def _rewrite(path: Path, change: object) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)  # type: ignore[operator]
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    # A new mtime even on coarse clocks, so the watcher sees the change.
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))


def test_a_changed_policy_is_put_in_force_and_audited(local_gateway: LocalGateway) -> None:
    before = local_gateway.gateway.policy.content_hash

    def encrypt_plates(data: dict) -> None:  # type: ignore[type-arg]
        data["streams"][STREAM]["fields"]["plate"]["action"] = "encrypt"

    _rewrite(local_gateway.policy_path, encrypt_plates)
    assert local_gateway.gateway.watcher.check_now()
    after = local_gateway.gateway.policy.content_hash
    assert after != before
    with local_gateway.client() as client:
        response = client.post(
            URL, json=TrafficGenerator(seed=51).batch(1), headers=local_gateway.headers()
        )
    body = response.json()
    assert body["policy"] == after
    assert {"field": "plate", "action": "encrypt"} in body["results"][0]["transformed"]
    loaded = [r for r in _audit_lines(local_gateway) if r["type"] == "policy_loaded"]
    assert [r["policy_hash"] for r in loaded] == [before, after]


def test_a_broken_policy_is_rejected_audited_and_the_old_one_stays(
    local_gateway: LocalGateway,
) -> None:
    before = local_gateway.gateway.policy.content_hash

    def break_it(data: dict) -> None:  # type: ignore[type-arg]
        data["streams"][STREAM]["fields"]["plate"]["action"] = "shred-it"

    _rewrite(local_gateway.policy_path, break_it)
    assert not local_gateway.gateway.watcher.check_now()
    assert local_gateway.gateway.policy.content_hash == before
    rejected = [r for r in _audit_lines(local_gateway) if r["type"] == "policy_rejected"]
    assert len(rejected) == 1
    assert rejected[0]["kept_policy_hash"] == before
    assert rejected[0]["issues"] and rejected[0]["issues"][0]["line"] > 0  # type: ignore[index]
    with local_gateway.client() as client:
        response = client.post(
            URL, json=TrafficGenerator(seed=52).batch(1), headers=local_gateway.headers()
        )
    assert response.status_code == 200 and response.json()["policy"] == before


def test_the_watcher_thread_picks_up_a_change_by_itself(local_gateway: LocalGateway) -> None:
    before = local_gateway.gateway.policy.content_hash
    local_gateway.gateway.watcher.start()

    def observe(data: dict) -> None:  # type: ignore[type-arg]
        data["mode"] = "observe"

    _rewrite(local_gateway.policy_path, observe)
    for _ in range(400):
        if local_gateway.gateway.policy.content_hash != before:
            break
        time.sleep(0.05)
    assert local_gateway.gateway.policy.mode == "observe"


def test_configuration_errors_name_the_field(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "policy": "p.yaml",
                "keyring": "k.json",
                "audit": {"directory": "audit", "signing_key": "a.pem"},
                "kafka": {"bootstrap": "127.0.0.1:9092"},
                "api_keys": [{"name": "x", "digest": "plain-text-key", "streams": ["s"]}],
            }
        )
    )
    with pytest.raises(ConfigError, match=r"api_keys\.0\.digest"):
        GatewayConfig.load(path)


def test_configuration_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "policy": "p.yaml",
                "keyring": "k.json",
                "audit": {"directory": "audit", "signing_key": "a.pem"},
                "kafka": {"bootstrap": "127.0.0.1:9092"},
            }
        )
    )
    config = GatewayConfig.load(path)
    assert config.policy == tmp_path / "p.yaml"
    assert config.audit.directory == tmp_path / "audit"


def test_the_demo_leaves_an_audit_log_a_sqlite_file_and_counts_that_add_up(
    tmp_path: Path,
) -> None:
    result = Demo(tmp_path, duration_s=4.0, rate=100, seed=3).run()
    stats = result.stats
    assert stats.sent > 0
    assert stats.outcomes["accepted"] + stats.outcomes["rejected"] == stats.sent
    assert stats.outcomes["duplicate"] > 0  # the generator retries some batches
    assert stats.reasons["wrong_type"] >= 1
    assert stats.http_errors == {}
    assert result.sqlite_path.exists()
    assert result.report_path is not None and result.report_path.exists(), result.report_note
    assert "verified" in result.report_note
    with sqlite3.connect(result.sqlite_path) as conn:
        rows = conn.execute("SELECT region, max_speed FROM max_speed_per_region").fetchall()
    assert rows and len(rows) == stats.windows_written
    assert all(30.0 <= speed <= 130.0 for _, speed in rows)
    audited = audited_event_ids(result.audit_dir)
    assert sum(audited.values()) >= stats.outcomes["accepted"]
    audit_text = b"".join(p.read_bytes() for p in result.audit_dir.rglob("*.jsonl"))
    assert b'"type":"placement"' in audit_text
    # A data subject's decisions are found from their id, which the log never holds.
    from audit.subject import find_subject, load_pseudonym_keys, subject_pseudonyms

    driver = TrafficGenerator(3, disorder_s=4.0).event()["driver_id"]
    assert driver.encode() not in audit_text
    keys, _ = load_pseudonym_keys(result.run_dir / "keyring.json")
    matches = find_subject(result.audit_dir, subject_pseudonyms(driver, keys))
    assert matches and all(m.record["type"] == "decision" for m in matches)
    assert {"pseudonyms.driver_id"} <= {f for m in matches for f in m.fields}
    assert b"attested as local without a GeoIP database" in audit_text


def test_fjordgate_demo_prints_the_summary_and_the_paths(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["demo", "--duration", "2", "--rate", "50", "--out", str(tmp_path), "--seed", "5"]
    )
    assert result.exit_code == 0, result.output
    assert "Summary" in result.output
    assert "windows written" in result.output
    assert "audit log" in result.output and "SQLite results" in result.output
    assert "HTML report" in result.output and "report.html" in result.output
    assert "without a GeoIP database" in result.output


def test_the_example_configuration_is_valid() -> None:
    example = Path(__file__).resolve().parents[2] / "gateway" / "examples" / "gateway.yaml"
    config = GatewayConfig.load(example)
    assert config.kafka.ingress_streams == ["norway-traffic"]
    assert config.api_keys[0].digest.startswith("sha256:")


def test_a_second_demo_run_moves_the_first_into_previous_runs_never_deleting_it(
    tmp_path: Path,
) -> None:
    from gateway.demo import archive_previous_run

    (tmp_path / "audit").mkdir()
    (tmp_path / "audit" / "segment-00000001.jsonl").write_text("{}\n")
    (tmp_path / "results.sqlite").write_bytes(b"x")
    (tmp_path / "unrelated.txt").write_text("stays")
    moved = archive_previous_run(tmp_path)
    assert moved is not None and moved.parent == tmp_path / "previous-runs"
    assert (moved / "audit" / "segment-00000001.jsonl").read_text() == "{}\n"
    assert (moved / "results.sqlite").exists()
    assert not (tmp_path / "audit").exists() and (tmp_path / "unrelated.txt").exists()
    assert archive_previous_run(tmp_path) is None


def test_api_key_new_prints_the_key_once_and_a_config_entry_with_only_its_digest() -> None:
    from gateway.auth import ApiKey, ApiKeyStore

    result = CliRunner().invoke(
        app, ["gateway", "api-key", "new", "--name", "sensors", "--stream", "norway-traffic"]
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    key = lines[0].rsplit(" ", 1)[-1]
    entry = yaml.safe_load("\n".join(lines[2:]))[0]
    assert key not in "\n".join(lines[1:])
    store = ApiKeyStore([ApiKey(entry["name"], entry["digest"], frozenset(entry["streams"]))])
    found = store.authenticate(key)
    assert found is not None and found.allows("norway-traffic")
