#!/usr/bin/env python3
"""A real PostgreSQL server for tests and local runs, from Debian's packages.

Uses a server already answering on 127.0.0.1:5432 when the DSN in
FJORDGATE_PG_DSN (or the default `postgresql://postgres@127.0.0.1:5432/postgres`)
connects; otherwise installs PostgreSQL from Debian's packages when it is
missing, creates a private cluster in a temporary directory, and starts it on
127.0.0.1 on a free port with trust authentication for the local user only.

    python3 deploy/postgres/localpg.py start      # prints a DSN
    python3 deploy/postgres/localpg.py stop --data-dir DIR
    python3 deploy/postgres/localpg.py reap       # stop clusters whose owner process is gone

As for Kafka, every cluster we start is recorded in a pid file with its owner
process; stale ones are stopped by pid after checking the pid's command line.
"""

from __future__ import annotations

import argparse
import glob
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import localproc
from localproc import run_dir

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


class PostgresError(RuntimeError):
    """The local PostgreSQL could not be found, installed or started; the message says why."""


def existing_server_dsn() -> str | None:
    """The DSN of a server already running on 127.0.0.1:5432 that we may use, if any."""
    dsn = os.environ.get("FJORDGATE_PG_DSN", DEFAULT_DSN)
    try:
        import psycopg
    except ImportError:
        return None
    try:
        with psycopg.connect(dsn, connect_timeout=2, autocommit=True) as conn:
            conn.execute("SELECT 1")
            # A fresh database per test needs CREATEDB.
            row = conn.execute(
                "SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user"
            ).fetchone()
            if row is None or not row[0]:
                return None
    except Exception:
        return None
    return dsn


def bin_dir() -> Path:
    """The newest Debian PostgreSQL bin directory, installing the package if needed."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4])
    )
    if not candidates:
        if os.geteuid() != 0:
            raise PostgresError(
                "PostgreSQL is not installed and we are not root: apt-get install postgresql"
            )
        print("installing PostgreSQL from Debian's packages ...", file=sys.stderr)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "postgresql"]):
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                raise PostgresError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
        candidates = sorted(
            glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4])
        )
        if not candidates:
            raise PostgresError("apt-get installed postgresql but no server binary was found")
    return Path(candidates[-1]).parent


@dataclass
class LocalPostgres:
    """A private cluster: data directory, port, server process."""

    data_dir: Path
    port: int
    owner_pid: int
    pid: int | None = None

    @property
    def dsn(self) -> str:
        return f"postgresql://{self._user}@127.0.0.1:{self.port}/postgres"

    @property
    def _user(self) -> str:
        return "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name

    @property
    def pid_file(self) -> Path:
        return run_dir() / f"postgres-{self.port}.json"

    def _owner(self) -> dict[str, str]:
        # PostgreSQL refuses to run as root: run it as the `postgres` system user
        # (setuid in the child, so the pid we record is the server's own).
        if os.geteuid() == 0:
            return {"user": "postgres", "group": "postgres"}
        return {}

    def start(self, timeout_s: float = 60.0) -> None:
        bins = bin_dir()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.data_dir, "postgres", "postgres")
        pgdata = self.data_dir / "pgdata"
        if not (pgdata / "PG_VERSION").exists():
            proc = subprocess.run(
                [
                    str(bins / "initdb"),
                    "-D",
                    str(pgdata),
                    "-A",
                    "trust",
                    "-U",
                    self._user,
                    "-E",
                    "UTF8",
                    "--no-instructions",
                ],
                capture_output=True,
                text=True,
                cwd="/",
                **self._owner(),
            )
            if proc.returncode != 0:
                raise PostgresError(f"initdb failed:\n{proc.stderr[-2000:]}")
        log = self.data_dir / "postgres.log"
        if os.geteuid() == 0:
            log.touch()
            shutil.chown(log, "postgres", "postgres")
        cmd = [
            str(bins / "postgres"),
            "-D",
            str(pgdata),
            "-p",
            str(self.port),
            "-h",
            "127.0.0.1",
            "-k",
            str(self.data_dir),
            "-c",
            "fsync=on",
            "-c",
            "max_connections=200",
            "-c",
            "shared_buffers=128MB",
        ]
        logf = open(log, "ab")  # noqa: SIM115 - the child keeps it
        proc = subprocess.Popen(
            cmd,
            stdout=logf,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd="/",
            **self._owner(),
        )
        logf.close()
        self.pid = proc.pid
        localproc.write_pid_file(
            self.pid_file,
            pid=proc.pid,
            owner_pid=self.owner_pid,
            data_dir=str(self.data_dir),
            port=self.port,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise PostgresError(
                    f"postgres exited with {proc.returncode}:\n"
                    f"{log.read_text(errors='replace')[-2000:]}"
                )
            ready = subprocess.run(
                [str(bins / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"]
            )
            if ready.returncode == 0:
                return
            time.sleep(0.2)
        self.stop()
        raise PostgresError(
            f"postgres on port {self.port} was not ready within {timeout_s:.0f}s; log: {log}"
        )

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.pid is not None:
            localproc.terminate(self.pid, timeout_s, marker=str(self.data_dir), sig=signal.SIGINT)
        self.pid = None
        self.pid_file.unlink(missing_ok=True)


def reap() -> list[int]:
    """Stop clusters left behind by runs whose owner process is gone."""
    # SIGINT is PostgreSQL's "fast" shutdown: abort sessions, checkpoint, exit.
    return localproc.reap("postgres", sig=signal.SIGINT)


def start_cluster(owner_pid: int | None = None) -> LocalPostgres:
    reap()
    data_dir = Path(tempfile.mkdtemp(prefix="fjordgate-pg-"))
    cluster = LocalPostgres(
        data_dir=data_dir,
        port=localproc.free_port(),
        owner_pid=owner_pid if owner_pid is not None else os.getpid(),
    )
    cluster.start()
    return cluster


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("start", help="use a running server or start a private cluster; prints its DSN")
    stop = sub.add_parser("stop", help="stop the private cluster of a data directory")
    stop.add_argument("--data-dir", type=Path, required=True)
    sub.add_parser("reap", help="stop clusters whose owner process is gone")
    args = parser.parse_args()
    try:
        if args.cmd == "start":
            dsn = existing_server_dsn()
            if dsn is None:
                cluster = start_cluster(owner_pid=1)
                dsn = cluster.dsn
                print(f"started a private cluster in {cluster.data_dir}", file=sys.stderr)
            print(dsn)
        elif args.cmd == "stop":
            if localproc.stop_by_data_dir("postgres", args.data_dir, sig=signal.SIGINT) is None:
                print(f"no cluster of ours runs in {args.data_dir}", file=sys.stderr)
                return 1
        elif args.cmd == "reap":
            print(f"stopped {len(reap())} stale cluster(s)")
    except PostgresError as exc:
        print(f"localpg: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
