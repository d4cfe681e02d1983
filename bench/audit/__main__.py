"""Audit-log benchmark: durable appends per second against the floor of raw `write` + `fsync`
with the same batch size on the same disk, and verify throughput against the floor of reading
and hashing the same bytes. Prints Markdown tables and writes bench/results/audit.md.

    .venv/bin/python -m bench.audit [--seconds 4] [--dir DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from audit import AuditLog, SigningKey
from audit.canonical import canonical_json
from audit.segments import list_segments
from audit.verify import verify_log

RESULTS = Path(__file__).resolve().parent.parent / "results" / "audit.md"


def decision(i: int) -> dict[str, object]:
    """A decision record of the size the gateway writes (about 500 bytes)."""
    return {
        "type": "decision", "outcome": "allow", "mode": "enforce", "stream": "norway-traffic",
        "destination": "kafka://kafka-1.osl.example.no:9092/norway-traffic.tagged",
        "fields": [
            {"path": "plate", "pii_class": "vehicle_plate", "action": "pseudonymise",
             "rule_id": "traffic.plate"},
            {"path": "driver.fnr", "pii_class": "national_id", "action": "drop",
             "rule_id": "traffic.no-ids"},
        ],
        "rule_ids": ["traffic.plate", "traffic.no-ids"], "reasons": [],
        "policy_hash": "sha256:" + "3f" * 32, "event_id": f"evt-{i:012d}",
        "subjects": ["ps1:k0a1b2c3d4e5f:Xq3v9Jm2Lr8Tb5Nw1Kc7Hd4Fs6Gp0Ye2Ua8Zi3Oo5Qe"],
    }


def timed(seconds: float, step: Callable[[], int]) -> tuple[int, float]:
    """Run `step` (returns records done) until `seconds` pass; (records, elapsed)."""
    done = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        done += step()
    return done, elapsed


class RawFloor:
    """`write` + `fsync` of `batch` pre-encoded records at a time (no JSON, no hashing, no
    signing): the disk's own limit for that batch size."""

    def __init__(self, directory: Path, batch: int) -> None:
        line = canonical_json({**decision(0), "seq": 0, "ts": "2026-11-25T06:00:00.000000Z",
                               "prev": "0" * 64}) + b"\n"
        self.batch = batch
        self.payload = line * batch
        self.path = directory / f"raw-{batch}.bin"
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def run(self, seconds: float) -> tuple[int, float]:
        def step() -> int:
            os.write(self.fd, self.payload)
            os.fsync(self.fd)
            return self.batch

        return timed(seconds, step)

    def close(self) -> None:
        os.close(self.fd)
        self.path.unlink()


def append_many_vs_floor(directory: Path, key: SigningKey, batch: int, seconds: float,
                         rounds: int) -> tuple[float, float, float]:
    """(floor records/s, AuditLog records/s, records per fsync) for `append_many(batch)` from
    one thread, measured in alternating rounds so that both see the same disk weather."""
    target = directory / f"many-{batch}"
    log = AuditLog.open(target, key, batch_size=batch)
    floor = RawFloor(directory, batch)
    # Built once, as the floor's bytes are: both sides are timed from ready data to durable.
    records = [decision(i) for i in range(batch)]

    def step() -> int:
        log.append_many(records)
        return batch

    totals = [0, 0.0, 0, 0.0]
    commits_before = log.commits
    for _ in range(rounds):
        n, t = floor.run(seconds / rounds)
        totals[0] += n
        totals[1] += t
        n, t = timed(seconds / rounds, step)
        totals[2] += n
        totals[3] += t
    commits = log.commits - commits_before
    floor.close()
    log.close()
    shutil.rmtree(target)
    return totals[0] / totals[1], totals[2] / totals[3], totals[2] / max(commits, 1)


