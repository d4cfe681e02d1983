"""Checkpoints: a RocksDB checkpoint per partition plus the source offsets and
watermarks they reflect, written atomically (in-progress directory, then rename),
retained N, and restored on start.

Layout: `<root>/chk-000042/p<partition>/` (RocksDB) and `<root>/chk-000042/_metadata.json`.
With `state.backend.incremental` the checkpoint shares unchanged SST files with
the live database through hard links; without it every file is copied.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from processor.errors import CheckpointError
from processor.state.base import PartitionState

_META = "_metadata.json"
_PREFIX = "chk-"


@dataclass(frozen=True, slots=True)
class CheckpointInfo:
    """A completed checkpoint: where it is and the position it reflects."""

    id: int
    path: Path
    created_ms: int
    job: str
    offsets: dict[int, int]
    watermark: int
    partition_max: dict[int, int]
    size_bytes: int

    def partition_path(self, partition: int) -> Path:
        return self.path / f"p{partition}"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


class CheckpointStore:
    """The checkpoints of one job in one directory."""

    def __init__(self, root: Path, *, retained: int = 3, incremental: bool = True) -> None:
        self.root = root
        self.retained = max(1, retained)
        self.incremental = incremental

    def list(self) -> list[CheckpointInfo]:
        if not self.root.exists():
            return []
        out = []
        for d in sorted(self.root.glob(f"{_PREFIX}*")):
            meta = d / _META
            if d.suffix == ".inprogress" or not meta.exists():
                continue
            try:
                out.append(self._read(d))
            except (OSError, ValueError, KeyError) as exc:
                raise CheckpointError(
                    f"checkpoint {d} has unreadable metadata ({exc}); delete that directory"
                ) from exc
        return sorted(out, key=lambda c: c.id)

    def _read(self, d: Path) -> CheckpointInfo:
        raw = json.loads((d / _META).read_text())
        return CheckpointInfo(
            id=int(raw["id"]),
            path=d,
            created_ms=int(raw["created_ms"]),
            job=str(raw["job"]),
            offsets={int(p): int(o) for p, o in raw["offsets"].items()},
            watermark=int(raw["watermark"]),
            partition_max={int(p): int(t) for p, t in raw["partition_max"].items()},
            size_bytes=int(raw.get("size_bytes", 0)),
        )

    def latest(self) -> CheckpointInfo | None:
        found = self.list()
        return found[-1] if found else None

    def write(
        self,
        job: str,
        states: Mapping[int, PartitionState],
        *,
        offsets: Mapping[int, int],
        watermark: int,
        partition_max: Mapping[int, int],
        extra: Mapping[str, Any] | None = None,
    ) -> CheckpointInfo:
        """Snapshot every partition's state with the position it reflects."""
        self.root.mkdir(parents=True, exist_ok=True)
        latest = self.latest()
        next_id = (latest.id if latest else 0) + 1
        final = self.root / f"{_PREFIX}{next_id:06d}"
        tmp = final.with_name(final.name + ".inprogress")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for p, state in sorted(states.items()):
            target = tmp / f"p{p}"
            if self.incremental:
                state.checkpoint(target)
            else:
                linked = tmp / f".p{p}.linked"
                state.checkpoint(linked)
                # A full checkpoint owns its bytes: copy instead of sharing SST files.
                shutil.copytree(linked, target, copy_function=shutil.copy2)
                shutil.rmtree(linked)
        meta = {
            "id": next_id,
            "job": job,
            "created_ms": int(time.time() * 1000),
            "offsets": {str(p): o for p, o in sorted(offsets.items())},
            "watermark": watermark,
            "partition_max": {str(p): t for p, t in sorted(partition_max.items())},
            "incremental": self.incremental,
            "size_bytes": _dir_size(tmp),
            **(extra or {}),
        }
        with (tmp / _META).open("w") as f:
            json.dump(meta, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(tmp)
        tmp.replace(final)
        _fsync_dir(self.root)
        self._retain()
        return self._read(final)

    def _retain(self) -> None:
        for old in self.list()[: -self.retained]:
            shutil.rmtree(old.path, ignore_errors=True)
        for stale in self.root.glob(f"{_PREFIX}*.inprogress"):
            shutil.rmtree(stale, ignore_errors=True)
