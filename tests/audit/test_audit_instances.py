"""Several processes, each with its own log under one directory: they write at the same time
without touching each other's files, and `verify` and `export` take the whole directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
from typer.testing import CliRunner

from audit import SigningKey, verify_directory
from gateway.cli import app

ROOT = Path(__file__).resolve().parents[2]
WRITER = """
import sys, threading
from pathlib import Path
from audit import AuditLog, SigningKey
log = AuditLog.open(Path(sys.argv[1]), SigningKey.load(Path(sys.argv[2])), tree_head_every=50)
def run(n):
    for i in range(100):
        log.append({"type": "decision", "outcome": "allow", "writer": n, "i": i})
threads = [threading.Thread(target=run, args=(n,)) for n in range(3)]
[t.start() for t in threads]
[t.join() for t in threads]
log.close()
"""


def test_instance_logs_of_concurrent_processes_verify_and_export_together(
    tmp_path: Path,
) -> None:
    key_path = tmp_path / "signing.pem"
    key = SigningKey.create(key_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path / "logs" / f"gw-{n}"), str(key_path)],
            env=env,
        )
        for n in range(3)
    ]
    assert [child.wait(timeout=120) for child in children] == [0, 0, 0]
    reports = verify_directory(tmp_path / "logs", [key.public_key])
    assert [r.directory.name for r in reports] == ["gw-0", "gw-1", "gw-2"]
    assert all(r.ok and r.records == 301 for r in reports)
    assert len({r.log_id for r in reports}) == 3

    result = CliRunner().invoke(
        app,
        [
            "audit",
            "export",
            str(tmp_path / "logs"),
            "--format",
            "json",
            "-o",
            str(tmp_path / "report.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    report = orjson.loads((tmp_path / "report.json").read_bytes())
    assert report["decisions_by_outcome"] == {"allow": 900}
    assert [i["name"] for i in report["verification"]["instances"]] == ["gw-0", "gw-1", "gw-2"]
