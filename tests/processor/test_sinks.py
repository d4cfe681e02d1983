"""Sinks: upserts keyed by (window, key), retractions delete, offsets in the same commit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from processor import JsonlSink, PostgresSink, ResultColumns, Sink, SqliteSink, WindowResult
from processor.sinks.base import iso_ms
from processor.sinks.jsonl import read_jsonl_results

COLUMNS = ResultColumns(key="region", value="max_speed", value_type="float")
BATCHES = [
    ([WindowResult(0, 60_000, "oslo", 80.0), WindowResult(0, 60_000, "bergen", 70.0)], {0: 10}),
    ([WindowResult(0, 60_000, "oslo", 95.5)], {0: 20, 1: 3}),  # a late update replaces
    ([WindowResult(0, 60_000, "bergen", None, retract=True)], {0: 25, 1: 3}),
]
FINAL = {(0, 60_000, "oslo"): 95.5}


def write_all(sink: Sink) -> None:
    sink.open("sink-test", COLUMNS)
    assert sink.committed_offsets() is None
    for results, offsets in BATCHES:
        sink.write(results, offsets)
    assert sink.committed_offsets() == {0: 25, 1: 3}
    sink.close()


def test_sqlite_sink_upserts_retracts_and_keeps_offsets(tmp_path: Path) -> None:
    import sqlite3

    write_all(SqliteSink(tmp_path / "out.db", "max_speed"))
    with sqlite3.connect(tmp_path / "out.db") as conn:
        rows = conn.execute("SELECT window_start, window_end, region, max_speed FROM max_speed")
        got = {(s, e, r): v for s, e, r, v in rows}
    assert got == {(iso_ms(s), iso_ms(e), k): v for (s, e, k), v in FINAL.items()}
    reopened = SqliteSink(tmp_path / "out.db", "max_speed")
    reopened.open("sink-test", COLUMNS)
    assert reopened.committed_offsets() == {0: 25, 1: 3}
    reopened.close()


def test_jsonl_sink_cuts_a_batch_torn_by_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    write_all(JsonlSink(path))
    with path.open("ab") as f:
        f.write(b'{"window_start":"1970-01-01T00:00:00.000Z","window_end":"1970-01-01T00:01')
    sink = JsonlSink(path)
    sink.open("sink-test", COLUMNS)
    assert sink.committed_offsets() == {0: 25, 1: 3}
    sink.close()
    got = read_jsonl_results(path, "region")
    assert got == {(iso_ms(s), iso_ms(e), k): v for (s, e, k), v in FINAL.items()}


@pytest.mark.postgres
def test_postgres_sink_upserts_retracts_and_keeps_offsets(postgres_dsn: str) -> None:
    import psycopg

    write_all(PostgresSink(postgres_dsn, "max_speed"))
    with psycopg.connect(postgres_dsn) as conn:
        rows: list[Any] = conn.execute(
            "SELECT (extract(epoch from window_start) * 1000)::bigint,"
            " (extract(epoch from window_end) * 1000)::bigint, region, max_speed FROM max_speed"
        ).fetchall()
    assert {(int(s), int(e), r): v for s, e, r, v in rows} == FINAL
    again = PostgresSink(postgres_dsn, "max_speed")
    again.open("sink-test", COLUMNS)
    assert again.committed_offsets() == {0: 25, 1: 3}
    again.close()
