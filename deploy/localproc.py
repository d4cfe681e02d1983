"""Process bookkeeping shared by the local Kafka and PostgreSQL scripts (standard library only).

Every service a script starts is recorded in a pid file under the cache's
run/ folder, with its data directory and the pid of the process that owns it.
A service whose owner is gone is stopped by its pid, after checking that the
pid's command line still names its data directory: never by process name.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import tempfile
import time
from pathlib import Path


def cache_root() -> Path:
    base = os.environ.get("FJORDGATE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "fjordgate"
    )
    return Path(base)


def run_dir() -> Path:
    path = cache_root() / "run"
    path.mkdir(parents=True, exist_ok=True)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def wait_dead(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap our own child, if it is one
        if not pid_alive(pid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def terminate(pid: int, timeout_s: float, *, marker: str, sig: int = signal.SIGTERM) -> None:
    """Stop `pid` with `sig`, then SIGKILL after the timeout; only if it is still ours."""
    if not pid_alive(pid) or marker not in cmdline(pid):
        return  # gone, or the pid was reused by another program: leave it alone
    os.kill(pid, sig)
    if not wait_dead(pid, timeout_s):
        os.kill(pid, signal.SIGKILL)
        wait_dead(pid, 10)


def write_pid_file(path: Path, **info: object) -> None:
    path.write_text(json.dumps(info), encoding="utf-8")


def reap(prefix: str, *, sig: int = signal.SIGTERM) -> list[int]:
    """Stop the services of `prefix` (kafka, postgres) whose owner process is gone."""
    stopped = []
    for pid_file in run_dir().glob(f"{prefix}-*.json"):
        try:
            info = json.loads(pid_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            pid_file.unlink(missing_ok=True)
            continue
        if pid_alive(int(info["owner_pid"])):
            continue  # a live run (maybe this one) owns it
        pid = int(info["pid"])
        if pid_alive(pid) and info["data_dir"] in cmdline(pid):
            terminate(pid, 15, marker=info["data_dir"], sig=sig)
            stopped.append(pid)
        pid_file.unlink(missing_ok=True)
        if info["data_dir"].startswith(tempfile.gettempdir()):
            shutil.rmtree(info["data_dir"], ignore_errors=True)
    return stopped


def stop_by_data_dir(prefix: str, data_dir: Path, *, sig: int = signal.SIGTERM) -> int | None:
    """Stop the service of `prefix` that runs with `data_dir`; its pid, or None if none does."""
    for pid_file in run_dir().glob(f"{prefix}-*.json"):
        info = json.loads(pid_file.read_text(encoding="utf-8"))
        if Path(info["data_dir"]).resolve() == data_dir.resolve():
            terminate(int(info["pid"]), 30, marker=info["data_dir"], sig=sig)
            pid_file.unlink(missing_ok=True)
            return int(info["pid"])
    return None
