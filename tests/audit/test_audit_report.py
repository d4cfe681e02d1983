"""`audit export`: the report's totals equal a brute-force count of the records, the HTML is one
self-contained file that a real browser renders, the bundle verifies on its own, and a
tampered log is reported as failed at the top."""

from __future__ import annotations

import csv
import hashlib
import shutil
import struct
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from audit import SigningKey
from audit.segments import instance_logs, list_segments
from audit.verify import verify_log
from gateway.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def sample(
    tmp_path_factory: pytest.TempPathFactory, sample_log_writer: Callable[..., None]
) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("report")
    key = SigningKey.generate()
    sample_log_writer(root / "logs", key, decisions=900)
    key.public_key.export(root / "public.pem")
    return root / "logs", root / "public.pem"


def all_records(logs: Path) -> list[dict[str, object]]:
    out = []
    for log in instance_logs(logs):
        for _, path in list_segments(log):
            out.extend(
                r
                for r in map(orjson.loads, path.read_bytes().splitlines())
                if r["type"] != "tree_head"
            )
    return out


def resolved_records(logs: Path) -> list[dict[str, object]]:
    """Every record with the shared members it names in place of the reference, resolved
    by hand: the definition earlier in the same segment whose ref is the name."""
    out = []
    for log in instance_logs(logs):
        for _, path in list_segments(log):
            defined: dict[str, dict[str, object]] = {}
            for r in map(orjson.loads, path.read_bytes().splitlines()):
                if r["type"] == "shared":
                    defined[r["ref"]] = r["members"]
                elif r["type"] != "tree_head":
                    out.append(
                        {
                            **{k: v for k, v in r.items() if k != "shared"},
                            **defined.get(r.get("shared"), {}),
                        }
                    )
    return out


