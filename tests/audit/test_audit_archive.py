"""Retention: sealed segments move to an archive with their final signed tree heads; the log
left behind still verifies (from a checkpoint whose every part is proven against a signed
root), the writer continues it, and the archive plus the log verify from record 0."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from audit import AuditLog, SharedMembers, SigningKey
from audit.archive import CHECKPOINT_FILE, archive_segments
from audit.segments import list_segments
from audit.verify import verify_log
from gateway.cli import app

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def write_days(
    log_dir: Path, key: SigningKey, days: int, start: datetime, rotate_to: SigningKey | None = None
) -> None:
    now = [start]
    # Every record names shared members: each segment defines them again, so the live
    # segments still verify and resolve once the older ones are archived.
    why = SharedMembers.of({"rule_ids": ["streams.traffic.fields.plate"]})
    with AuditLog.open(
        log_dir, key, clock=lambda: now[0], segment_max_bytes=1200, tree_head_ms=3_600_000
    ) as log:
        for i in range(days * 6):
            now[0] += timedelta(hours=4)
            log.append({"type": "decision", "outcome": "allow", "i": i, "shared": why})
            if rotate_to is not None and i == 7:
                log.rotate_key(rotate_to)


def test_archived_log_verifies_from_its_checkpoint_and_continues(tmp_path: Path) -> None:
    key, rotated = SigningKey.generate(), SigningKey.generate()
    log_dir, archive = tmp_path / "logs" / "gw-1", tmp_path / "archive"
    write_days(log_dir, key, 10, T0, rotate_to=rotated)
    before = verify_log(log_dir, [key.public_key])
    assert before.ok and before.segments > 6

    result = archive_segments(log_dir, archive, T0 + timedelta(days=5))
    assert result.segments and (archive / "gw-1" / result.segments[0]).exists()
    assert not (log_dir / result.segments[0]).exists()
    assert (log_dir / CHECKPOINT_FILE).exists()

    live = verify_log(log_dir, [key.public_key])
    assert live.ok, live.problem
    assert live.archived_records == result.records_archived > 0
    assert live.records == before.records
    assert live.latest_tree_head == before.latest_tree_head
    assert verify_log(log_dir, [rotated.public_key]).ok
    whole = verify_log(log_dir, [key.public_key], archive=archive / "gw-1")
    assert whole.ok and whole.archived_records == 0 and whole.records == before.records

    # The writer continues after the archived part, and a second archive run moves more.
    write_days(log_dir, rotated, 2, T0 + timedelta(days=11))
    assert verify_log(log_dir, [key.public_key]).ok
    second = archive_segments(log_dir, archive, T0 + timedelta(days=9))
    assert second.segments and second.records_archived > result.records_archived
    assert verify_log(log_dir, [key.public_key]).ok
    assert verify_log(log_dir, [key.public_key], archive=archive / "gw-1").ok
    code = (
        CliRunner()
        .invoke(app, ["audit", "verify", str(tmp_path / "logs"), "--archive", str(archive)])
        .exit_code
    )
    assert code == 0


def test_tampered_checkpoint_or_archive_is_detected(tmp_path: Path) -> None:
    key = SigningKey.generate()
    log_dir, archive = tmp_path / "gw-1", tmp_path / "archive"
    write_days(log_dir, key, 8, T0)
    archive_segments(log_dir, archive, T0 + timedelta(days=5))

    checkpoint = log_dir / CHECKPOINT_FILE
    original = checkpoint.read_bytes()
    document = orjson.loads(original)
    document["frontier"][0] = "00" * 32
    checkpoint.write_bytes(orjson.dumps(document))
    report = verify_log(log_dir, [key.public_key])
    assert not report.ok and report.problem is not None
    assert "frontier" in report.problem.message
    checkpoint.write_bytes(original)

    segment = list_segments(archive / "gw-1")[0][1]
    segment.write_bytes(segment.read_bytes().replace(b'"allow"', b'"deny!"', 1))
    assert verify_log(log_dir, [key.public_key]).ok  # the live part alone is intact
    assert not verify_log(log_dir, [key.public_key], archive=archive / "gw-1").ok


def test_archive_refuses_a_log_that_does_not_verify(tmp_path: Path) -> None:
    key = SigningKey.generate()
    log_dir = tmp_path / "gw-1"
    write_days(log_dir, key, 6, T0)
    segment = list_segments(log_dir)[1][1]
    segment.write_bytes(segment.read_bytes().replace(b'"allow"', b'"deny!"', 1))
    from audit import AuditError

    with pytest.raises(AuditError, match="does not verify"):
        archive_segments(log_dir, tmp_path / "archive", T0 + timedelta(days=5))
    assert len(list_segments(log_dir)) > 3  # nothing moved


def test_bundle_of_an_archived_log_verifies(tmp_path: Path) -> None:
    key = SigningKey.generate()
    log_dir = tmp_path / "logs" / "gw-1"
    write_days(log_dir, key, 8, T0)
    archive_segments(log_dir, tmp_path / "archive", T0 + timedelta(days=5))
    runner = CliRunner()
    out = tmp_path / "bundle"
    result = runner.invoke(
        app, ["audit", "export", str(tmp_path / "logs"), "--format", "bundle", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert (out / "logs" / "gw-1" / CHECKPOINT_FILE).exists()
    key.public_key.export(tmp_path / "public.pem")
    result = runner.invoke(
        app, ["audit", "verify", str(out / "logs"), "--public-key", str(tmp_path / "public.pem")]
    )
    assert result.exit_code == 0, result.output


def test_archive_interrupted_before_its_deletions_can_be_rerun(tmp_path: Path) -> None:
    import shutil

    key = SigningKey.generate()
    log_dir, archive = tmp_path / "gw-1", tmp_path / "archive"
    write_days(log_dir, key, 8, T0)
    moved = archive_segments(log_dir, archive, T0 + timedelta(days=5)).segments
    for name in moved:  # as if the run stopped after writing the checkpoint
        shutil.copyfile(archive / "gw-1" / name, log_dir / name)
    assert verify_log(log_dir, [key.public_key]).ok
    write_days(log_dir, key, 1, T0 + timedelta(days=9))  # the writer reopens it too
    again = archive_segments(log_dir, archive, T0 + timedelta(days=5))
    assert again.segments == moved
    assert not any((log_dir / name).exists() for name in moved)
    assert verify_log(log_dir, [key.public_key]).ok
    names = [s["name"] for s in orjson.loads((log_dir / CHECKPOINT_FILE).read_bytes())["segments"]]
    assert names == moved
