"""RocksDB state through rocksdict: one database per partition, one column family per operator.

Options come from `ProcessorConfig` (Flink's `state.backend.rocksdb.*` names);
one block cache is shared by every partition of the process so memory stays
bounded as partitions are added.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from rocksdict import (
    BlockBasedOptions,
    Cache,
    Checkpoint,
    ColumnFamily,
    Options,
    Rdict,
    ReadOptions,
    WriteBatch,
    WriteOptions,
)

from processor.config import ProcessorConfig
from processor.errors import StateError
from processor.state.base import PartitionState, StateBackend, StateBatch

_META_PREFIX = b"\x00meta:"


class _RocksDBBatch(StateBatch):
    def __init__(self, handles: dict[str, ColumnFamily]) -> None:
        self._batch = WriteBatch(raw_mode=True)
        self._handles = handles
        self._count = 0

    def _handle(self, column: str) -> ColumnFamily:
        try:
            return self._handles[column]
        except KeyError:
            raise StateError(f"no state column {column!r} in this job") from None

    def put(self, column: str, key: bytes, value: bytes) -> None:
        self._batch.put(key, value, self._handle(column))
        self._count += 1

    def put_many(self, column: str, items: Iterable[tuple[bytes, bytes]]) -> None:
        handle = self._handle(column)
        put = self._batch.put
        count = 0
        for key, value in items:
            put(key, value, handle)
            count += 1
        self._count += count

    def delete(self, column: str, key: bytes) -> None:
        self._batch.delete(key, self._handle(column))
        self._count += 1

    def delete_range(self, column: str, lo: bytes, hi: bytes) -> None:
        self._batch.delete_range(lo, hi, self._handle(column))
        self._count += 1

    def put_meta(self, key: str, value: bytes) -> None:
        self._batch.put(_META_PREFIX + key.encode(), value)
        self._count += 1

    def __len__(self) -> int:
        return self._count

    @property
    def raw(self) -> WriteBatch:
        return self._batch


class RocksDBPartitionState(PartitionState):
    """One partition's RocksDB database; columns are column families."""

    def __init__(self, partition: int, path: Path, options: Options, columns: Sequence[str]):
        self.partition = partition
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = Rdict(str(path), options, column_families={c: options for c in columns})
        except Exception as exc:  # rocksdict raises plain Exception for I/O and corruption
            raise StateError(f"cannot open RocksDB state at {path}: {exc}") from exc
        self._columns = {c: self._db.get_column_family(c) for c in columns}
        self._handles: dict[str, ColumnFamily] = {
            c: self._db.get_column_family_handle(c) for c in columns
        }
        # No write-ahead log: recovery always starts from a checkpoint (which
        # flushes the memtables into SST files), never from the live database,
        # so a WAL would only double every write.
        self._write_opts = WriteOptions()
        # rocksdict's stub declares a method; at run time it is a property.
        self._write_opts.disable_wal = True  # type: ignore[method-assign,assignment]

    def get_many(self, column: str, keys: Sequence[bytes]) -> list[bytes | None]:
        if not keys:
            return []
        values = self._columns[column].get(list(keys))
        assert isinstance(values, list)
        return values

    def get(self, column: str, key: bytes) -> bytes | None:
        value: bytes | None = self._columns[column].get(key)
        return value

    def scan(self, column: str, lo: bytes, hi: bytes | None) -> Iterator[tuple[bytes, bytes]]:
        opts = ReadOptions()
        if hi is not None:
            opts.set_iterate_upper_bound(hi)
        it = self._columns[column].iter(opts)
        it.seek(lo)
        while it.valid():
            yield it.key(), it.value()
            it.next()

    def new_batch(self) -> StateBatch:
        return _RocksDBBatch(self._handles)

    def commit(self, batch: StateBatch) -> None:
        assert isinstance(batch, _RocksDBBatch)
        if len(batch):
            self._db.write(batch.raw, self._write_opts)

    def get_meta(self, key: str) -> bytes | None:
        value: bytes | None = self._db.get(_META_PREFIX + key.encode())
        return value

    def checkpoint(self, destination: Path) -> None:
        try:
            Checkpoint(self._db).create_checkpoint(str(destination))
        except Exception as exc:
            raise StateError(f"cannot checkpoint RocksDB state {self.path}: {exc}") from exc

    def close(self) -> None:
        self._db.close()


class RocksDBStateBackend(StateBackend):
    """Per-partition RocksDB databases under `<localdir>/<job>/p<partition>`."""

    def __init__(self, config: ProcessorConfig, job_name: str) -> None:
        self.root = config.localdir / job_name
        self.config = config
        self._cache = Cache(config.block_cache_size)
        self._open: dict[int, RocksDBPartitionState] = {}

    def options(self) -> Options:
        opts = Options(raw_mode=True)
        opts.create_if_missing(True)
        opts.create_missing_column_families(True)
        opts.increase_parallelism(self.config.thread_num)
        opts.set_max_background_jobs(self.config.thread_num)
        opts.set_write_buffer_size(self.config.write_buffer_size)
        table = BlockBasedOptions()
        table.set_block_cache(self._cache)
        table.set_bloom_filter(10, False)
        opts.set_block_based_table_factory(table)
        return opts

    def partition_path(self, partition: int) -> Path:
        return self.root / f"p{partition}"

    def open_partition(self, partition: int, columns: Sequence[str]) -> PartitionState:
        state = RocksDBPartitionState(
            partition, self.partition_path(partition), self.options(), columns
        )
        self._open[partition] = state
        return state

    def restore_partition(self, partition: int, snapshot: Path) -> None:
        target = self.partition_path(partition)
        self.drop_partition(partition)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".restoring")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for item in snapshot.iterdir():
            # SST files are immutable: a hard link restores them without copying.
            if item.suffix == ".sst":
                try:
                    os.link(item, tmp / item.name)
                    continue
                except OSError:
                    pass
            shutil.copy2(item, tmp / item.name)
        tmp.replace(target)

    def drop_partition(self, partition: int) -> None:
        state = self._open.pop(partition, None)
        if state is not None:
            state.close()
        shutil.rmtree(self.partition_path(partition), ignore_errors=True)

    def close_partition(self, partition: int) -> None:
        state = self._open.pop(partition, None)
        if state is not None:
            state.close()

    def close(self) -> None:
        for state in self._open.values():
            state.close()
        self._open.clear()
