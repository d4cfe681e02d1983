"""`fjordgate gateway serve --config FILE`: the production gateway, Kafka-backed.

Start order matters: placement checks first (refuse to start in `enforce`
mode when they fail, after auditing why), then the audit log, keyring, the
transactional producer (fencing any crashed predecessor), the event-id index
rebuilt from the tagged topics' committed tail, and only then the HTTP port.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
import uvicorn

from audit import AuditLog, SigningKey
from gateway.auth import ApiKey
from gateway.config import GatewayConfig
from gateway.errors import ConfigError, PlacementRefused, PublishError
from gateway.kafka_ingress import KafkaIngress
from gateway.metrics import GatewayMetrics
from gateway.pii import Keyring
from gateway.pipeline import PolicyPipelines, Topics
from gateway.publish import KafkaPublisher, ensure_topics
from gateway.server import tune_gc, uvicorn_config
from gateway.service import Gateway
from policies import Destination, Policy, PolicyLoadError, load_policy

log = structlog.get_logger(__name__)


def _locator(config: GatewayConfig) -> Any:
    placement = config.placement
    if placement.country_db is None or placement.asn_db is None:
        return None
    from policies.location import Locator

    return Locator.open(placement.country_db, placement.asn_db, placement.jurisdictions)


def placement_gate(config: GatewayConfig, policy: Policy, audit: AuditLog, locator: Any) -> None:
    """Run the placement checks, audit them, and refuse to start on failure in enforce mode."""
    from policies.location import (
        PlacementConfig,
        placement_record,
        run_placement_checks,
        worst_status,
    )

    results = run_placement_checks(
        PlacementConfig(
            kafka_bootstrap=config.kafka.bootstrap,
            kafka_config={k: str(v) for k, v in config.kafka.extra.items()},
            state_dir=config.placement.state_dir,
            site_networks=dict(config.placement.site_networks),
        ),
        policy,
        locator,
    )
    audit.append({**placement_record(results, policy), "component": "gateway"})
    for result in results:
        log.info("placement_check", check=result.name, status=result.status, detail=result.detail)
    if worst_status(results) == "fail" and policy.mode == "enforce":
        failed = [r for r in results if r.status == "fail"]
        raise PlacementRefused(
            "placement checks failed in enforce mode; refusing to start: "
            + "; ".join(f"{r.name}: {r.detail} ({r.hint})" for r in failed)
        )


def egress_gate(destination: str, policy: Policy, audit: AuditLog, locator: Any) -> bool:
    """Decide egress to the brokers once; True when the engine can decide it per event."""
    parsed = Destination.parse(destination)
    if parsed.without_provider:
        return True  # loopback / private literal: the engine decides from the text, cached
    if locator is None:
        raise PlacementRefused(
            f"egress to {destination} needs location facts: configure placement.country_db "
            "and placement.asn_db (fjordgate geo update)"
        )
    from policies.location import decide_egress

    decision = decide_egress(destination, policy, locator)
    audit.append(
        {
            "type": "egress",
            "component": "gateway",
            "destination": destination,
            "outcome": decision.outcome,
            "rule_id": decision.rule_id,
            "reasons": list(decision.reasons),
            "policy_hash": policy.content_hash,
        }
    )
    if decision.outcome != "allow" and policy.mode == "enforce":
        raise PlacementRefused(f"egress to {destination} denied: {'; '.join(decision.reasons)}")
    return False


def placement_rechecks(
    config: GatewayConfig, gateway: Gateway, audit: AuditLog, locator: Any
) -> Any:
    """Re-run the placement checks on the policy's schedule; in enforce mode a failure
    stops the gateway taking events (503, not ready) until a later check passes."""
    from policies.location import PlacementConfig, PlacementWatch, placement_record, worst_status

    def on_results(results: list[Any]) -> None:
        policy = gateway.policy
        audit.append({**placement_record(results, policy), "component": "gateway"})
        failed = [r for r in results if r.status == "fail"]
        if worst_status(results) == "fail" and policy.mode == "enforce":
            gateway.committer.refusing = (
                "a placement re-check failed in enforce mode ("
                + ", ".join(r.name for r in failed)
                + "); the gateway takes no events until it passes"
            )
            log.error("placement_recheck_failed", checks=[r.name for r in failed])
        else:
            gateway.committer.refusing = None

    watch = PlacementWatch(
        PlacementConfig(
            kafka_bootstrap=config.kafka.bootstrap,
            kafka_config={k: str(v) for k, v in config.kafka.extra.items()},
            state_dir=config.placement.state_dir,
            site_networks=dict(config.placement.site_networks),
        ),
        gateway.policy,
        locator,
        on_results,
    )
    watch.start()
    return watch


@dataclass
class KafkaGateway:
    """What `serve` runs besides the HTTP server, started; `close()` stops it all."""

    gateway: Gateway
    audit: AuditLog
    ingress: KafkaIngress | None
    placement_watch: Any

    def close(self) -> None:
        self.placement_watch.stop()
        if self.ingress is not None:
            self.ingress.stop()
        self.gateway.stop()
        for publisher in self.gateway.publishers:
            publisher.close()
        self.audit.close()


def build_kafka_gateway(config: GatewayConfig) -> KafkaGateway:
    """Everything `serve` runs, started, except the HTTP server."""
    try:
        policy = load_policy(config.policy)
    except PolicyLoadError as exc:
        raise ConfigError(str(exc)) from None
    audit = AuditLog.open(config.audit.directory, SigningKey.load(config.audit.signing_key))
    try:
        locator = _locator(config)
        placement_gate(config, policy, audit, locator)
        destination = f"kafka://{config.kafka.bootstrap.split(',')[0]}"
        per_event = egress_gate(destination, policy, audit, locator)
        topics = Topics(
            tagged=config.kafka.tagged_topic,
            raw=config.kafka.raw_topic,
            dead_letter=config.kafka.dead_letter_topic,
        )
        streams = sorted(policy.streams)
        if config.kafka.create_topics:
            wanted = [topics.tagged_for(s) for s in streams]
            for s in config.kafka.ingress_streams:
                wanted += [topics.raw_for(s), topics.dead_letter_for(s)]
            ensure_topics(config.kafka.bootstrap, wanted, partitions=config.kafka.partitions)
        metrics = GatewayMetrics()
        # One transactional producer per committer lane; the first keeps the configured
        # id, so that a restart fences (and aborts what is left of) its predecessor.
        publishers = [
            KafkaPublisher(
                config.kafka.bootstrap,
                [topics.tagged_for(s) for s in streams],
                transactional_id=config.kafka.transactional_id + (f"-lane{lane}" if lane else ""),
                metrics=metrics,
                timeout_s=config.kafka.timeout_s,
                extra_config=config.kafka.extra,
            )
            for lane in range(config.kafka.lanes)
        ]
        for publisher in publishers:
            publisher.start()
        gateway = Gateway(
            policy_path=config.policy,
            keyring=Keyring.load(config.keyring),
            audit=audit,
            publisher=publishers[0],
            lanes=publishers[1:],
            destination=destination,
            egress_per_event=per_event,
            topics=topics,
            api_keys=[ApiKey(k.name, k.digest, frozenset(k.streams)) for k in config.api_keys],
            event_id_field=config.event_id_field,
            max_pending_events=config.commit.max_pending_events,
            max_group_events=config.commit.max_group_events,
            retry_after_s=config.commit.retry_after_s,
            index_capacity=config.commit.index_capacity,
            max_body_bytes=config.http.max_body_bytes,
            max_events_per_batch=config.http.max_events_per_batch,
            reload_interval_s=config.policy_reload_interval_s,
            metrics=metrics,
        )
        gateway.start()
    except PublishError as exc:
        audit.close()
        raise ConfigError(f"Kafka: {exc}") from None
    except BaseException:
        audit.close()
        raise
    ingress: KafkaIngress | None = None
    if config.kafka.ingress_streams:
        cache: dict[str, PolicyPipelines] = {}

        def kafka_pipelines() -> PolicyPipelines:
            policy_now = gateway.policy
            found = cache.get(policy_now.content_hash)
            if found is None:
                cache.clear()
                found = cache[policy_now.content_hash] = gateway.pipelines_for(
                    policy_now, source="kafka"
                )
            return found

        ingress = KafkaIngress(
            config.kafka.bootstrap,
            config.kafka.ingress_streams,
            pipelines=kafka_pipelines,
            audit=audit,
            topics=topics,
            transactional_id=f"{config.kafka.transactional_id}-ingress",
            group=config.kafka.consumer_group,
            metrics=gateway.metrics,
            timeout_s=config.kafka.timeout_s,
            extra_config=config.kafka.extra,
        )
        ingress.start()
        gateway.extra_checks["kafka_ingress"] = ingress.healthy
    watch = placement_rechecks(config, gateway, audit, locator)
    return KafkaGateway(gateway, audit, ingress, watch)


def serve_from_config(path: Path) -> None:
    """Run until SIGTERM / SIGINT; SIGHUP re-reads the policy file at once."""
    config = GatewayConfig.load(path)
    parts = build_kafka_gateway(config)
    gateway = parts.gateway
    gateway.app.on_shutdown = parts.close
    signal.signal(signal.SIGHUP, lambda *_: gateway.watcher.check_now())
    tls = config.http.tls
    server = uvicorn.Server(
        uvicorn_config(
            gateway.app,
            host=config.http.host,
            port=config.http.port,
            tls_cert=tls.cert if tls else None,
            tls_key=tls.key if tls else None,
        )
    )
    log.info(
        "gateway_serving",
        host=config.http.host,
        port=config.http.port,
        tls=tls is not None,
        policy_hash=gateway.policy.content_hash,
    )
    tune_gc()
    server.run()
