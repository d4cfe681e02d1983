"""The co-located windowing processor: event-time windows over RocksDB state."""

__all__: list[str] = []
