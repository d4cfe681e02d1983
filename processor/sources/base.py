"""The source interface: partitioned, offset-addressed records, polled in batches."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from processor.errors import JobDefinitionError


@dataclass(frozen=True, slots=True)
class PartitionBatch:
    """Consecutive records of one partition; `next_offset` is where reading resumes."""

    partition: int
    first_offset: int
    next_offset: int
    values: list[bytes]
    offsets: list[int] | None = None  # set when offsets have gaps (Kafka transactions)


#: Called with (assigned, revoked) partitions when a consumer group rebalances.
RebalanceListener = Callable[[list[int], list[int]], None]


class Source(ABC):
    """A partitioned input the runner positions by offset and polls in batches."""

    topic: str

    @abstractmethod
    def partitions(self) -> list[int]:
        """Every partition of the topic."""

    @abstractmethod
    def open(self, positions: Mapping[int, int]) -> None:
        """Start reading the given partitions at the given next offsets."""

    @abstractmethod
    def poll(self, max_records: int, timeout_s: float) -> list[PartitionBatch]: ...

    @abstractmethod
    def end_offsets(self) -> dict[int, int]:
        """The offset after the last record now in each partition."""

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def describe(self) -> str:
        """A destination-style address (for placement checks and audit records)."""

    def subscribe(self, listener: RebalanceListener) -> None:
        """Join a consumer group instead of `open`; only group-capable sources override."""
        raise JobDefinitionError(
            f"a {type(self).__name__} cannot join a consumer group: only a Kafka source can; "
            "use a kafka source or drop the job's consumer group"
        )

    def positions(self) -> dict[int, int]:
        """Next offsets per partition as the client knows them (empty if it does not)."""
        return {}

    def commit(self, positions: Mapping[int, int]) -> None:  # noqa: B027 - optional hook
        """Record the group's progress; sources without groups ignore it."""
