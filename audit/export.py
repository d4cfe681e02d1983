"""Writing the audit report in each export format: HTML for people, JSON and CSV for machines,
and a bundle (segments with their tree heads, public keys, manifest) for independent checking."""

from __future__ import annotations

import csv
import hashlib
import io
import shutil
import tarfile
import tempfile
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson

from audit.archive import CHECKPOINT_FILE, checkpoint_path
from audit.keys import PublicKey
from audit.log import SIGNING_KEY_ROTATION
from audit.report import AuditReport, EventList
from audit.report_html import render_html
from audit.segments import instance_logs, list_segments

FORMATS = ("html", "json", "csv", "bundle")


def report_document(report: AuditReport) -> dict[str, Any]:
    """The report as plain JSON-able data."""

    def events(items: EventList) -> dict[str, Any]:
        return {"total": items.total, "rows": items.rows}

    def nested(data: dict[str, Counter[str]]) -> dict[str, dict[str, int]]:
        return {key: dict(counts) for key, counts in sorted(data.items())}

    step, rows = report.timeline()
    return {
        "generated": report.generated,
        "period": {
            "from": report.period_from,
            "to": report.period_to,
            "first_record": report.first_ts,
            "last_record": report.last_ts,
        },
        "verification": {
            "intact": report.intact,
            "pinned_key": report.pinned,
            "instances": [asdict(i) for i in report.instances],
        },
        "records_in_period": report.records_in_period,
        "records_by_type": dict(report.by_type),
        "decisions_by_outcome": dict(report.decisions),
        "repeated_decisions": report.repeated_decisions,
        "decisions_by_stream": nested(report.by_stream),
        "by_rule": nested(report.by_rule),
        "by_destination": nested(report.by_destination),
        "egress_by_outcome": dict(report.egress),
        "denied_egress": events(report.denied_egress),
        "placement_attestations": events(report.placements),
        "policies_loaded": events(report.policies),
        "policies_rejected": events(report.policy_rejections),
        "key_rotations": events(report.key_rotations),
        "recoveries": events(report.recoveries),
        "decisions_over_time": {
            "bucket_seconds": step,
            "buckets": [{"start": start, **dict(counts)} for start, counts in rows],
        },
    }


def write_json(report: AuditReport, path: Path) -> None:
    path.write_bytes(orjson.dumps(report_document(report), option=orjson.OPT_INDENT_2) + b"\n")


CSV_COLUMNS = ("section", "key", "outcome", "count", "ts", "instance", "seq", "detail")


def write_csv(report: AuditReport, path: Path) -> None:
    """Long format, one row per total or event: section,key,outcome,count,ts,instance,seq,detail."""
    buffer = io.StringIO()
    out = csv.writer(buffer, lineterminator="\n")
    out.writerow(CSV_COLUMNS)
    status = "intact" if report.intact else "FAILED"
    out.writerow(
        [
            "verification",
            "all instances",
            status,
            report.records_in_period,
            "",
            "",
            "",
            "pinned key" if report.pinned else "key from the log",
        ]
    )
    for instance in report.instances:
        out.writerow(
            [
                "verification",
                instance.name,
                "intact" if instance.intact else "FAILED",
                instance.records,
                instance.latest_tree_head_time or "",
                instance.name,
                "",
                instance.problem or instance.latest_root or "",
            ]
        )
    for outcome, count in sorted(report.decisions.items()):
        out.writerow(["decisions", "all", outcome, count, "", "", "", ""])
    out.writerow(["repeated_decisions", "all", "", report.repeated_decisions, "", "", "", ""])
    for section, data in (
        ("stream", report.by_stream),
        ("rule", report.by_rule),
        ("destination", report.by_destination),
    ):
        for key, counts in sorted(data.items()):
            for outcome, count in sorted(counts.items()):
                out.writerow([section, key, outcome, count, "", "", "", ""])
    for kind, count in sorted(report.by_type.items()):
        out.writerow(["record_type", kind, "", count, "", "", "", ""])
    _step, rows = report.timeline()
    for start, counts in rows:
        for outcome, count in sorted(counts.items()):
            out.writerow(["timeline", start, outcome, count, start, "", "", ""])
    lists = (
        ("denied_egress", report.denied_egress, "destination", ("rule_id", "reasons")),
        ("placement", report.placements, "component", ("outcome", "not_passed", "policy_hash")),
        ("policy_loaded", report.policies, "policy_hash", ("name", "version", "mode")),
        ("policy_rejected", report.policy_rejections, "path", ("kept_policy_hash", "issues")),
        (
            "key_rotation",
            report.key_rotations,
            "key",
            ("action", "key_id", "old_key_id", "new_key_id"),
        ),
        ("recovery", report.recoveries, "reason", ("segment", "offset", "bytes_discarded")),
    )
    for section, items, key, details in lists:
        for row in items.rows:
            detail = "; ".join(f"{d}={row.get(d)}" for d in details)
            out.writerow(
                [
                    section,
                    row.get(key, ""),
                    row.get("outcome", ""),
                    1,
                    row["ts"],
                    row["instance"],
                    row["seq"],
                    detail,
                ]
            )
    path.write_text(buffer.getvalue(), encoding="utf-8")


