"""Benchmarks of the audit log: durable appends against the raw write + fsync floor, verify."""