def threads_vs_floor(directory: Path, key: SigningKey, threads: int, batch: int,
                     seconds: float, rounds: int) -> tuple[float, float, float]:
    """(floor records/s at the achieved batch size, AuditLog records/s, records per fsync)
    for `append` from `threads` threads, each waiting for durability before its next append
    (the gateway's pattern); rounds alternate with the floor."""
    target = directory / f"threads-{threads}"
    log = AuditLog.open(target, key, batch_size=batch)
    log_records, log_time, floor_records, floor_time, commits = 0, 0.0, 0, 0.0, 0
    for _ in range(rounds):
        stop = threading.Event()
        counts = [0] * threads

        def worker(n: int, stop: threading.Event = stop, counts: list[int] = counts) -> None:
            record = decision(n)
            i = 0
            while not stop.is_set():
                log.append(record)
                i += 1
            counts[n] = i

        workers = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
        commits_before = log.commits
        start = time.perf_counter()
        for w in workers:
            w.start()
        time.sleep(seconds / rounds)
        stop.set()
        for w in workers:
            w.join()
        log_time += time.perf_counter() - start
        log_records += sum(counts)
        commits += log.commits - commits_before
        achieved = max(1, round(sum(counts) / max(log.commits - commits_before, 1)))
        floor = RawFloor(directory, achieved)
        n, t = floor.run(seconds / rounds)
        floor.close()
        floor_records += n
        floor_time += t
    log.close()
    shutil.rmtree(target)
    return floor_records / floor_time, log_records / log_time, log_records / max(commits, 1)


def write_log_for_verify(directory: Path, key: SigningKey, records: int) -> Path:
    target = directory / "verify"
    with AuditLog.open(target, key, batch_size=1000, segment_max_bytes=16 * 1024 * 1024) as log:
        for start in range(0, records, 1000):
            log.append_many([decision(i) for i in range(start, min(start + 1000, records))])
    return target


def hash_floor(target: Path) -> float:
    """Records/s of reading the segments and SHA-256 of every line: the least any verifier
    must do (no JSON, no chain, no Merkle nodes, no signatures)."""
    start = time.perf_counter()
    lines = 0
    for _, path in list_segments(target):
        for line in path.read_bytes().splitlines():
            hashlib.sha256(b"\x00" + line).digest()
            lines += 1
    return lines / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="per measurement")
    parser.add_argument("--dir", type=Path, default=None, help="directory on the disk to test")
    parser.add_argument("--rounds", type=int, default=4,
                        help="alternations of floor and AuditLog per measurement")
    parser.add_argument("--verify-records", type=int, default=200_000)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-audit-", dir=args.dir))
    key = SigningKey.generate()
    lines: list[str] = [
        "# Audit log benchmark",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; disk: the file system of `{base}`; "
        f"{args.seconds:.0f} s per measurement in {args.rounds} rounds alternating with its floor "
        "(the disk is shared and its fsync latency drifts). Records are ~700-byte decision "
        "records as written.",
        "",
        "## Durable appends vs raw write + fsync, same batch size",
        "",
        "Floor: one `write` + one `fsync` of `batch` pre-encoded records, nothing else. "
        "AuditLog: canonical JSON, SHA-256 leaf hash, chain, Merkle frontier, a signed tree "
        "head every 1000 records, and the appenders woken after the fsync.",
        "",
        "| workload | batch (records per fsync) | floor records/s | AuditLog records/s | ratio |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    try:
        for batch in (1, 16, 256):
            floor, rate, per_commit = append_many_vs_floor(base, key, batch, args.seconds,
                                                           args.rounds)
            lines.append(f"| append_many, 1 thread | {per_commit:.0f} | {floor:,.0f} | "
                         f"{rate:,.0f} | **{rate / floor:.2f}×** |")
            print(lines[-1], file=sys.stderr, flush=True)
        for threads in (1, 8, 64):
            floor, rate, per_commit = threads_vs_floor(base, key, threads, 256, args.seconds,
                                                       args.rounds)
            lines.append(f"| append, {threads} threads | {per_commit:.1f} (achieved) | "
                         f"{floor:,.0f} | {rate:,.0f} | **{rate / floor:.2f}×** |")
            print(lines[-1], file=sys.stderr, flush=True)
        target = write_log_for_verify(base, key, args.verify_records)
        floor_rate = hash_floor(target)
        start = time.perf_counter()
        report = verify_log(target, [key.public_key])
        verify_rate = report.records / (time.perf_counter() - start)
        assert report.ok, report.problem
        lines += [
            "",
            "## Verify throughput",
            "",
            "Floor: read the segments and SHA-256 every line. Verify: also parse every line, "
            "check canonical form, sequence and chain, fold the Merkle tree, recompute every "
            "tree head's root and check its Ed25519 signature.",
            "",
            "| records | floor records/s | verify records/s | ratio |",
            "| ---: | ---: | ---: | ---: |",
            f"| {report.records:,} | {floor_rate:,.0f} | {verify_rate:,.0f} | "
            f"**{verify_rate / floor_rate:.2f}×** |",
        ]
    finally:
        shutil.rmtree(base, ignore_errors=True)
    text = "\n".join(lines) + "\n"
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