def write_html(report: AuditReport, path: Path) -> None:
    path.write_text(render_html(report), encoding="utf-8")


BUNDLE_README = """fjordgate audit bundle
=====================

logs/<instance>/segment-*.jsonl  the segments exactly as written: records and signed tree heads
public-keys/<key id>.pem          every signing key the logs name (Ed25519, SubjectPublicKeyInfo)
manifest.json                     SHA-256 of every file, each log's latest signed tree head, and
                                  the verification result at export time

Check it with our tool:   fjordgate audit verify logs --public-key <the operator's key>.pem
or with your own verifier written from the format document (docs/audit-format.md): records are
canonical JSON lines hashed as RFC 6962 leaves, chained by `prev`, and signed tree heads carry
Ed25519 signatures over their canonical JSON without the `signature` field.

Pin the operator's public key from a channel other than this bundle: the keys in public-keys/
let you check the signatures, but only a key you obtained independently proves who signed.
"""


def write_bundle(report: AuditReport, directory: Path, path: Path) -> None:
    """Copy every instance's segments, the public keys and a manifest to `path` (a directory,
    or a .tar.gz when the name ends so)."""
    archive = path.name.endswith((".tar.gz", ".tgz"))
    staging = Path(tempfile.mkdtemp(prefix="audit-bundle-")) if archive else path
    try:
        staging.mkdir(parents=True, exist_ok=True)
        manifest: dict[str, Any] = {
            "format": "fjordgate-audit-bundle/1",
            "generated": report.generated,
            "verification": {"intact": report.intact, "pinned_key": report.pinned},
            "logs": [],
            "files": {},
        }
        keys_dir = staging / "public-keys"
        keys_dir.mkdir(exist_ok=True)
        for log, status in zip(instance_logs(directory), report.instances, strict=True):
            target = staging / "logs" / status.name
            target.mkdir(parents=True, exist_ok=True)
            for _, segment in list_segments(log):
                shutil.copyfile(segment, target / segment.name)
            if checkpoint_path(log).exists():  # segments archived earlier: verify from it
                shutil.copyfile(checkpoint_path(log), target / CHECKPOINT_FILE)
            manifest["logs"].append(
                {
                    "instance": status.name,
                    "log_id": status.log_id,
                    "records": status.records,
                    "latest_tree_size": status.latest_tree_size,
                    "latest_root": status.latest_root,
                    "intact_at_export": status.intact,
                }
            )
            for key_id, raw in _log_keys(log):
                key = PublicKey.from_base64(raw)
                key.export(keys_dir / f"{key_id.replace(':', '-')}.pem")
        (staging / "README.txt").write_text(BUNDLE_README, encoding="utf-8")
        for file in sorted(p for p in staging.rglob("*") if p.is_file()):
            relative = file.relative_to(staging).as_posix()
            manifest["files"][relative] = hashlib.sha256(file.read_bytes()).hexdigest()
        (staging / "manifest.json").write_bytes(
            orjson.dumps(manifest, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
        )
        if archive:
            with tarfile.open(path, "w:gz") as tar:
                tar.add(staging, arcname=path.name.split(".")[0] or "audit-bundle")
    finally:
        if archive:
            shutil.rmtree(staging, ignore_errors=True)


def _log_keys(log: Path) -> list[tuple[str, str]]:
    """(key id, base64 public key) of every signing key a log announces."""
    keys: list[tuple[str, str]] = []
    for _, segment in list_segments(log):
        for line in segment.read_bytes().splitlines():
            if b'"log_created"' not in line and b'"signing_key_rotation"' not in line:
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if record.get("type") == "log_created":
                keys.append((str(record["key_id"]), str(record["public_key"])))
            elif record.get("type") == SIGNING_KEY_ROTATION:
                keys.append((str(record["new_key_id"]), str(record["new_public_key"])))
    return keys
