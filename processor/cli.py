"""CLI of the processor, mounted under `fjordgate` by gateway/cli.py:
`processor run`, `processor checkpoints` and `processor inspect-state`.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from processor.checkpoints import CheckpointStore
from processor.config import ProcessorConfig
from processor.errors import ConfigError, ProcessorError
from processor.guard import PolicyGuard, RecordingGuard, StartGuard
from processor.jobfile import load_job
from processor.operators.fixed import decode_key
from processor.runner import describe_metrics, make_runner
from processor.state.rocksdb import RocksDBStateBackend

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", help="Flink-style processor config (state.backend.rocksdb.*, ...)."),
]


def _config(path: Path | None) -> ProcessorConfig:
    return ProcessorConfig.load(path) if path is not None else ProcessorConfig()


def _guard(policy: Path | None, geo_dir: Path | None, audit_dir: Path | None,
           audit_key: Path | None) -> StartGuard:  # fmt: skip
    if policy is None:
        print(
            "fjordgate processor: no --policy given: sink destinations are NOT checked "
            "against egress rules (use --policy in production)",
            file=sys.stderr,
        )
        return RecordingGuard()
    from audit import AuditError, AuditLog, SigningKey
    from policies import PolicyError, load_policy
    from policies.location import LocationError, Locator, default_geo_dir

    geo = geo_dir or default_geo_dir()
    try:
        locator = Locator.open(geo / "country.mmdb", geo / "asn.mmdb")
        loaded = load_policy(policy)
        audit_log = None
        if audit_dir is not None:
            if audit_key is None:
                raise typer.BadParameter("--audit-dir needs --audit-key (the Ed25519 signing key)")
            audit_log = AuditLog.open(audit_dir, SigningKey.load(audit_key))
    except (PolicyError, LocationError, AuditError) as exc:
        # Their messages name the file and what to fix; the job must not start unchecked.
        raise ConfigError(f"{type(exc).__name__}: {exc}") from exc
    return PolicyGuard(loaded, locator, audit_log)


def _run(
    job_file: Annotated[Path, typer.Argument(help="YAML job file (see processor/jobs/).")],
    config: ConfigOpt = None,
    until_end: Annotated[
        bool, typer.Option("--until-end", help="Stop once the input present at start is processed.")
    ] = False,
    policy: Annotated[
        Path | None, typer.Option("--policy", help="Policy for egress checks.")
    ] = None,
    geo_dir: Annotated[
        Path | None, typer.Option("--geo-dir", help="country/asn .mmdb folder.")
    ] = None,
    audit_dir: Annotated[
        Path | None, typer.Option("--audit-dir", help="Audit log directory.")
    ] = None,
    audit_key: Annotated[
        Path | None, typer.Option("--audit-key", help="Audit signing key.")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option("--metrics-port", help="Serve Prometheus /metrics on 127.0.0.1.")
    ] = None,
) -> None:
    """Run a job: restore the latest checkpoint, then process until stopped (SIGTERM/Ctrl-C)."""
    if metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr="127.0.0.1")
    guard: StartGuard | None = None
    try:
        job = load_job(job_file)
        guard = _guard(policy, geo_dir, audit_dir, audit_key)
        runner = make_runner(job, _config(config), guard=guard)
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        metrics = runner.run(stop_at_end=until_end, stop=stop)
    except ProcessorError as exc:
        print(f"fjordgate processor run: {exc}", file=sys.stderr)
        raise typer.Exit(code=2) from None
    finally:
        # Closing writes the signed tree head over the last records (a refusal included).
        if isinstance(guard, PolicyGuard) and guard.audit_log is not None:
            guard.audit_log.close()
    print(json.dumps(describe_metrics(metrics), indent=1))


def _checkpoints(
    job_file: Annotated[Path, typer.Argument(help="YAML job file.")],
    config: ConfigOpt = None,
) -> None:
    """List the retained checkpoints of a job: id, time, offsets, watermark, size."""
    try:
        job = load_job(job_file, env=_lenient_env())
        cfg = _config(config)
        found = CheckpointStore(cfg.checkpoint_root / job.name).list()
    except ProcessorError as exc:
        print(f"fjordgate processor checkpoints: {exc}", file=sys.stderr)
        raise typer.Exit(code=2) from None
    if not found:
        print(f"no checkpoints for job {job.name} under {cfg.checkpoint_root / job.name}")
        return
    for c in found:
        print(
            json.dumps(
                {
                    "id": c.id,
                    "path": str(c.path),
                    "created_ms": c.created_ms,
                    "offsets": c.offsets,
                    "watermark": c.watermark,
                    "size_bytes": c.size_bytes,
                }
            )
        )


def _inspect_state(
    job_file: Annotated[Path, typer.Argument(help="YAML job file.")],
    config: ConfigOpt = None,
    checkpoint: Annotated[
        int | None, typer.Option("--checkpoint", help="Checkpoint id (default: the latest).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="Rows to print per partition.")] = 20,
) -> None:
    """Print the open windows held in a checkpoint's RocksDB state (counts and first rows)."""
    try:
        job = load_job(job_file, env=_lenient_env())
        cfg = _config(config)
        store = CheckpointStore(cfg.checkpoint_root / job.name)
        found = {c.id: c for c in store.list()}
        if not found:
            print(f"no checkpoints for job {job.name}")
            raise typer.Exit(code=1)
        chosen = found[checkpoint] if checkpoint is not None else found[max(found)]
        op = job.operator()
        scratch = cfg.with_overrides(localdir=cfg.localdir / ".inspect")
        backend = RocksDBStateBackend(scratch, job.name)
        summary: dict[str, Any] = {"checkpoint": chosen.id, "watermark": chosen.watermark}
        for p in sorted(chosen.offsets):
            backend.restore_partition(p, chosen.partition_path(p))
            state = backend.open_partition(p, [op.column])
            rows: list[dict[str, Any]] = []
            count = 0
            for raw_key, raw_value in state.scan(op.column, b"", None):
                count += 1
                if len(rows) < limit:
                    rows.append(_describe_row(job.window_, op, raw_key, raw_value))
            summary[f"partition {p}"] = {
                "offset": chosen.offsets[p],
                "entries": count,
                "rows": rows,
            }
            backend.drop_partition(p)
        backend.close()
    except ProcessorError as exc:
        print(f"fjordgate processor inspect-state: {exc}", file=sys.stderr)
        raise typer.Exit(code=2) from None
    print(json.dumps(summary, indent=1, default=str))


