"""One gateway, assembled: policy in force (hot reloaded), PII tools, audit log,
publisher, event-id index, committer, ingestion and the HTTP app.

Both `fjordgate gateway serve` (Kafka) and `fjordgate demo` (local log) build
a `Gateway`; they differ only in the publisher they hand it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog

from gateway import native
from gateway.auth import ApiKey, ApiKeyStore
from gateway.committer import AuditSink, Committer
from gateway.http import GatewayApp
from gateway.ingest import Ingest
from gateway.logs import mark_personal
from gateway.metrics import GatewayMetrics
from gateway.openapi import openapi_document
from gateway.pii import Detector, FieldCipher, Keyring, Pseudonymiser, redact
from gateway.pipeline import PiiTools, PolicyPipelines, Topics
from gateway.publish import Publisher
from policies import Policy, PolicyEngine, PolicyIssue, PolicyWatcher

log = structlog.get_logger(__name__)


def pii_tools(keyring: Keyring, detector: Detector | None = None) -> PiiTools:
    """The PII tools for a keyring: one pseudonymiser per key id, made on first use."""
    tokenisers: dict[str | None, Pseudonymiser] = {}
    lock = threading.Lock()

    def tokeniser(key_id: str | None) -> Pseudonymiser:
        found = tokenisers.get(key_id)
        if found is None:
            with lock:
                found = tokenisers.get(key_id)
                if found is None:
                    found = tokenisers[key_id] = Pseudonymiser(keyring, key_id=key_id)
        return found

    return PiiTools(
        detector=detector or Detector(),
        tokenisers=tokeniser,
        cipher=FieldCipher(keyring),
        redactor=redact,
    )


def personal_field_names(policy: Policy) -> set[str]:
    """Last path parts of every declared field with a PII class: scrubbed from log lines."""
    names: set[str] = set()
    for stream in policy.streams.values():
        for path, rule in stream.fields.items():
            if rule.pii != "none":
                names.add(path.rsplit(".", 1)[-1])
    return names


class Gateway:
    """The gateway's parts, wired; `start` and `stop` bracket its life."""

    def __init__(
        self,
        *,
        policy_path: Path,
        keyring: Keyring,
        audit: AuditSink,
        publisher: Publisher,
        destination: str | None,
        lanes: Sequence[Publisher] = (),
        egress_per_event: bool = True,
        topics: Topics | None = None,
        api_keys: Iterable[ApiKey] = (),
        event_id_field: str = "event_id",
        max_pending_events: int = 50_000,
        max_group_events: int = 10_000,
        retry_after_s: int = 1,
        index_capacity: int = 2_000_000,
        max_body_bytes: int = 8 * 1024 * 1024,
        max_events_per_batch: int = 10_000,
        reload_interval_s: float = 2.0,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.metrics = metrics or GatewayMetrics()
        self.audit = audit
        self.publisher = publisher
        # More publishers to the same destination commit groups at once (committer lanes).
        self.publishers = [publisher, *lanes]
        self.destination = destination
        self.egress_per_event = egress_per_event
        self.topics = topics or Topics()
        self.event_id_field = event_id_field
        self.max_events_per_batch = max_events_per_batch
        self.tools = pii_tools(keyring)
        self.keys = ApiKeyStore(api_keys)
        self.index = native.event_id_index(index_capacity)
        self.committer = Committer(
            audit,
            self.publishers,
            self.index,
            self.metrics,
            max_pending_events=max_pending_events,
            max_group_events=max_group_events,
            retry_after_s=retry_after_s,
        )
        self._openapi: dict[str, Any] | None = None
        # More readiness checks by name (Kafka ingress adds its own).
        self.extra_checks: dict[str, Callable[[], bool]] = {}
        self.ingest: Ingest | None = None
        # Loads the policy now (PolicyLoadError if bad: there is nothing to fall back on)
        # and calls _policy_loaded for it.
        self.watcher = PolicyWatcher(
            policy_path,
            on_loaded=self._policy_loaded,
            on_rejected=self._policy_rejected,
            interval_s=reload_interval_s,
        )
        assert self.ingest is not None
        self.app: GatewayApp = GatewayApp(
            self.ingest,
            self.keys,
            self.metrics,
            openapi=self.openapi,
            ready=self.readiness,
            max_body_bytes=max_body_bytes,
        )

    # -- policy ---------------------------------------------------------------------------

    @property
    def policy(self) -> Policy:
        return self.watcher.policy

    def pipelines_for(self, policy: Policy, source: str = "http") -> PolicyPipelines:
        return PolicyPipelines.build(
            policy,
            PolicyEngine(policy),
            self.tools,
            topics=self.topics,
            destination=self.destination,
            egress_per_event=self.egress_per_event,
            source=source,
            event_id_field=self.event_id_field,
        )

    def _policy_loaded(self, policy: Policy) -> None:
        pipelines = self.pipelines_for(policy)
        mark_personal(personal_field_names(policy))
        self._audit_now(
            {
                "type": "policy_loaded",
                "policy_hash": policy.content_hash,
                "name": policy.metadata.name,
                "version": policy.metadata.version,
                "mode": policy.mode,
                "streams": sorted(policy.streams),
            }
        )
        self._openapi = None
        if self.ingest is None:
            self.ingest = Ingest(
                pipelines,
                self.committer,
                self.metrics,
                max_events_per_batch=self.max_events_per_batch,
            )
        else:
            self.ingest.pipelines = pipelines  # one assignment: requests see old or new
        self.metrics.policy_reloads.labels("loaded").inc()
        log.info("policy_in_force", policy_hash=policy.content_hash, mode=policy.mode)

    def _policy_rejected(self, path: str, issues: list[PolicyIssue]) -> None:
        self._audit_now(
            {
                "type": "policy_rejected",
                "path": path,
                "kept_policy_hash": self.watcher.policy.content_hash,
                "issues": [
                    {"line": i.line, "col": i.col, "message": i.message} for i in issues[:50]
                ],
            }
        )
        self.metrics.policy_reloads.labels("rejected").inc()

    def _audit_now(self, record: Mapping[str, Any]) -> None:
        self.audit.append_many([record])

    def openapi(self) -> dict[str, Any]:
        if self._openapi is None:
            self._openapi = openapi_document(
                self.policy,
                event_id_field=self.event_id_field,
                max_items=self.max_events_per_batch,
            )
        return self._openapi

    # -- life -----------------------------------------------------------------------------

    def readiness(self) -> dict[str, bool]:
        return {
            "policy": self.ingest is not None,
            "audit": self.committer.audit_ok,
            "publisher": all(p.ready() for p in self.publishers),
            "placement": self.committer.refusing is None,
            **{name: check() for name, check in self.extra_checks.items()},
        }

    def start(self, *, watch_policy: bool = True) -> None:
        """Rebuild the event-id index, start committing, and watch the policy file."""
        self.committer.start()
        if watch_policy:
            self.watcher.start()

    def stop(self) -> None:
        self.watcher.stop()
        self.committer.stop()

    def audit_records(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Append operational records (placement, egress, recovery) durably."""
        self.audit.append_many(records)
