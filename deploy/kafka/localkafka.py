#!/usr/bin/env python3
"""A real single-node Apache Kafka (KRaft, combined broker + controller) for tests and local runs.

Fetches the Apache Kafka jars and their runtime dependencies with Maven
(`mvn dependency:copy-dependencies` on deploy/kafka/pom.xml) into a cache
folder outside the repository, formats KRaft storage, starts the broker on
127.0.0.1 on free ports, waits until it answers metadata requests, and stops it
cleanly. Standard library only (plus confluent-kafka when present, for the
metadata wait), so it runs before the project is installed.

    python3 deploy/kafka/localkafka.py fetch
    python3 deploy/kafka/localkafka.py start [--data-dir DIR] [--port N]   # prints bootstrap
    python3 deploy/kafka/localkafka.py stop --data-dir DIR
    python3 deploy/kafka/localkafka.py reap       # stop brokers whose owner process is gone

Every broker we start is recorded in a pid file under the cache's run/ folder
with its data directory and the pid of the process that owns it; `reap` (run
by every `start`) stops the brokers whose owner is dead, by pid, after
checking that the pid's command line is still that broker's, never by name.
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
POM = HERE / "pom.xml"

sys.path.insert(0, str(HERE.parent))
import localproc  # noqa: E402  (deploy/localproc.py, shared with deploy/postgres)
from localproc import cache_root, free_port, run_dir  # noqa: E402


def kafka_version() -> str:
    text = POM.read_text(encoding="utf-8")
    start = text.index("<kafka.version>") + len("<kafka.version>")
    return text[start : text.index("</kafka.version>")].strip()


def libs_dir() -> Path:
    return cache_root() / f"kafka-{kafka_version()}" / "libs"


class KafkaError(RuntimeError):
    """The local broker could not be fetched, started or stopped; the message says why."""


def fetch(*, quiet: bool = False) -> Path:
    """Fetch the Kafka jars into the cache once; later calls reuse them."""
    libs = libs_dir()
    marker = libs / ".complete"
    if marker.exists():
        return libs
    if shutil.which("mvn") is None:
        raise KafkaError(
            "Maven (mvn) is not installed: it fetches the Kafka jars (apt-get install maven)"
        )
    if shutil.which("java") is None:
        raise KafkaError(
            "no Java runtime: Kafka needs a JDK 17+ (apt-get install openjdk-17-jre-headless)"
        )
    tmp = libs.with_name("libs.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    if not quiet:
        print(f"fetching Apache Kafka {kafka_version()} jars into {libs} ...", file=sys.stderr)
    cmd = [
        "mvn",
        "-q",
        "-B",
        "-f",
        str(POM),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={tmp}",
        "-DincludeScope=runtime",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise KafkaError(
            f"mvn could not fetch the Kafka jars (exit {proc.returncode}):\n"
            f"{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
        )
    shutil.rmtree(libs, ignore_errors=True)
    tmp.rename(libs)
    marker.write_text(kafka_version(), encoding="utf-8")
    return libs


def new_cluster_id(draw: Callable[[], uuid.UUID] = uuid.uuid4) -> str:
    """A KRaft cluster id: a random UUID in unpadded base64url, as Kafka's Uuid.randomUuid
    makes it. An id starting with "-" is drawn again (Kafka does the same): the storage
    tool would read it as an option, and one start in 64 failed so."""
    while True:
        cid = base64.urlsafe_b64encode(draw().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


@dataclass
class LocalKafka:
    """One broker: its data directory, ports and process."""

    data_dir: Path
    port: int
    controller_port: int
    owner_pid: int
    pid: int | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def pid_file(self) -> Path:
        return run_dir() / f"kafka-{self.port}.json"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "broker.log"

    def _write_config(self) -> None:
        logs = self.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(logs),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
            "log.flush.interval.messages": "9223372036854775807",
            "log.segment.bytes": str(64 * 1024 * 1024),
        }
        self.config_path.write_text(
            "".join(f"{k}={v}\n" for k, v in props.items()), encoding="utf-8"
        )
        log4j = self.data_dir / "log4j2.properties"
        log4j.write_text(
            "rootLogger.level=WARN\nrootLogger.appenderRef.stdout.ref=STDOUT\n"
            "appender.stdout.type=Console\nappender.stdout.name=STDOUT\n"
            "appender.stdout.layout.type=PatternLayout\n"
            "appender.stdout.layout.pattern=[%d] %p %m (%c)%n\n",
            encoding="utf-8",
        )

    def _java(self, main: str, *args: str) -> list[str]:
        return [
            "java",
            "-Xms256m",
            "-Xmx768m",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
            "-Dfjordgate.kafka.data=" + str(self.data_dir),
            "-cp",
            str(libs_dir() / "*"),
            main,
            *args,
        ]

    def format(self) -> None:
        if (self.data_dir / "logs" / "meta.properties").exists():
            return
        self._write_config()
        cid = new_cluster_id()
        proc = subprocess.run(
            self._java("kafka.tools.StorageTool", "format", "-t", cid, "-c", str(self.config_path)),
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise KafkaError(
                f"formatting KRaft storage failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
            )

    def start(self, timeout_s: float = 120.0) -> None:
        """Start the broker and wait until it answers metadata requests."""
        fetch()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.format()
        self._write_config()
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it open
        proc = subprocess.Popen(
            self._java("kafka.Kafka", str(self.config_path)),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in pytest must not kill it mid-write; we stop it
        )
        log.close()
        self.pid = proc.pid
        localproc.write_pid_file(
            self.pid_file,
            pid=proc.pid,
            owner_pid=self.owner_pid,
            data_dir=str(self.data_dir),
            port=self.port,
            controller_port=self.controller_port,
        )
        try:
            self.wait_ready(timeout_s, proc)
        except BaseException:
            self.stop()
            raise

    def wait_ready(self, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> None:
        deadline = time.monotonic() + timeout_s
        last = ""
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-3000:]
                raise KafkaError(f"the Kafka broker exited with {proc.returncode}:\n{tail}")
            try:
                if _answers_metadata(self.bootstrap):
                    return
            except Exception as exc:  # not ready yet
                last = str(exc)
            time.sleep(0.3)
        raise KafkaError(
            f"the Kafka broker on {self.bootstrap} did not answer within {timeout_s:.0f}s "
            f"({last}); log: {self.log_path}"
        )

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop cleanly (SIGTERM, controlled shutdown); SIGKILL after the timeout."""
        if self.pid is not None:
            localproc.terminate(self.pid, timeout_s, marker=str(self.data_dir))
        self.pid = None
        self.pid_file.unlink(missing_ok=True)

    def remove(self) -> None:
        """Stop, then delete the data directory: a benchmark's broker writes gigabytes,
        and the ones left in the temporary directory filled the disk here (a broker then
        died mid-run). `stop` keeps the data, for `start` again."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.pid is not None and localproc.pid_alive(self.pid):
            os.kill(self.pid, signal.SIGKILL)
            localproc.wait_dead(self.pid, 10)
        self.pid = None


def _answers_metadata(bootstrap: str) -> bool:
    host, port = bootstrap.split(":")
    with socket.create_connection((host, int(port)), timeout=1):
        pass  # the listener is open; now ask for metadata
    try:
        from confluent_kafka.admin import AdminClient
    except ImportError:
        return True  # without the client, an open listener is the best we can tell
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 2000, "log_level": 0})
    md = admin.list_topics(timeout=2)
    return len(md.brokers) >= 1


def reap() -> list[int]:
    """Stop brokers left behind by test runs whose owner process is gone."""
    return localproc.reap("kafka")


def start_broker(
    data_dir: Path | None = None, port: int | None = None, owner_pid: int | None = None
) -> LocalKafka:
    reap()
    if data_dir is None:
        data_dir = Path(tempfile.mkdtemp(prefix="fjordgate-kafka-"))
    broker = LocalKafka(
        data_dir=data_dir,
        port=port or free_port(),
        controller_port=free_port(),
        owner_pid=owner_pid if owner_pid is not None else os.getpid(),
    )
    broker.start()
    return broker


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("fetch", help="fetch the Kafka jars into the cache")
    start = sub.add_parser(
        "start", help="start a broker in the background; prints its bootstrap address"
    )
    start.add_argument("--data-dir", type=Path)
    start.add_argument("--port", type=int)
    stop = sub.add_parser("stop", help="stop the broker of a data directory")
    stop.add_argument("--data-dir", type=Path, required=True)
    sub.add_parser("reap", help="stop brokers whose owner process is gone")
    args = parser.parse_args()
    try:
        if args.cmd == "fetch":
            print(fetch())
        elif args.cmd == "start":
            # Started from a shell: the broker outlives this command, so it owns itself.
            broker = start_broker(args.data_dir, args.port, owner_pid=1)
            print(broker.bootstrap)
        elif args.cmd == "stop":
            pid = localproc.stop_by_data_dir("kafka", args.data_dir)
            if pid is None:
                print(f"no broker of ours runs with data dir {args.data_dir}", file=sys.stderr)
                return 1
            print(f"stopped broker pid {pid}")
        elif args.cmd == "reap":
            print(f"stopped {len(reap())} stale broker(s)")
    except KafkaError as exc:
        print(f"localkafka: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
