"""Benchmark of the location package (python -m bench.location)."""
