"""fjordgate ingress gateway: tags personal data, applies policy, audits, publishes."""

__version__ = "0.1.0"

from gateway.auth import ApiKey, ApiKeyStore, hash_api_key, new_api_key
from gateway.committer import Committer
from gateway.config import GatewayConfig
from gateway.demo import Demo, DemoResult
from gateway.errors import (
    BatchError,
    ConfigError,
    EventRejected,
    GatewayError,
    Overloaded,
    PlacementRefused,
    PublishError,
    Unavailable,
)
from gateway.http import GatewayApp
from gateway.idempotency import EventIdIndex
from gateway.ingest import BatchResult, Ingest
from gateway.kafka_ingress import KafkaIngress
from gateway.metrics import GatewayMetrics
from gateway.openapi import openapi_document
from gateway.pipeline import PiiTools, Pipeline, PolicyPipelines, Topics, build_pipeline
from gateway.publish import KafkaPublisher, LocalLogPublisher, Publisher
from gateway.record import EventRecord, Message, OutgoingMessage
from gateway.server import ServerThread
from gateway.service import Gateway, pii_tools
from gateway.steps import (
    Audit,
    DeadLetter,
    Decide,
    Identify,
    Parse,
    Publish,
    Step,
    Tag,
    Transform,
    Validate,
)
from gateway.synthetic import TrafficGenerator, synthetic_fodselsnummer

__all__ = [
    "ApiKey",
    "ApiKeyStore",
    "Audit",
    "BatchError",
    "BatchResult",
    "Committer",
    "ConfigError",
    "DeadLetter",
    "Decide",
    "Demo",
    "DemoResult",
    "EventIdIndex",
    "EventRecord",
    "EventRejected",
    "Gateway",
    "GatewayApp",
    "GatewayConfig",
    "GatewayError",
    "GatewayMetrics",
    "Identify",
    "Ingest",
    "KafkaIngress",
    "KafkaPublisher",
    "LocalLogPublisher",
    "Message",
    "OutgoingMessage",
    "Overloaded",
    "Parse",
    "PiiTools",
    "Pipeline",
    "PlacementRefused",
    "PolicyPipelines",
    "Publish",
    "PublishError",
    "Publisher",
    "ServerThread",
    "Step",
    "Tag",
    "Topics",
    "TrafficGenerator",
    "Transform",
    "Unavailable",
    "Validate",
    "__version__",
    "build_pipeline",
    "hash_api_key",
    "new_api_key",
    "openapi_document",
    "pii_tools",
    "synthetic_fodselsnummer",
]
