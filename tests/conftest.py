"""Session fixtures for the real services: Apache Kafka (KRaft) and PostgreSQL.

Both are started once per test session from deploy/ (Kafka from the Maven
Central jars, PostgreSQL from Debian's packages) and stopped at the end. A
test that needs one and cannot get it fails loudly; it is never skipped.
Brokers and clusters left behind by a killed run are stopped by pid on the
next start (deploy/kafka/localkafka.py, deploy/postgres/localpg.py).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


localkafka = _load("fjordgate_localkafka", ROOT / "deploy" / "kafka" / "localkafka.py")
localpg = _load("fjordgate_localpg", ROOT / "deploy" / "postgres" / "localpg.py")


class KafkaBroker:
    """The session's broker, with the controls tests need to crash or restart it."""

    def __init__(self, broker: Any) -> None:
        self._broker = broker

    @property
    def bootstrap(self) -> str:
        return str(self._broker.bootstrap)

    @property
    def data_dir(self) -> Path:
        return Path(self._broker.data_dir)

    def stop(self) -> None:
        """Stop cleanly (controlled shutdown); the port and data stay for `start`."""
        self._broker.stop()

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        self._broker.kill()

    def start(self) -> None:
        """Start again on the same port with the same data."""
        self._broker.start()

    def ensure_running(self) -> None:
        if self._broker.pid is None:
            self._broker.start()


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaBroker]:
    """A real single-node Apache Kafka 4.x broker (KRaft) on 127.0.0.1, for the whole session."""
    try:
        broker = localkafka.start_broker()
    except Exception as exc:  # fail loudly: never skip a Kafka test
        pytest.fail(f"could not start the test Kafka broker: {exc}", pytrace=False)
    handle = KafkaBroker(broker)
    yield handle
    broker.stop()
    import shutil

    shutil.rmtree(broker.data_dir, ignore_errors=True)


@pytest.fixture
def kafka_bootstrap(kafka_broker: KafkaBroker) -> str:
    """Bootstrap address of the session's real broker; restarted if a test stopped it."""
    kafka_broker.ensure_running()
    return kafka_broker.bootstrap


@pytest.fixture
def kafka_topic(kafka_bootstrap: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh topic with 3 partitions, named after the test."""
    from confluent_kafka.admin import AdminClient, NewTopic

    name = f"t-{request.node.name[:40]}-{uuid.uuid4().hex[:8]}".replace("[", "-").replace("]", "")
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    futures = admin.create_topics([NewTopic(name, num_partitions=3, replication_factor=1)])
    futures[name].result(timeout=30)
    yield name


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """DSN of a real PostgreSQL server: a running one on 127.0.0.1:5432, or a private cluster."""
    dsn = localpg.existing_server_dsn()
    cluster = None
    if dsn is None:
        try:
            cluster = localpg.start_cluster()
        except Exception as exc:  # fail loudly: never skip a PostgreSQL test
            pytest.fail(f"could not start the test PostgreSQL server: {exc}", pytrace=False)
        dsn = cluster.dsn
    yield dsn
    if cluster is not None:
        cluster.stop()
        import shutil

        shutil.rmtree(cluster.data_dir, ignore_errors=True)


@pytest.fixture
def postgres_dsn(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database for one test, dropped afterwards."""
    import psycopg
    from psycopg import sql

    name = f"fjordgate_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base, _, _ = postgres_server.rpartition("/")
    yield f"{base}/{name}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture(autouse=True, scope="session")
def _no_personal_data_in_env() -> None:
    # Tests generate their own keys; a key from the developer's environment
    # must never leak into a test run.
    for var in list(os.environ):
        if var.startswith("FJORDGATE_KEY"):
            del os.environ[var]


@pytest.fixture(autouse=True)
def _structlog_configuration_is_per_test() -> Iterator[None]:
    # Commands run in-process (the demo quiets info lines) reconfigure structlog for
    # the whole process; each test starts from, and leaves, the same configuration.
    import structlog

    saved = structlog.get_config()
    yield
    structlog.configure(**saved)