def _describe_row(window: Any, op: Any, raw_key: bytes, raw_value: bytes) -> dict[str, Any]:
    from processor.windows import HoppingWindow, TumblingWindow

    if isinstance(window, TumblingWindow | HoppingWindow):
        start, end, key = decode_key(raw_key)
        # Keys are printed: they are the job's grouping field (region), never a personal value
        # in a compliant job, where personal fields are pseudonymised before the processor.
        return {"window_start": start, "window_end": end, "key": key,
                "accumulator": op.aggregation.decode(raw_value)}  # fmt: skip
    return {"key": raw_key.decode(), "windows": json.loads(raw_value)}


def _lenient_env() -> dict[str, str]:
    """Environment for reading a job file only for its name: unset variables become empty."""
    import os

    class _Env(dict[str, str]):
        def __missing__(self, key: str) -> str:
            return ""

        def __contains__(self, key: object) -> bool:
            return True

    return _Env(os.environ)


def register(root: typer.Typer) -> None:
    """Mount this package's commands on the `fjordgate` root."""
    group = typer.Typer(help="The windowing processor: run jobs, list checkpoints, inspect state.")
    group.command("run")(_run)
    group.command("checkpoints")(_checkpoints)
    group.command("inspect-state")(_inspect_state)
    root.add_typer(group, name="processor")
