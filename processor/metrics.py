"""Prometheus metrics of the processor, labelled by job (exported by whoever serves /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS = Counter("fjordgate_processor_events_total", "Input events read", ["job"])
SIDE_OUTPUT = Counter(
    "fjordgate_processor_side_output_events_total",
    "Events not counted in any window (too late, undecodable), sent to the side output",
    ["job", "reason"],
)
RESULTS = Counter(
    "fjordgate_processor_results_total", "Window results written to the sink", ["job"]
)
WATERMARK = Gauge("fjordgate_processor_watermark_ms", "Current event-time watermark", ["job"])
CHECKPOINTS = Counter("fjordgate_processor_checkpoints_total", "Checkpoints completed", ["job"])
CHECKPOINT_SECONDS = Histogram(
    "fjordgate_processor_checkpoint_seconds", "Time to flush state and write a checkpoint", ["job"]
)
