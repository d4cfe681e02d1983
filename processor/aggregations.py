"""Keyed window aggregations: built-in reducers and Flink-style aggregate functions.

Every aggregation is associative (it has `merge`), so the processor may
pre-aggregate a batch in memory before touching RocksDB, and sessions may merge.
Accumulators are encoded to bytes for the state store.
"""

from __future__ import annotations

import struct
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import orjson

from processor.errors import EventDecodeError

A = TypeVar("A")

_F64 = struct.Struct("<d")
_I64 = struct.Struct("<q")
_MEAN = struct.Struct("<dq")


class Aggregation(ABC, Generic[A]):
    """An associative aggregation of one value per event into an accumulator `A`."""

    #: The event field read as this aggregation's input, or None for the whole event.
    field: str | None = None
    #: Name of the result column (sinks use it).
    name: str = "value"

    def extract(self, event: dict[str, Any]) -> Any:
        if self.field is None:
            return event
        try:
            return event[self.field]
        except (KeyError, TypeError):
            raise EventDecodeError(f"event has no field {self.field!r}") from None

    @abstractmethod
    def create(self, value: Any) -> A: ...

    @abstractmethod
    def add(self, acc: A, value: Any) -> A: ...

    @abstractmethod
    def merge(self, a: A, b: A) -> A: ...

    def result(self, acc: A) -> Any:
        return acc

    def encode(self, acc: A) -> bytes:
        return orjson.dumps(acc)

    def decode(self, raw: bytes) -> A:
        value: A = orjson.loads(raw)
        return value


def _number(value: Any) -> float:
    if type(value) is float or type(value) is int:
        return value
    raise EventDecodeError("aggregated field is not a number")


class Max(Aggregation[float]):
    """The largest value of a numeric field (the seed job's maximum speed)."""

    def __init__(self, field: str) -> None:
        self.field = field
        self.name = f"max_{field}"

    def create(self, value: Any) -> float:
        return _number(value)

    def add(self, acc: float, value: Any) -> float:
        v = _number(value)
        return v if v > acc else acc

    def merge(self, a: float, b: float) -> float:
        return b if b > a else a

    def encode(self, acc: float) -> bytes:
        return _F64.pack(acc)

    def decode(self, raw: bytes) -> float:
        return float(_F64.unpack(raw)[0])


class Min(Aggregation[float]):
    """The smallest value of a numeric field."""

    def __init__(self, field: str) -> None:
        self.field = field
        self.name = f"min_{field}"

    def create(self, value: Any) -> float:
        return _number(value)

    def add(self, acc: float, value: Any) -> float:
        v = _number(value)
        return v if v < acc else acc

    def merge(self, a: float, b: float) -> float:
        return b if b < a else a

    def encode(self, acc: float) -> bytes:
        return _F64.pack(acc)

    def decode(self, raw: bytes) -> float:
        return float(_F64.unpack(raw)[0])


class Sum(Aggregation[float]):
    """The sum of a numeric field."""

    def __init__(self, field: str) -> None:
        self.field = field
        self.name = f"sum_{field}"

    def create(self, value: Any) -> float:
        return _number(value)

    def add(self, acc: float, value: Any) -> float:
        return acc + _number(value)

    def merge(self, a: float, b: float) -> float:
        return a + b

    def encode(self, acc: float) -> bytes:
        return _F64.pack(acc)

    def decode(self, raw: bytes) -> float:
        return float(_F64.unpack(raw)[0])


class Count(Aggregation[int]):
    """The number of events."""

    def __init__(self) -> None:
        self.field = None
        self.name = "count"

    def extract(self, event: dict[str, Any]) -> Any:
        return 1

    def create(self, value: Any) -> int:
        return 1

    def add(self, acc: int, value: Any) -> int:
        return acc + 1

    def merge(self, a: int, b: int) -> int:
        return a + b

    def encode(self, acc: int) -> bytes:
        return _I64.pack(acc)

    def decode(self, raw: bytes) -> int:
        return int(_I64.unpack(raw)[0])


class Mean(Aggregation[tuple[float, int]]):
    """The arithmetic mean of a numeric field."""

    def __init__(self, field: str) -> None:
        self.field = field
        self.name = f"mean_{field}"

    def create(self, value: Any) -> tuple[float, int]:
        return (_number(value), 1)

    def add(self, acc: tuple[float, int], value: Any) -> tuple[float, int]:
        return (acc[0] + _number(value), acc[1] + 1)

    def merge(self, a: tuple[float, int], b: tuple[float, int]) -> tuple[float, int]:
        return (a[0] + b[0], a[1] + b[1])

    def result(self, acc: tuple[float, int]) -> float:
        return acc[0] / acc[1]

    def encode(self, acc: tuple[float, int]) -> bytes:
        return _MEAN.pack(acc[0], acc[1])

    def decode(self, raw: bytes) -> tuple[float, int]:
        total, count = _MEAN.unpack(raw)
        return (float(total), int(count))


class Reduce(Aggregation[Any]):
    """A user reduce function `(a, b) -> c` over one field; it must be associative."""

    def __init__(
        self, fn: Callable[[Any, Any], Any], field: str | None, name: str = "value"
    ) -> None:
        self.fn = fn
        self.field = field
        self.name = name

    def create(self, value: Any) -> Any:
        return value

    def add(self, acc: Any, value: Any) -> Any:
        return self.fn(acc, value)

    def merge(self, a: Any, b: Any) -> Any:
        return self.fn(a, b)


class Aggregate(Aggregation[Any]):
    """Flink's AggregateFunction: create/add/merge/result over JSON-able accumulators."""

    def __init__(
        self,
        *,
        create: Callable[[], Any],
        add: Callable[[Any, Any], Any],
        merge: Callable[[Any, Any], Any],
        result: Callable[[Any], Any] = lambda acc: acc,
        field: str | None = None,
        name: str = "value",
    ) -> None:
        self._create = create
        self._add = add
        self._merge = merge
        self._result = result
        self.field = field
        self.name = name

    def create(self, value: Any) -> Any:
        return self._add(self._create(), value)

    def add(self, acc: Any, value: Any) -> Any:
        return self._add(acc, value)

    def merge(self, a: Any, b: Any) -> Any:
        return self._merge(a, b)

    def result(self, acc: Any) -> Any:
        return self._result(acc)
