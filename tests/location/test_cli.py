"""`fjordgate locate`, `fjordgate doctor` and `fjordgate geo info`, as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from gateway.cli import app


def _geo_args(geo: Any) -> list[str]:
    return ["--country-db", str(geo.country), "--asn-db", str(geo.asn)]


def test_locate_json_prints_one_object_per_address(loopback_in_sweden: Any) -> None:
    result = CliRunner().invoke(
        app, ["locate", "127.0.0.1", "--json", *_geo_args(loopback_in_sweden)]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "address": "127.0.0.1",
        "country": "SE",
        "asn": 16509,
        "owner": "Amazon",
        "jurisdiction": "US",
    }


def test_locate_a_host_lists_every_address(loopback_in_norway: Any) -> None:
    result = CliRunner().invoke(
        app, ["locate", "localhost", "--json", *_geo_args(loopback_in_norway)]
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert rows and all(row["country"] == "NO" and row["owner"] == "Telenor" for row in rows)


def test_locate_prints_a_table_for_people(loopback_in_norway: Any) -> None:
    result = CliRunner().invoke(
        app, ["locate", "127.0.0.1", *_geo_args(loopback_in_norway)], terminal_width=160
    )
    assert result.exit_code == 0, result.output
    assert "AS2119" in result.stdout and "Telenor" in result.stdout


def test_locate_a_malformed_address_exits_2_with_the_reason(loopback_in_norway: Any) -> None:
    result = CliRunner().invoke(app, ["locate", "300.1.2.3", *_geo_args(loopback_in_norway)])
    assert result.exit_code == 2
    assert "not an IP address" in result.stderr


def test_locate_with_a_corrupt_database_exits_2_with_the_reason(
    tmp_path: Path, loopback_in_norway: Any
) -> None:
    corrupt = tmp_path / "corrupt.mmdb"
    corrupt.write_bytes(b"\x00" * 4096)
    result = CliRunner().invoke(
        app,
        [
            "locate",
            "127.0.0.1",
            "--country-db",
            str(corrupt),
            "--asn-db",
            str(loopback_in_norway.asn),
        ],
    )
    assert result.exit_code == 2
    assert "not a valid MaxMind DB" in result.stderr


def _doctor_config(tmp_path: Path, geo: Any, swappiness: int, policy_text: str) -> Path:
    proc = tmp_path / "proc"
    (proc / "sys" / "vm").mkdir(parents=True)
    (proc / "sys" / "vm" / "swappiness").write_text(f"{swappiness}\n")
    (proc / "self").mkdir()
    state = tmp_path / "state"
    state.mkdir()
    (proc / "self" / "mountinfo").write_text(f"90 1 0:50 / {state} rw - tmpfs tmpfs rw\n")
    (tmp_path / "policy.yaml").write_text(policy_text)
    config = {
        "policy": "policy.yaml",
        "geo": {"country_db": str(geo.country), "asn_db": str(geo.asn)},
        "placement": {
            "state_dir": "state",
            "min_free_space": 1024,
            "proc_root": str(proc),
            "sys_root": str(tmp_path / "sys"),
        },
    }
    path = tmp_path / "doctor.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


POLICY = """\
metadata: {name: cli-test, version: "1", owner: dpo@example.no}
mode: enforce
jurisdiction: {home: "NO", forbidden_provider_jurisdictions: [US]}
streams: {s: {fields: {a: {pii: none, action: allow}}}}
placement: {max_swappiness: 10}
"""


def test_doctor_exits_zero_when_nothing_fails(tmp_path: Path, loopback_in_norway: Any) -> None:
    config = _doctor_config(tmp_path, loopback_in_norway, 1, POLICY)
    result = CliRunner().invoke(app, ["doctor", "--config", str(config)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "sysctl.swappiness" in result.stdout
    # tmpfs state warns, and a warning alone does not fail the run.
    assert "overall: warn" in result.stdout


def test_doctor_exits_non_zero_on_a_failure_and_json_names_it(
    tmp_path: Path, loopback_in_norway: Any
) -> None:
    config = _doctor_config(tmp_path, loopback_in_norway, 60, POLICY)
    result = CliRunner().invoke(app, ["doctor", "--config", str(config), "--json"])
    assert result.exit_code == 1, result.output
    record = json.loads(result.stdout)
    assert record["type"] == "placement"
    assert record["outcome"] == "fail"
    assert record["policy_hash"].startswith("sha256:")
    failed = {c["name"]: c for c in record["checks"] if c["status"] == "fail"}
    assert set(failed) == {"sysctl.swappiness"}
    assert failed["sysctl.swappiness"]["facts"] == {"swappiness": 60, "limit": 10}


def test_doctor_with_missing_databases_fails_the_geo_check(tmp_path: Path) -> None:
    missing = type("Geo", (), {"country": tmp_path / "no.mmdb", "asn": tmp_path / "no2.mmdb"})
    config = _doctor_config(tmp_path, missing, 1, POLICY)
    result = CliRunner().invoke(app, ["doctor", "--config", str(config), "--json"])
    assert result.exit_code == 1
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["geo.databases"]["status"] == "fail"
    assert "does not exist" in checks["geo.databases"]["detail"]


def test_doctor_with_an_invalid_config_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "doctor.yaml"
    bad.write_text("placement: {swappiness_please: 1}\n")
    result = CliRunner().invoke(app, ["doctor", "--config", str(bad)])
    assert result.exit_code == 2
    assert "swappiness_please" in result.stderr


def test_geo_info_shows_build_date_and_age(tmp_path: Path, geo_writer: Any) -> None:
    geo = geo_writer({"127.0.0.0/8": "NO"}, build_epoch=1_767_225_600)  # 2026-01-01
    result = CliRunner().invoke(app, ["geo", "info", "--dir", str(geo.country.parent), "--json"])
    assert result.exit_code == 0, result.output
    databases = json.loads(result.stdout)["databases"]
    assert [db["built"] for db in databases] == ["2026-01-01T00:00:00+00:00"] * 2
    assert all(db["age_days"] > 0 for db in databases)


def test_the_shipped_example_doctor_config_is_valid() -> None:
    from policies.location import load_doctor_config
    from policies.location.owners import default_owners_path

    example = default_owners_path().parent / "doctor.example.yaml"
    config = load_doctor_config(example)
    assert config.policy is not None and config.policy.name == "norway-strict.yaml"
    assert config.placement.site_networks == {"10.20.0.0/16": "NO"}
    assert config.placement.processor is not None
    assert config.placement.processor.state_instances == 12
    assert config.placement.min_free_space == 20 * 1024**3


def test_geo_info_with_a_policy_exits_1_when_a_database_is_too_old(
    tmp_path: Path, geo_writer: Any
) -> None:
    import time

    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.replace("placement:", "geoip: {max_age_days: 35}\nplacement:"))
    old = geo_writer({"127.0.0.0/8": "NO"}, build_epoch=int(time.time()) - 90 * 86400)
    young = geo_writer({"127.0.0.0/8": "NO"})
    stale = CliRunner().invoke(
        app, ["geo", "info", "--dir", str(old.country.parent), "--policy", str(policy), "--json"]
    )
    fresh = CliRunner().invoke(
        app, ["geo", "info", "--dir", str(young.country.parent), "--policy", str(policy)]
    )
    assert stale.exit_code == 1
    assert [db["stale"] for db in json.loads(stale.stdout)["databases"]] == [True, True]
    assert "older than the policy allows" in stale.stderr
    assert fresh.exit_code == 0, fresh.output


def test_locate_with_a_policy_also_decides_egress(
    tmp_path: Path, loopback_in_sweden: Any, loopback_in_norway: Any
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    denied = CliRunner().invoke(
        app,
        ["locate", "127.0.0.1", "--json", "--policy", str(policy), *_geo_args(loopback_in_sweden)],
    )
    allowed = CliRunner().invoke(
        app,
        ["locate", "127.0.0.1", "--policy", str(policy), *_geo_args(loopback_in_norway)],
        terminal_width=200,
    )
    assert denied.exit_code == 0, denied.output
    answer = json.loads(denied.stdout)
    assert answer["locations"][0]["owner"] == "Amazon"
    assert answer["egress"]["outcome"] == "deny"
    assert answer["egress"]["rule_id"] == "jurisdiction.forbidden_provider_jurisdictions"
    assert allowed.exit_code == 0, allowed.output
    assert "egress: allow by rule jurisdiction.home" in allowed.stdout
