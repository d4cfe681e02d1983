"""A JSON Lines file sink: results, then a commit line with offsets, fsynced per batch.

On open, anything after the last commit line (a batch cut by a crash) is
truncated, so the file only ever holds committed batches. Readers take the
last line per (window, key) as the result; `retract` lines delete one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import orjson

from processor.errors import SinkError
from processor.operators.base import WindowResult
from processor.sinks.base import ResultColumns, Sink, iso_ms

_COMMIT = b'{"_commit":'


class JsonlSink(Sink):
    """Appends results to one file; a commit line closes every batch."""

    kind = "jsonl"

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        self._committed: dict[int, int] | None = None
        self._columns = ResultColumns()

    def destination(self) -> str:
        return f"file://{self.path.resolve()}"

    def open(self, job: str, columns: ResultColumns) -> None:
        self._columns = columns
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            self._cut_uncommitted_tail()
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        except OSError as exc:
            raise SinkError(f"cannot open JSONL sink {self.path}: {exc}") from exc

    def _cut_uncommitted_tail(self) -> None:
        data = self.path.read_bytes()
        keep = 0
        search_end = len(data)
        while search_end > 0:
            at = data.rfind(b"\n" + _COMMIT, 0, search_end)
            start = at + 1 if at >= 0 else (0 if data.startswith(_COMMIT) else -1)
            if start < 0:
                break
            line_end = data.find(b"\n", start)
            if line_end >= 0:
                try:
                    commit = orjson.loads(data[start:line_end])
                except orjson.JSONDecodeError:
                    commit = None
                if commit is not None:
                    keep = line_end + 1
                    self._committed = {int(p): int(o) for p, o in commit["_commit"].items()}
                    break
            # A torn commit line does not count; look for the one before it.
            search_end = max(start - 1, 0)
            if start == 0:
                break
        if keep < len(data):
            with self.path.open("r+b") as f:
                f.truncate(keep)
                os.fsync(f.fileno())

    def committed_offsets(self) -> dict[int, int] | None:
        return None if self._committed is None else dict(self._committed)

    def write(self, results: Sequence[WindowResult], offsets: Mapping[int, int]) -> None:
        assert self._fd is not None, "open() the sink first"
        kc, vc = self._columns.key, self._columns.value
        lines = []
        for r in results:
            row: dict[str, object] = {
                "window_start": iso_ms(r.window_start),
                "window_end": iso_ms(r.window_end),
                kc: r.key,
            }
            if r.retract:
                row["retract"] = True
            else:
                row[vc] = r.value
            lines.append(orjson.dumps(row))
        lines.append(orjson.dumps({"_commit": {str(p): o for p, o in sorted(offsets.items())}}))
        os.write(self._fd, b"\n".join(lines) + b"\n")
        os.fdatasync(self._fd)
        self._committed = dict(offsets)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def read_jsonl_results(path: Path, key_column: str = "key") -> dict[tuple[str, str, str], object]:
    """The final result per (window_start, window_end, key) of a JSONL sink file."""
    out: dict[tuple[str, str, str], object] = {}
    value_column: str | None = None
    for line in path.read_bytes().splitlines():
        row = orjson.loads(line)
        if "_commit" in row:
            continue
        ident = (row["window_start"], row["window_end"], row[key_column])
        if row.get("retract"):
            out.pop(ident, None)
            continue
        if value_column is None:
            value_column = next(
                c for c in row if c not in ("window_start", "window_end", key_column)
            )
        out[ident] = row[value_column]
    return out
