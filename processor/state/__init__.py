"""Keyed state of the processor: the store interface and its RocksDB implementation."""

from processor.state.base import PartitionState, StateBackend, StateBatch
from processor.state.rocksdb import RocksDBStateBackend

__all__ = ["PartitionState", "RocksDBStateBackend", "StateBackend", "StateBatch"]
