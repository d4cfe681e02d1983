"""Prometheus metrics of one gateway: events by outcome, latencies, audit fsync, Kafka errors.

Each gateway owns its registry, so several gateways (tests, the demo) can live
in one process without colliding on metric names.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class GatewayMetrics:
    """The gateway's metric families, registered in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.events = Counter(
            "fjordgate_events",
            "Events handled, by stream, source and outcome "
            "(accepted, duplicate, rejected, denied, unavailable).",
            ["stream", "source", "outcome"],
            registry=self.registry,
        )
        self.requests = Counter(
            "fjordgate_http_requests",
            "HTTP requests by route and status code.",
            ["route", "status"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "fjordgate_http_request_seconds",
            "Time from request start to response, by route.",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.pipeline_seconds = Histogram(
            "fjordgate_pipeline_seconds",
            "Time spent in the pipeline steps for one batch (parse to publish staging).",
            ["source"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.commit_seconds = Histogram(
            "fjordgate_commit_seconds",
            "Time of one group commit: audit append plus publish.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.audit_fsync_seconds = Histogram(
            "fjordgate_audit_fsync_seconds",
            "Time of one durable audit append (group commit, fsync included).",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.publish_seconds = Histogram(
            "fjordgate_publish_seconds",
            "Time until the publisher holds a group durably (Kafka ack or local fsync).",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.kafka_delivery_errors = Counter(
            "fjordgate_kafka_delivery_errors",
            "Kafka delivery or transaction errors, by kind.",
            ["kind"],
            registry=self.registry,
        )
        self.audit_errors = Counter(
            "fjordgate_audit_errors",
            "Audit appends that failed (the events were answered 503).",
            registry=self.registry,
        )
        self.queue_events = Gauge(
            "fjordgate_commit_queue_events",
            "Events waiting for the committer.",
            registry=self.registry,
        )
        self.policy_reloads = Counter(
            "fjordgate_policy_reloads",
            "Policy reload attempts by result (loaded, rejected).",
            ["result"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        """The text exposition format of every metric in this registry."""
        return generate_latest(self.registry)