def export(logs: Path, fmt: str, out: Path, *extra: str) -> str:
    result = runner.invoke(
        app, ["audit", "export", str(logs), "--format", fmt, "-o", str(out), *extra]
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_json_totals_equal_a_brute_force_count(sample: tuple[Path, Path], tmp_path: Path) -> None:
    logs, public = sample
    export(logs, "json", tmp_path / "r.json", "--public-key", str(public))
    report = orjson.loads((tmp_path / "r.json").read_bytes())
    records = all_records(logs)
    decisions = [r for r in records if r["type"] == "decision"]
    assert report["verification"]["intact"] and report["verification"]["pinned_key"]
    assert report["records_in_period"] == len(records)
    assert report["decisions_by_outcome"] == dict(Counter(str(r["outcome"]) for r in decisions))
    by_stream = Counter((str(r["stream"]), str(r["outcome"])) for r in decisions)
    assert {
        (s, o): n for s, c in report["decisions_by_stream"].items() for o, n in c.items()
    } == dict(by_stream)
    denied = [r for r in records if r["type"] == "egress" and r["outcome"] == "deny"]
    assert report["denied_egress"]["total"] == len(denied) > 0
    assert report["policies_loaded"]["total"] == 2 * len(instance_logs(logs))
    assert [p["policy_hash"] for p in report["policies_loaded"]["rows"]][:2] == [
        "sha256:" + "3f" * 32,
        "sha256:" + "a7" * 32,
    ]
    assert report["placement_attestations"]["total"] == len(instance_logs(logs))
    assert report["key_rotations"]["total"] == len(instance_logs(logs))
    # By rule: each decision's rules, read from the shared members it names where it
    # names them (the sample writes half of them so, as the gateway does).
    by_rule: Counter[tuple[str, str]] = Counter()
    for r in resolved_records(logs):
        if r["type"] == "decision":
            rules = set(r["rule_ids"]) | {f["rule_id"] for f in r["fields"]}  # type: ignore[attr-defined]
            by_rule.update((rule, str(r["outcome"])) for rule in rules)
        elif r["type"] == "egress" and r.get("rule_id"):
            by_rule[str(r["rule_id"]), str(r["outcome"])] += 1
    assert sum(1 for r in decisions if "shared" in r) == len(decisions) // 2
    assert {(k, o): n for k, c in report["by_rule"].items() for o, n in c.items()} == dict(by_rule)
    buckets = report["decisions_over_time"]["buckets"]
    assert sum(sum(v for k, v in b.items() if k != "start") for b in buckets) == len(decisions)
    distinct = {(r["stream"], r["event_id"]) for r in decisions if "event_id" in r}
    with_ids = [r for r in decisions if "event_id" in r]
    assert report["repeated_decisions"] == len(with_ids) - len(distinct)


def test_a_decision_repeated_for_one_event_is_counted_as_repeated(tmp_path: Path) -> None:
    from audit import AuditLog

    key = SigningKey.generate()
    decision = {"type": "decision", "outcome": "allow", "stream": "s"}
    with AuditLog.open(tmp_path / "logs" / "gw", key) as log:
        # e-1 decided, its commit failed, its retry decided again; e-1 in another stream.
        log.append_many([{**decision, "event_id": "e-1"}, {**decision, "event_id": "e-2"}])
        log.append({**decision, "event_id": "e-1"})
        log.append({**decision, "stream": "t", "event_id": "e-1"})
    export(tmp_path / "logs", "json", tmp_path / "r.json")
    report = orjson.loads((tmp_path / "r.json").read_bytes())
    assert report["decisions_by_outcome"] == {"allow": 4}
    assert report["repeated_decisions"] == 1


def test_period_filter_counts_only_records_inside(
    sample: tuple[Path, Path], tmp_path: Path
) -> None:
    logs, _ = sample
    start, end = "2026-11-24T08:00:00Z", "2026-11-24T10:00:00Z"
    export(logs, "json", tmp_path / "r.json", "--from", start, "--to", end)
    report = orjson.loads((tmp_path / "r.json").read_bytes())
    inside = [
        r
        for r in all_records(logs)
        if "2026-11-24T08:00:00" <= str(r["ts"]) < "2026-11-24T10:00:00"
    ]
    assert 0 < report["records_in_period"] == len(inside) < len(all_records(logs))


def test_csv_has_the_same_totals(sample: tuple[Path, Path], tmp_path: Path) -> None:
    logs, _ = sample
    export(logs, "csv", tmp_path / "r.csv")
    rows = list(csv.DictReader((tmp_path / "r.csv").open(encoding="utf-8")))
    decisions = Counter(str(r["outcome"]) for r in all_records(logs) if r["type"] == "decision")
    assert {r["outcome"]: int(r["count"]) for r in rows if r["section"] == "decisions"} == dict(
        decisions
    )
    assert rows[1]["section"] == "verification" and rows[1]["outcome"] == "intact"
    assert [int(r["count"]) for r in rows if r["section"] == "repeated_decisions"] == [0]


def test_bundle_verifies_independently(sample: tuple[Path, Path], tmp_path: Path) -> None:
    logs, public = sample
    export(logs, "bundle", tmp_path / "bundle")
    manifest = orjson.loads((tmp_path / "bundle" / "manifest.json").read_bytes())
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((tmp_path / "bundle" / name).read_bytes()).hexdigest() == digest
    keys = list((tmp_path / "bundle" / "public-keys").glob("*.pem"))
    assert keys and keys[0].read_bytes() == public.read_bytes()
    result = runner.invoke(
        app, ["audit", "verify", str(tmp_path / "bundle" / "logs"), "--public-key", str(public)]
    )
    assert result.exit_code == 0, result.output
    assert result.output.count("OK ") == len(instance_logs(logs))


def test_bundle_as_tarball(sample: tuple[Path, Path], tmp_path: Path) -> None:
    logs, _ = sample
    export(logs, "bundle", tmp_path / "audit-bundle.tar.gz")
    import tarfile

    with tarfile.open(tmp_path / "audit-bundle.tar.gz") as tar:
        names = tar.getnames()
    assert "audit-bundle/manifest.json" in names
    assert any(n.endswith("segment-00000001.jsonl") for n in names)


def test_html_is_self_contained_and_shows_status_first(
    sample: tuple[Path, Path], tmp_path: Path
) -> None:
    logs, public = sample
    export(logs, "html", tmp_path / "r.html", "--public-key", str(public))
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    for external in ("<script", "<link", "<img", "url(", "src=", "@import"):
        assert external not in page
    assert page.index("Verified intact") < page.index("Decisions over time")
    assert page.count("<svg") >= 2
    for heading in (
        "Denied egress attempts",
        "Placement checks",
        "Policies loaded",
        "Key rotations",
        "By stream",
        "By rule",
        "By destination",
    ):
        assert heading in page


def test_tampered_log_is_reported_failed_at_the_top(
    sample: tuple[Path, Path], tmp_path: Path
) -> None:
    logs, public = sample
    copy = tmp_path / "logs"
    shutil.copytree(logs, copy)
    segment = list_segments(instance_logs(copy)[0])[0][1]
    segment.write_bytes(segment.read_bytes().replace(b'"outcome":"deny"', b'"outcome":"allow"', 1))
    result = runner.invoke(
        app,
        [
            "audit",
            "export",
            str(copy),
            "--format",
            "html",
            "-o",
            str(tmp_path / "r.html"),
            "--public-key",
            str(public),
        ],
    )
    assert result.exit_code == 1
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "Verification FAILED" in page and "Verified intact" not in page
    assert not verify_log(instance_logs(copy)[0]).ok


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_html_report_renders_in_headless_chromium(
    sample: tuple[Path, Path], tmp_path: Path
) -> None:
    # Debian's chromium is installed by the test command (deploy/dev/apt-packages.txt);
    # without it this test fails, it is never skipped.
    assert shutil.which("chromium"), "chromium is missing: apt-get install chromium"
    logs, public = sample
    export(logs, "html", tmp_path / "r.html", "--public-key", str(public))
    shot = tmp_path / "report.png"
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium'}",
        "--hide-scrollbars",
    ]
    subprocess.run(
        [
            "chromium",
            *flags,
            "--window-size=1200,1800",
            f"--screenshot={shot}",
            (tmp_path / "r.html").as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert png_size(shot) == (1200, 1800)
    # A blank or unstyled page compresses to a few kilobytes; the charts and tables do not.
    assert shot.stat().st_size > 60_000
    dom = subprocess.run(
        ["chromium", *flags, "--dump-dom", (tmp_path / "r.html").as_uri()],
        check=True,
        capture_output=True,
        timeout=120,
        text=True,
    ).stdout
    assert "Verified intact" in dom and "<svg" in dom
