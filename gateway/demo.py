"""`fjordgate demo`: the whole path in one process, with no external service.

The HTTP gateway, the processor's durable local log in place of Kafka, the
processor running the seed job (maximum speed per region per one-minute
event-time window, 5 s out-of-orderness) into SQLite, the audit log, the
shipped norway-strict policy, and a generator posting synthetic
`norway-traffic` events over HTTP. Everything it writes stays in one run
directory, whose paths it prints at the end.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import structlog

import policies
from audit import AuditLog, SigningKey
from gateway.auth import ApiKey, hash_api_key, new_api_key
from gateway.pii import Keyring
from gateway.publish import LocalLogPublisher
from gateway.server import ServerThread
from gateway.service import Gateway
from gateway.synthetic import TrafficGenerator
from processor import Job as ProcessorJob
from processor import (
    JobRunner,
    LocalLog,
    LocalLogSource,
    Max,
    ProcessorConfig,
    SqliteSink,
    TumblingWindow,
)
from processor.errors import EgressDenied

log = structlog.get_logger(__name__)

STREAM = "norway-traffic"
TAGGED_TOPIC = "norway-traffic.tagged"
RESULTS_TABLE = "max_speed_per_region"
EMBEDDED_PLACEMENT_NOTE = (
    "embedded mode: every destination is local (the HTTP gateway on loopback, the local "
    "log, RocksDB state and SQLite files on this machine), so placement is attested as "
    "local without a GeoIP database"
)


def norway_strict_pack() -> Path:
    """The shipped norway-strict policy pack."""
    return Path(policies.__file__).resolve().parent / "packs" / "norway-strict.yaml"


@dataclass
class DemoStats:
    """Live counters the progress display and the summary read."""

    sent: int = 0
    requests: int = 0
    retried_batches: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    actions: Counter[str] = field(default_factory=Counter)
    http_errors: Counter[int] = field(default_factory=Counter)
    windows_written: int = 0
    processor_events: int = 0
    watermark: str = "-"
    started: float = field(default_factory=time.monotonic)


@dataclass
class DemoResult:
    """What a demo run leaves behind, and what it counted."""

    run_dir: Path
    audit_dir: Path
    sqlite_path: Path
    report_path: Path | None
    report_note: str
    public_key_path: Path
    policy_path: Path
    stats: DemoStats
    placement: list[dict[str, Any]]
    top_windows: list[tuple[str, str, float]]
    audit_records: int


# What one demo run writes into its directory.
RUN_OUTPUTS = (
    "audit",
    "log",
    "state",
    "results.sqlite",
    "results.sqlite-wal",
    "results.sqlite-shm",
    "report.html",
    "keyring.json",
    "audit-signing-key.pem",
    "audit-public-key.pem",
)


def archive_previous_run(directory: Path) -> Path | None:
    """Move an earlier run's outputs into `previous-runs/<time>/` (an audit log is never
    deleted), so that the directory holds exactly one run and its paths stay stable."""
    present = [directory / name for name in RUN_OUTPUTS if (directory / name).exists()]
    if not present:
        return None
    stamp = dt.datetime.fromtimestamp(max(p.stat().st_mtime for p in present), dt.UTC).strftime(
        "%Y%m%dT%H%M%SZ"
    )
    target = directory / "previous-runs" / stamp
    suffix = 1
    while target.exists():
        suffix += 1
        target = directory / "previous-runs" / f"{stamp}-{suffix}"
    target.mkdir(parents=True)
    for path in present:
        path.rename(target / path.name)
    return target


class DemoGuard:
    """The processor's start guard in embedded mode: local destinations only, all audited."""

    def __init__(self, policy: Any, audit: AuditLog) -> None:
        self.policy = policy
        self.audit = audit

    def check_destination(self, destination: str, *, job: str, role: str) -> None:
        local = destination.startswith("file://")
        self.audit.append(
            {
                "type": "egress",
                "component": "processor",
                "job": job,
                "role": role,
                "destination": destination,
                "outcome": "allow" if local else "deny",
                "rule_id": "embedded.local-file" if local else "embedded.local-only",
                "policy_hash": self.policy.content_hash,
            }
        )
        if not local:
            raise EgressDenied(f"job {job}: embedded mode writes only local files, not {role}")

    def check_state_dir(self, path: Path, *, job: str) -> None:
        # Recorded by the demo's placement attestation (run_placement_checks).
        return None

    def record(self, record: Mapping[str, Any]) -> None:
        self.audit.append({"component": "processor", **record})


