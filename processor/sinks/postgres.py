"""The PostgreSQL sink (psycopg 3): upserts keyed by (window, key) and the source
offsets they include, in one transaction per batch.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
import structlog
from psycopg import sql
from psycopg.types.json import Jsonb

from processor.errors import SinkError
from processor.operators.base import WindowResult
from processor.sinks.base import ResultColumns, Sink, last_per_window_key

log = structlog.get_logger(__name__)

_TYPES = {"float": "double precision", "int": "bigint", "json": "jsonb"}
_RETRIES = 30


def _ts(epoch_ms: int) -> datetime:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)


class PostgresSink(Sink):
    """Upserts window results into a table; offsets go to `fjordgate_sink_offsets`."""

    kind = "postgresql"

    def __init__(self, dsn: str, table: str) -> None:
        self.dsn = dsn
        self.table = table
        self._conn: psycopg.Connection[Any] | None = None
        self._job = ""
        self._columns = ResultColumns()

    def destination(self) -> str:
        info = psycopg.conninfo.conninfo_to_dict(self.dsn)
        host = info.get("host") or info.get("hostaddr") or "localhost"
        port = info.get("port") or "5432"
        return f"postgresql://{host}:{port}/{info.get('dbname', '')}"

    def _connect(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.dsn, autocommit=False)
        return self._conn

    def _retrying(self, what: str, fn: Any) -> Any:
        """Run fn(conn) in a transaction; reconnect and retry when the server went away."""
        delay = 0.1
        for attempt in range(_RETRIES):
            try:
                conn = self._connect()
                with conn.transaction():
                    return fn(conn)
            except psycopg.OperationalError as exc:
                log.warning(
                    "postgres_sink_retry", what=what, attempt=attempt, error=type(exc).__name__
                )
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
        raise SinkError(
            f"PostgreSQL sink {self.destination()} failed to {what} after {_RETRIES} attempts; "
            "check that the server is up and the DSN is right"
        )

    def open(self, job: str, columns: ResultColumns) -> None:
        self._job = job
        self._columns = columns
        table, key, value = (sql.Identifier(x) for x in (self.table, columns.key, columns.value))

        def create(conn: psycopg.Connection[Any]) -> None:
            conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {t} (window_start timestamptz NOT NULL,"
                    " window_end timestamptz NOT NULL, {k} text NOT NULL, {v} {vt},"
                    " PRIMARY KEY (window_start, window_end, {k}))"
                ).format(t=table, k=key, v=value, vt=sql.SQL(_TYPES[columns.value_type]))
            )
            conn.execute(
                "CREATE TABLE IF NOT EXISTS fjordgate_sink_offsets (job text NOT NULL,"
                " partition integer NOT NULL, next_offset bigint NOT NULL,"
                " PRIMARY KEY (job, partition))"
            )

        try:
            self._retrying("create its tables", create)
        except psycopg.Error as exc:
            raise SinkError(f"PostgreSQL sink {self.destination()}: {exc}") from exc

    def committed_offsets(self) -> dict[int, int] | None:
        def read(conn: psycopg.Connection[Any]) -> list[tuple[int, int]]:
            cur = conn.execute(
                "SELECT partition, next_offset FROM fjordgate_sink_offsets WHERE job = %s",
                (self._job,),
            )
            return [(int(p), int(o)) for p, o in cur.fetchall()]

        rows: list[tuple[int, int]] = self._retrying("read its offsets", read)
        return dict(rows) if rows else None

    def write(self, results: Sequence[WindowResult], offsets: Mapping[int, int]) -> None:
        final = last_per_window_key(results)
        table = sql.Identifier(self.table)
        key = sql.Identifier(self._columns.key)
        value = sql.Identifier(self._columns.value)
        as_json = self._columns.value_type == "json"
        upsert = sql.SQL(
            "INSERT INTO {t} (window_start, window_end, {k}, {v}) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (window_start, window_end, {k}) DO UPDATE SET {v} = EXCLUDED.{v}"
        ).format(t=table, k=key, v=value)
        delete = sql.SQL(
            "DELETE FROM {t} WHERE window_start = %s AND window_end = %s AND {k} = %s"
        ).format(t=table, k=key)
        rows = [
            (_ts(r.window_start), _ts(r.window_end), r.key, Jsonb(r.value) if as_json else r.value)
            for r in final.values()
            if not r.retract
        ]
        gone = [
            (_ts(r.window_start), _ts(r.window_end), r.key) for r in final.values() if r.retract
        ]
        marks = [(self._job, p, o) for p, o in sorted(offsets.items())]

        def commit(conn: psycopg.Connection[Any]) -> None:
            with conn.cursor() as cur:
                if gone:
                    cur.executemany(delete, gone)
                if rows:
                    cur.executemany(upsert, rows)
                cur.executemany(
                    "INSERT INTO fjordgate_sink_offsets (job, partition, next_offset)"
                    " VALUES (%s, %s, %s) ON CONFLICT (job, partition)"
                    " DO UPDATE SET next_offset = EXCLUDED.next_offset",
                    marks,
                )

        self._retrying("commit a batch", commit)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
