"""Crash safety: torn tails are cut back and recorded on open, damage elsewhere is refused, and
after kill -9 at random points every acknowledged append is present with no gap."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from audit import AuditLog, LogCorrupted, SigningKey
from audit.segments import list_segments
from audit.verify import verify_log

CHILD = Path(__file__).with_name("crash_child.py")
ROOT = Path(__file__).resolve().parents[2]


def read_records(log_dir: Path) -> list[dict[str, object]]:
    out = []
    for _, path in list_segments(log_dir):
        for line in path.read_bytes().splitlines():
            entry = orjson.loads(line)
            if entry["type"] != "tree_head":
                out.append(entry)
    return out


def last_segment(log_dir: Path) -> Path:
    return list_segments(log_dir)[-1][1]


def test_torn_tail_is_cut_back_and_recorded(log_dir: Path, signing_key: SigningKey) -> None:
    with AuditLog.open(log_dir, signing_key) as log:
        for i in range(5):
            log.append({"type": "decision", "i": i})
    segment = last_segment(log_dir)
    whole_size = segment.stat().st_size
    torn = b'{"i":5,"prev":"ab12","seq":6,"ts":"2026-11-25T06:'  # a write cut by a crash
    with open(segment, "ab") as out:
        out.write(torn)
    broken = verify_log(log_dir)
    assert not broken.ok and broken.problem is not None
    assert "torn tail" in broken.problem.message and broken.problem.offset == whole_size

    with AuditLog.open(log_dir, signing_key) as log:
        after = log.append({"type": "decision", "i": 6})
    recovery = [r for r in read_records(log_dir) if r["type"] == "recovery"]
    assert recovery == [
        {
            **recovery[0],
            "reason": "torn_tail",
            "segment": segment.name,
            "offset": whole_size,
            "bytes_discarded": len(torn),
            "records_before": 6,
        }
    ]
    assert after.seq == 7
    assert verify_log(log_dir, [signing_key.public_key]).ok


def test_unclean_shutdown_without_tear_is_recorded(log_dir: Path, signing_key: SigningKey) -> None:
    with AuditLog.open(log_dir, signing_key) as log:
        log.append({"type": "decision"})
    segment = last_segment(log_dir)
    lines = segment.read_bytes().splitlines(keepends=True)
    assert orjson.loads(lines[-1])["type"] == "tree_head"
    segment.write_bytes(b"".join(lines[:-1]))  # as if killed before the closing tree head
    report = verify_log(log_dir)
    assert report.ok and report.warnings  # whole records, just not yet signed
    with AuditLog.open(log_dir, signing_key):
        pass
    kinds = [(r["type"], r.get("reason")) for r in read_records(log_dir)]
    assert kinds[-1] == ("recovery", "unclean_shutdown")
    final = verify_log(log_dir, [signing_key.public_key])
    assert final.ok and not final.warnings


def test_damage_in_the_middle_is_refused_not_cut(log_dir: Path, signing_key: SigningKey) -> None:
    with AuditLog.open(log_dir, signing_key) as log:
        for i in range(5):
            log.append({"type": "decision", "i": i})
    segment = last_segment(log_dir)
    lines = segment.read_bytes().splitlines(keepends=True)
    lines[2] = b"garbage\n"
    segment.write_bytes(b"".join(lines))
    with pytest.raises(LogCorrupted) as caught:
        AuditLog.open(log_dir, signing_key)
    assert caught.value.segment == segment
    assert b"garbage" in segment.read_bytes()  # nothing was cut


def _run_and_kill(log_dir: Path, key_path: Path, rng: random.Random) -> set[int]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(log_dir), str(key_path)],
        stdout=subprocess.PIPE,
        env=env,
    )
    assert child.stdout is not None
    assert child.stdout.readline() == b"ready\n"
    time.sleep(rng.uniform(0.02, 0.4))
    child.send_signal(signal.SIGKILL)
    out, _ = child.communicate()
    assert child.returncode == -signal.SIGKILL
    return {int(line) for line in out.split()}


def test_kill9_loses_no_acknowledged_append_and_leaves_no_gap(
    tmp_path: Path, log_dir: Path
) -> None:
    key_path = tmp_path / "signing.pem"
    key = SigningKey.create(key_path)
    rng = random.Random(7)
    acknowledged: set[int] = set()
    cycles = 10
    torn_simulated = 0
    for cycle in range(cycles):
        acknowledged |= _run_and_kill(log_dir, key_path, rng)
        if cycle % 2 == 1:
            # A power loss can also leave half a write; kill -9 rarely does, so add one.
            with open(last_segment(log_dir), "ab") as out:
                out.write(b'{"outcome":"allow","prev":"' + b"7" * rng.randrange(1, 60))
            torn_simulated += 1
        with AuditLog.open(log_dir, key):
            pass  # recovery on open: cut the tail, record it, sign
        records = read_records(log_dir)
        seqs = [r["seq"] for r in records]
        assert seqs == list(range(len(seqs))), "a gap or a duplicate in the sequence"
        missing = acknowledged - set(seqs)
        assert not missing, f"acknowledged appends lost after kill -9: {sorted(missing)[:10]}"
        report = verify_log(log_dir, [key.public_key])
        assert report.ok, str(report.problem)
    recoveries = [r for r in read_records(log_dir) if r["type"] == "recovery"]
    torn = [r for r in recoveries if r["reason"] == "torn_tail"]
    print(
        f"\nkill -9 cycles: {cycles}, acknowledged appends: {len(acknowledged)}, all present; "
        f"recoveries recorded: {len(recoveries)} ({len(torn)} torn tails cut, "
        f"{torn_simulated} of them simulated)"
    )
    assert len(acknowledged) > cycles
    assert len(torn) >= torn_simulated


def test_verify_of_a_live_log_tolerates_the_write_in_progress(
    log_dir: Path, signing_key: SigningKey
) -> None:
    log = AuditLog.open(log_dir, signing_key)
    log.append({"type": "decision"})
    with open(last_segment(log_dir), "ab") as out:
        out.write(b'{"outcome":"al')  # what a reader can see in the middle of a write
    live = verify_log(log_dir)
    assert live.ok and any("unfinished write" in w for w in live.warnings)
    log._release()  # the writer dies without closing: the same bytes are now a torn tail
    dead = verify_log(log_dir)
    assert not dead.ok and dead.problem is not None and "torn tail" in dead.problem.message
