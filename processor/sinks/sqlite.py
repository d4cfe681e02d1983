"""The embedded demo's sink: a SQLite table upserted per batch, offsets in the same transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path

import orjson

from processor.errors import SinkError
from processor.operators.base import WindowResult
from processor.sinks.base import ResultColumns, Sink, iso_ms

_TYPES = {"float": "REAL", "int": "INTEGER", "json": "TEXT"}


def _ident(name: str) -> str:
    if not name.replace("_", "").isalnum():
        raise SinkError(f"{name!r} is not a valid column or table name; use letters, digits, _")
    return f'"{name}"'


class SqliteSink(Sink):
    """Upserts results keyed by (window_start, window_end, key) into a SQLite table."""

    kind = "sqlite"

    def __init__(self, path: Path | str, table: str) -> None:
        self.path = Path(path)
        self.table = table
        self._conn: sqlite3.Connection | None = None
        self._job = ""
        self._columns = ResultColumns()

    def destination(self) -> str:
        return f"file://{self.path.resolve()}"

    def open(self, job: str, columns: ResultColumns) -> None:
        self._job = job
        self._columns = columns
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        t, k, v = _ident(self.table), _ident(columns.key), _ident(columns.value)
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {t} (window_start TEXT NOT NULL, window_end TEXT NOT NULL,"
            f" {k} TEXT NOT NULL, {v} {_TYPES[columns.value_type]},"
            f" PRIMARY KEY (window_start, window_end, {k}))"
        )
        conn.execute(
            "CREATE TABLE IF NOT EXISTS fjordgate_sink_offsets (job TEXT NOT NULL,"
            " partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,"
            " PRIMARY KEY (job, partition))"
        )
        self._conn = conn

    def committed_offsets(self) -> dict[int, int] | None:
        assert self._conn is not None
        rows = self._conn.execute(
            "SELECT partition, next_offset FROM fjordgate_sink_offsets WHERE job = ?", (self._job,)
        ).fetchall()
        return {int(p): int(o) for p, o in rows} if rows else None

    def write(self, results: Sequence[WindowResult], offsets: Mapping[int, int]) -> None:
        conn = self._conn
        assert conn is not None, "open() the sink first"
        t, k, v = _ident(self.table), _ident(self._columns.key), _ident(self._columns.value)
        as_json = self._columns.value_type == "json"
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Rows are applied in order, so a retraction followed by an upsert works.
            for r in results:
                if r.retract:
                    conn.execute(
                        f"DELETE FROM {t} WHERE window_start = ? AND window_end = ? AND {k} = ?",
                        (iso_ms(r.window_start), iso_ms(r.window_end), r.key),
                    )
                else:
                    conn.execute(
                        f"INSERT INTO {t} (window_start, window_end, {k}, {v})"
                        f" VALUES (?, ?, ?, ?) ON CONFLICT (window_start, window_end, {k})"
                        f" DO UPDATE SET {v} = excluded.{v}",
                        (
                            iso_ms(r.window_start),
                            iso_ms(r.window_end),
                            r.key,
                            orjson.dumps(r.value).decode() if as_json else r.value,
                        ),
                    )
            conn.executemany(
                "INSERT INTO fjordgate_sink_offsets (job, partition, next_offset) VALUES (?, ?, ?)"
                " ON CONFLICT (job, partition) DO UPDATE SET next_offset = excluded.next_offset",
                [(self._job, p, o) for p, o in offsets.items()],
            )
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            conn.execute("ROLLBACK")
            raise SinkError(f"SQLite sink {self.path} could not commit a batch: {exc}") from exc

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
