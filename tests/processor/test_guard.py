"""Every sink destination passes the policy's egress rules at start and is audited."""

from __future__ import annotations

import re
import time
from pathlib import Path

import orjson
import pytest

from audit import AuditLog, SigningKey
from policies import Policy, load_policy_text
from policies.location import Locator, MmdbWriter, UInt32
from processor import (
    EgressDenied,
    FileSideOutput,
    Job,
    JsonlSink,
    LocalLog,
    LocalLogSource,
    Max,
    PolicyGuard,
    PostgresSink,
    ProcessorConfig,
    TumblingWindow,
    run_job,
)

POLICY = """\
metadata: {name: processor-test, version: "1", owner: dpo@example.no}
mode: MODE
jurisdiction:
  home: "NO"
  placement_countries: ["NO"]
  adequate_destinations: [SE, DK, DE]
  forbidden_provider_jurisdictions: [US, CN]
geoip: {max_age_days: 35}
streams:
  s:
    fields:
      a: {pii: none, action: allow}
egress:
  default: deny
  rules: []
placement:
  max_swappiness: 100
  max_broker_rtt_ms: 50
  state: {nvme: preferred}
"""


def locator_for(tmp: Path, country: str, asn: tuple[int, str]) -> Locator:
    epoch = int(time.time())
    c = MmdbWriter(database_type="test-country", build_epoch=epoch)
    c.insert_network("127.0.0.0/8", {"country_code": country})
    a = MmdbWriter(database_type="test-ASN", build_epoch=epoch)
    a.insert_network(
        "127.0.0.0/8",
        {"autonomous_system_number": UInt32(asn[0]), "autonomous_system_organization": asn[1]},
    )
    return Locator.open(c.write(tmp / "country.mmdb"), a.write(tmp / "asn.mmdb"))


def policy(mode: str = "enforce") -> Policy:
    return load_policy_text(POLICY.replace("MODE", mode))


def audit_records(directory: Path) -> list[dict[str, object]]:
    records = []
    for segment in sorted(directory.rglob("*")):
        if segment.is_file():
            for line in segment.read_bytes().splitlines():
                try:
                    records.append(orjson.loads(line))
                except orjson.JSONDecodeError:
                    continue
    return [r for r in records if isinstance(r, dict) and r.get("component") == "processor"]


def job_with(tmp: Path, sink: object) -> Job:
    log = LocalLog.open(tmp / "log")
    log.append("in", orjson.dumps({"event_time": 1_764_000_000_000, "region": "oslo", "speed": 80}))
    return (
        Job("guarded")
        .source(LocalLogSource(log, "in"))
        .watermarks(out_of_orderness_ms=0)
        .key_by("region")
        .window(TumblingWindow(60_000))
        .aggregate(Max("speed"))
        .sink(sink)  # type: ignore[arg-type]
        .side_output(FileSideOutput(tmp / "late.jsonl"))
    )


def test_a_sink_in_a_us_cloud_region_is_refused_before_any_event_is_read(tmp_path: Path) -> None:
    locator = locator_for(tmp_path, "SE", (16509, "Amazon.com, Inc."))
    audit_dir = tmp_path / "audit"
    with AuditLog.open(audit_dir, SigningKey.generate()) as audit_log:
        guard = PolicyGuard(policy(), locator, audit_log)
        sink = PostgresSink("postgresql://fjordgate@127.0.0.1:5999/results", "max_speed")
        with pytest.raises(
            EgressDenied, match=re.escape("sink destination postgresql://127.0.0.1:5999")
        ):
            run_job(job_with(tmp_path, sink), ProcessorConfig(localdir=tmp_path / "s"), guard=guard)
    egress = [r for r in audit_records(audit_dir) if r["type"] == "egress"]
    assert [(r["role"], r["outcome"]) for r in egress] == [("sink", "deny")]
    assert egress[0]["policy_hash"] == policy().content_hash
    assert not (tmp_path / "s").exists() or not any((tmp_path / "s").rglob("chk-*"))


def test_observe_mode_records_the_denial_and_runs(tmp_path: Path) -> None:
    locator = locator_for(tmp_path, "SE", (16509, "Amazon.com, Inc."))
    audit_dir = tmp_path / "audit"
    with AuditLog.open(audit_dir, SigningKey.generate()) as audit_log:
        guard = PolicyGuard(policy("observe"), locator, audit_log)
        sink = JsonlSink(tmp_path / "out.jsonl")
        metrics = run_job(
            job_with(tmp_path, sink), ProcessorConfig(localdir=tmp_path / "s"), guard=guard,
            stop_at_end=True,
        )  # fmt: skip
    assert metrics.results_emitted == 1
    kinds = sorted((r["type"], r.get("role", "")) for r in audit_records(audit_dir))
    assert kinds == [("egress", "side-output"), ("egress", "sink"), ("placement", "")]
    (placement,) = [r for r in audit_records(audit_dir) if r["type"] == "placement"]
    assert placement["mode"] == "observe"
    assert placement["outcome"] in ("pass", "warn", "fail")
    assert [c["name"] for c in placement["checks"]] == ["state.filesystem"]  # type: ignore[union-attr]


def test_a_norwegian_sink_is_allowed_and_audited(tmp_path: Path) -> None:
    locator = locator_for(tmp_path, "NO", (2119, "Telenor Norge AS"))
    guard_log = tmp_path / "audit"
    with AuditLog.open(guard_log, SigningKey.generate()) as audit_log:
        guard = PolicyGuard(policy(), locator, audit_log)
        guard.check_destination("postgresql://127.0.0.1:5432/results", job="j", role="sink")
    (record,) = audit_records(guard_log)
    assert (record["type"], record["outcome"], record["destination"]) == (
        "egress", "allow", "postgresql://127.0.0.1:5432/results",
    )  # fmt: skip
