"""A killed test run leaves no broker or database behind: the next start stops them by pid."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _start_in_a_child_then_kill_it(script: str) -> dict[str, int | str]:
    """Start a service from a child process (its owner), then SIGKILL the owner as Ctrl-\\ would."""
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert child.stdout is not None
    line = child.stdout.readline()
    assert line, "the child did not start the service"
    info: dict[str, int | str] = json.loads(line)
    child.send_signal(signal.SIGKILL)
    child.wait()
    return info


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.kafka
def test_broker_of_a_killed_run_is_stopped_by_pid_on_next_start() -> None:
    localkafka = sys.modules["fjordgate_localkafka"]  # loaded by tests/conftest.py

    info = _start_in_a_child_then_kill_it("""
        import json, sys
        sys.path.insert(0, "deploy/kafka")
        import localkafka
        broker = localkafka.start_broker()
        print(json.dumps({"pid": broker.pid, "data_dir": str(broker.data_dir)}), flush=True)
        import time; time.sleep(600)
    """)
    pid = int(info["pid"])
    assert _alive(pid), "the orphaned broker should still run until someone reaps it"
    stopped = localkafka.reap()
    assert pid in stopped
    for _ in range(100):
        if not _alive(pid):
            break
        time.sleep(0.1)
    assert not _alive(pid)
    assert not Path(str(info["data_dir"])).exists()


@pytest.mark.kafka
def test_a_removed_broker_is_stopped_and_its_data_deleted() -> None:
    localkafka = sys.modules["fjordgate_localkafka"]  # loaded by tests/conftest.py

    broker = localkafka.start_broker()
    pid, data_dir = broker.pid, Path(broker.data_dir)
    try:
        assert _alive(pid) and (data_dir / "broker.log").exists()
    finally:
        broker.remove()
    assert not _alive(pid)
    assert not data_dir.exists()


@pytest.mark.postgres
def test_database_of_a_killed_run_is_stopped_by_pid_on_next_start() -> None:
    localpg = sys.modules["fjordgate_localpg"]  # loaded by tests/conftest.py

    info = _start_in_a_child_then_kill_it("""
        import json, sys
        sys.path.insert(0, "deploy/postgres")
        import localpg
        cluster = localpg.start_cluster()
        print(json.dumps({"pid": cluster.pid, "data_dir": str(cluster.data_dir)}), flush=True)
        import time; time.sleep(600)
    """)
    pid = int(info["pid"])
    assert _alive(pid)
    stopped = localpg.reap()
    assert pid in stopped
    assert not _alive(pid)


def test_reap_leaves_a_live_runs_services_alone(tmp_path: Path) -> None:
    localkafka = sys.modules["fjordgate_localkafka"]  # loaded by tests/conftest.py

    # A pid file whose owner (this process) is alive must not be touched.
    pid_file = localkafka.run_dir() / "kafka-1.json"
    pid_file.write_text(
        json.dumps(
            {
                "pid": os.getpid(),
                "owner_pid": os.getpid(),
                "data_dir": str(tmp_path),
                "port": 1,
                "controller_port": 2,
            }
        )
    )
    try:
        assert localkafka.reap() == []
        assert pid_file.exists()
    finally:
        pid_file.unlink(missing_ok=True)


def test_a_kafka_cluster_id_never_starts_with_a_dash() -> None:
    import uuid

    localkafka = sys.modules["fjordgate_localkafka"]  # loaded by tests/conftest.py
    # 0xfb... encodes as "-..." in base64url: the storage tool read such an id as an option.
    draws = iter([uuid.UUID(bytes=b"\xfb" + bytes(15)), uuid.UUID(bytes=b"\x01" + bytes(15))])
    cid = localkafka.new_cluster_id(lambda: next(draws))
    assert cid == "AQAAAAAAAAAAAAAAAAAAAA"
    assert not any(localkafka.new_cluster_id().startswith("-") for _ in range(2_000))