def placement_attestation(policy: Any, state_dir: Path) -> list[dict[str, Any]]:
    """Placement checks that apply in embedded mode, plus the local attestation."""
    from policies.location import PlacementConfig, run_placement_checks

    checks = [{"name": "embedded.local", "status": "pass", "detail": EMBEDDED_PLACEMENT_NOTE}]
    for result in run_placement_checks(PlacementConfig(state_dir=state_dir), policy, None):
        if result.name.startswith("geo") or result.status == "skip":
            continue  # no remote endpoint to locate in embedded mode
        checks.append({"name": result.name, "status": result.status, "detail": result.detail})
    return checks


def _export_report(audit_dir: Path, public_key: Path, out: Path) -> tuple[Path | None, str]:
    """The auditor's HTML report, by the audit package's own command (`audit export`)."""
    command = [
        sys.executable,
        "-m",
        "gateway.cli",
        "--log-level",
        "ERROR",
        "audit",
        "export",
        str(audit_dir),
        "--format",
        "html",
        "--output",
        str(out),
        "--public-key",
        str(public_key),
    ]
    try:
        done = subprocess.run(command, capture_output=True, timeout=300, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"`fjordgate audit export` could not run: {type(exc).__name__}"
    if not out.exists():
        return None, f"`fjordgate audit export` failed (exit {done.returncode})"
    if done.returncode != 0:
        return out, "written, but the audit log did NOT verify: see the report's first section"
    return out, "exported from the audit log, which verified against the pinned public key"


def _count_windows(path: Path) -> tuple[int, list[tuple[str, str, float]]]:
    if not path.exists():
        return 0, []
    try:
        # Closed explicitly (a `with` on a connection only commits), so that SQLite
        # folds its write-ahead log back in and leaves one file behind.
        with contextlib.closing(sqlite3.connect(path, timeout=5.0)) as conn:
            (count,) = conn.execute(f"SELECT COUNT(*) FROM {RESULTS_TABLE}").fetchone()
            top = conn.execute(
                f"SELECT window_start, region, max_speed FROM {RESULTS_TABLE} "
                "ORDER BY max_speed DESC LIMIT 5"
            ).fetchall()
    except sqlite3.Error:
        return 0, []
    return int(count), [(str(a), str(b), float(c)) for a, b, c in top]


class Demo:
    """One demo run; `run()` does everything and returns the result."""

    def __init__(
        self,
        out: Path,
        *,
        duration_s: float = 20.0,
        rate: int = 200,
        time_scale: float = 12.0,
        seed: int | None = None,
        policy_path: Path | None = None,
        on_tick: Callable[[DemoStats], None] | None = None,
    ) -> None:
        self.run_dir = out
        self.duration_s = duration_s
        self.rate = max(1, rate)
        self.time_scale = time_scale
        self.seed = seed if seed is not None else time.time_ns() % 2**31
        self.policy_path = policy_path or norway_strict_pack()
        self.on_tick = on_tick
        self.stats = DemoStats()

    def run(self) -> DemoResult:
        run = self.run_dir
        archive_previous_run(run)
        run.mkdir(parents=True, exist_ok=True)
        key_path = run / "audit-signing-key.pem"
        public_key_path = run / "audit-public-key.pem"
        signing_key = SigningKey.create(key_path)
        signing_key.public_key.export(public_key_path)
        keyring = Keyring.generate(run / "keyring.json")
        audit = AuditLog.open(run / "audit", signing_key, linger_ms=1.0)
        local_log = LocalLog.open(run / "log", partitions=2)
        sqlite_path = run / "results.sqlite"
        api_key = new_api_key()
        publisher = LocalLogPublisher(local_log, [TAGGED_TOPIC], partitions=2)
        gateway = Gateway(
            policy_path=self.policy_path,
            keyring=keyring,
            audit=audit,
            publisher=publisher,
            destination=publisher.destination,
            api_keys=[ApiKey("demo-generator", hash_api_key(api_key), frozenset({STREAM}))],
        )
        placement = placement_attestation(gateway.policy, run / "state")
        worst = "fail" if any(c["status"] == "fail" for c in placement) else "pass"
        audit.append(
            {
                "type": "placement",
                "component": "gateway",
                "outcome": worst,
                "mode": gateway.policy.mode,
                "policy_hash": gateway.policy.content_hash,
                "checks": placement,
            }
        )
        gateway.start()
        server = ServerThread(gateway.app).start()
        runner = JobRunner(
            ProcessorJob("norway-traffic-max-speed")
            .source(LocalLogSource(local_log, TAGGED_TOPIC))
            .watermarks(out_of_orderness_ms=5_000, idle_timeout_ms=10_000)
            .key_by("region")
            .window(TumblingWindow(60_000))
            .aggregate(Max("speed"))
            .sink(
                SqliteSink(sqlite_path, RESULTS_TABLE),
                key_column="region",
                value_column="max_speed",
            ),
            ProcessorConfig(
                localdir=run / "state", checkpoint_interval_ms=2_000, poll_timeout_ms=100
            ),
            guard=DemoGuard(gateway.policy, audit),
        )
        generating = threading.Event()
        generating.set()
        processor_error: list[BaseException] = []
        processor = threading.Thread(
            target=self._process, args=(runner, generating, processor_error), daemon=True
        )
        runner.start()
        processor.start()
        try:
            self._generate(server.url, api_key)
        finally:
            generating.clear()
            processor.join()
            server.stop()
            gateway.stop()
        self.stats.windows_written = runner.metrics.results_emitted
        audit_records = self._audit_count(audit)
        audit.close()
        local_log.close()
        report_path, report_note = _export_report(
            run / "audit", public_key_path, run / "report.html"
        )
        windows, top = _count_windows(sqlite_path)
        self.stats.windows_written = windows
        if processor_error:
            raise processor_error[0]
        return DemoResult(
            run_dir=run,
            audit_dir=run / "audit",
            sqlite_path=sqlite_path,
            report_path=report_path,
            report_note=report_note,
            public_key_path=public_key_path,
            policy_path=self.policy_path,
            stats=self.stats,
            placement=placement,
            top_windows=top,
            audit_records=audit_records,
        )

    @staticmethod
    def _audit_count(audit: AuditLog) -> int:
        head = audit.write_tree_head()
        return int(getattr(head, "tree_size", 0))

    def _process(
        self, runner: JobRunner, generating: threading.Event, errors: list[BaseException]
    ) -> None:
        try:
            while generating.is_set():
                runner.step()
                self.stats.processor_events = runner.metrics.events_in
                self.stats.windows_written = runner.metrics.results_emitted
            # The generator has stopped: read to the end and close every window.
            while runner.step(stop_at_end=True):
                pass
            self.stats.processor_events = runner.metrics.events_in
            self.stats.windows_written = runner.metrics.results_emitted
        except BaseException as exc:
            errors.append(exc)
        finally:
            runner.close()

    def _generate(self, url: str, api_key: str) -> None:
        generator = TrafficGenerator(self.seed, disorder_s=4.0)
        stats = self.stats
        per_tick = max(1, self.rate // 10)
        began = time.monotonic()
        event_clock_start = dt.datetime.now(dt.UTC)
        endpoint = f"{url}/v1/streams/{STREAM}/events"
        with httpx.Client(headers={"X-API-Key": api_key}, timeout=30.0) as client:
            tick = 0
            while (elapsed := time.monotonic() - began) < self.duration_s:
                now = event_clock_start + dt.timedelta(seconds=elapsed * self.time_scale)
                batch = generator.batch(per_tick, now)
                if tick % 50 == 7:
                    batch[0]["speed"] = "fast"  # a producer bug: rejected, named, not kept
                self._post(client, endpoint, batch)
                if tick % 10 == 3:
                    stats.retried_batches += 1  # as a client would after a timeout
                    self._post(client, endpoint, batch, retry=True)
                tick += 1
                if self.on_tick is not None:
                    self.on_tick(stats)
                sleep = began + tick * 0.1 - time.monotonic()
                if sleep > 0:
                    time.sleep(sleep)

    def _post(
        self, client: httpx.Client, endpoint: str, batch: list[dict[str, Any]], retry: bool = False
    ) -> None:
        stats = self.stats
        response = client.post(endpoint, json=batch)
        stats.requests += 1
        if not retry:
            stats.sent += len(batch)
        if response.status_code not in (200, 422):
            stats.http_errors[response.status_code] += 1
            return
        for result in response.json()["results"]:
            stats.outcomes[result["status"]] += 1
            if result["status"] == "rejected":
                stats.reasons[result["error"]["code"]] += 1
            elif result["status"] == "accepted":
                for change in result.get("transformed", ()):
                    stats.actions[change["action"]] += 1
