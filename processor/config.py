"""Processor configuration, accepted under the names Flink operators already know.

A config file is a flat YAML mapping like Flink's `config.yaml`
(`state.backend.rocksdb.localdir: /var/lib/fjordgate/state`). Sizes take
Flink's forms (`64mb`, `1 gb`), durations too (`10 s`, `500 ms`, `1 min`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from processor.errors import ConfigError

_SIZE_UNITS = {
    "": 1, "b": 1, "bytes": 1,
    "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10,
    "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
    "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30,
}  # fmt: skip
_DURATION_UNITS = {
    "": 1, "ms": 1, "milli": 1, "millis": 1,
    "s": 1000, "sec": 1000, "secs": 1000, "second": 1000, "seconds": 1000,
    "min": 60_000, "m": 60_000, "minute": 60_000, "minutes": 60_000,
    "h": 3_600_000, "hour": 3_600_000, "hours": 3_600_000,
}  # fmt: skip
_QUANTITY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(value: Any, key: str) -> int:
    """Bytes from an int or a Flink memory size string (`64mb`)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    m = _QUANTITY.match(str(value))
    if m is None or m.group(2).lower() not in _SIZE_UNITS:
        raise ConfigError(f"{key}: {value!r} is not a memory size; write e.g. 64mb or 1gb")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])


def parse_duration_ms(value: Any, key: str) -> int:
    """Milliseconds from an int (ms) or a Flink duration string (`10 s`)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    m = _QUANTITY.match(str(value))
    if m is None or m.group(2).lower() not in _DURATION_UNITS:
        raise ConfigError(f"{key}: {value!r} is not a duration; write e.g. 500 ms, 10 s or 1 min")
    return int(float(m.group(1)) * _DURATION_UNITS[m.group(2).lower()])


def _parse_bool(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "yes", "1"):
        return True
    if str(value).lower() in ("false", "no", "0"):
        return False
    raise ConfigError(f"{key}: {value!r} is not a boolean; write true or false")


@dataclass(frozen=True, slots=True)
class ProcessorConfig:
    """Settings of one processor process; `from_mapping` takes Flink's key names."""

    localdir: Path = Path("fjordgate-state")
    write_buffer_size: int = 64 << 20
    thread_num: int = 2
    block_cache_size: int = 64 << 20
    incremental: bool = True
    checkpoint_interval_ms: int = 10_000
    checkpoints_retained: int = 3
    checkpoints_dir: Path | None = None
    batch_size: int = 10_000
    state_cache_entries: int = 2_000_000
    instance_id: str | None = None
    poll_timeout_ms: int = 100
    kafka: dict[str, str] = field(default_factory=dict)

    @property
    def checkpoint_root(self) -> Path:
        return self.checkpoints_dir or (self.localdir / "checkpoints")

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], *, source: str = "config") -> ProcessorConfig:
        values: dict[str, Any] = {}
        kafka: dict[str, str] = {}
        for key, value in raw.items():
            if key.startswith("kafka."):
                kafka[key[len("kafka.") :]] = str(value)
                continue
            spec = _KEYS.get(key)
            if spec is None:
                known = ", ".join(sorted(_KEYS))
                raise ConfigError(f"{source}: unknown key {key!r}; known keys: {known}, kafka.*")
            name, parse = spec
            values[name] = parse(value, key)
        values["kafka"] = kafka
        return cls(**values)

    @classmethod
    def load(cls, path: Path) -> ProcessorConfig:
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: cannot read the processor config: {exc}") from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping of Flink-style keys to values")
        return cls.from_mapping(raw, source=str(path))

    def with_overrides(self, **changes: Any) -> ProcessorConfig:
        current = {f.name: getattr(self, f.name) for f in fields(self)}
        current.update(changes)
        return ProcessorConfig(**current)


def _path(value: Any, key: str) -> Path:
    return Path(str(value)).expanduser()


def _int(value: Any, key: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: {value!r} is not an integer") from None
    if number < 1:
        raise ConfigError(f"{key}: must be at least 1, got {number}")
    return number


_KEYS: dict[str, tuple[str, Any]] = {
    "state.backend.rocksdb.localdir": ("localdir", _path),
    "state.backend.rocksdb.writebuffer.size": ("write_buffer_size", parse_size),
    "state.backend.rocksdb.thread.num": ("thread_num", _int),
    "state.backend.rocksdb.block.cache-size": ("block_cache_size", parse_size),
    "state.backend.incremental": ("incremental", _parse_bool),
    "execution.checkpointing.interval": ("checkpoint_interval_ms", parse_duration_ms),
    "state.checkpoints.num-retained": ("checkpoints_retained", _int),
    "state.checkpoints.dir": ("checkpoints_dir", _path),
    "fjordgate.processor.batch-size": ("batch_size", _int),
    "fjordgate.processor.state-cache-entries": ("state_cache_entries", _int),
    "fjordgate.processor.instance-id": ("instance_id", lambda v, k: str(v)),
    "fjordgate.processor.poll-timeout": ("poll_timeout_ms", parse_duration_ms),
}
