"""Benchmark of the windowing processor against Quix Streams, PyFlink and a raw-consumer floor."""
