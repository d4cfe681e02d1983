"""Placement checks against the real test broker: every advertised broker located and timed.

The broker listens on 127.0.0.1; a database the test writes says where that is.
"""

from __future__ import annotations

from typing import Any

import pytest

from policies.location import PlacementConfig, run_placement_checks
from policies.location.placement import kafka_brokers

pytestmark = pytest.mark.kafka


def _by_name(results: list[Any]) -> dict[str, Any]:
    return {result.name: result for result in results}


def test_the_cluster_metadata_names_every_advertised_broker(kafka_bootstrap: str) -> None:
    brokers = kafka_brokers(kafka_bootstrap, {}, 15.0)
    assert brokers, "the cluster advertises no broker"
    host, port = kafka_bootstrap.rsplit(":", 1)
    assert {(b.host, b.port) for b in brokers} == {(host, int(port))}
    assert all(b.label.startswith("broker ") for b in brokers)


def test_the_brokers_checked_are_the_advertised_ones_not_the_bootstrap_name(
    kafka_bootstrap: str, loopback_in_norway: Any, policy_factory: Any
) -> None:
    # Bootstrap through the name "localhost"; the broker advertises 127.0.0.1, and
    # that advertised address is what clients use, so it is what is located.
    port = kafka_bootstrap.rsplit(":", 1)[1]
    config = PlacementConfig(kafka_bootstrap=f"localhost:{port}", timeout_s=15.0)
    with loopback_in_norway.open() as locator:
        results = _by_name(run_placement_checks(config, policy_factory(max_rtt=1000.0), locator))
    facts = results["kafka.brokers"].facts
    assert [broker["host"] for broker in facts.values()] == ["127.0.0.1"]
    assert results["kafka.brokers"].status == "pass"


def test_brokers_located_in_norway_on_a_norwegian_network_pass(
    kafka_bootstrap: str, loopback_in_norway: Any, policy_factory: Any
) -> None:
    config = PlacementConfig(kafka_bootstrap=kafka_bootstrap, timeout_s=15.0)
    with loopback_in_norway.open() as locator:
        results = _by_name(run_placement_checks(config, policy_factory(max_rtt=1000.0), locator))
    assert results["kafka.brokers"].status == "pass", results["kafka.brokers"].detail
    addresses = [
        a for broker in results["kafka.brokers"].facts.values() for a in broker["addresses"]
    ]
    assert addresses and all(a["country"] == "NO" for a in addresses)
    assert results["kafka.rtt"].status == "pass", results["kafka.rtt"].detail


def test_brokers_in_another_country_under_a_us_provider_fail(
    kafka_bootstrap: str, loopback_in_sweden: Any, policy_factory: Any
) -> None:
    config = PlacementConfig(kafka_bootstrap=kafka_bootstrap, timeout_s=15.0)
    with loopback_in_sweden.open() as locator:
        results = _by_name(run_placement_checks(config, policy_factory(), locator))
    brokers = results["kafka.brokers"]
    assert brokers.status == "fail"
    assert "Amazon under US jurisdiction" in brokers.detail
    assert "run the Kafka brokers in NO" in brokers.hint


def test_brokers_in_another_country_fail_even_on_an_allowed_provider(
    kafka_bootstrap: str, geo_writer: Any, policy_factory: Any
) -> None:
    geo = geo_writer({"127.0.0.0/8": "DE"}, {"127.0.0.0/8": (24940, "Hetzner Online GmbH")})
    config = PlacementConfig(kafka_bootstrap=kafka_bootstrap, timeout_s=15.0)
    with geo.open() as locator:
        results = _by_name(run_placement_checks(config, policy_factory(), locator))
    assert results["kafka.brokers"].status == "fail"
    assert "is in DE" in results["kafka.brokers"].detail


def test_a_round_trip_above_the_policy_limit_fails(
    kafka_bootstrap: str, loopback_in_norway: Any, policy_factory: Any
) -> None:
    # No real network answers in a nanosecond: the limit is exceeded by construction.
    config = PlacementConfig(kafka_bootstrap=kafka_bootstrap, timeout_s=15.0)
    with loopback_in_norway.open() as locator:
        results = _by_name(run_placement_checks(config, policy_factory(max_rtt=0.000001), locator))
    rtt = results["kafka.rtt"]
    assert rtt.status == "fail"
    assert "round trip above" in rtt.detail
    assert all(ms > 0 for ms in rtt.facts["rtt_ms"].values())


def test_a_kafka_sink_is_checked_as_its_whole_cluster(
    kafka_bootstrap: str, loopback_in_norway: Any, loopback_in_sweden: Any, policy_factory: Any
) -> None:
    config = PlacementConfig(sinks=[f"kafka://{kafka_bootstrap}/results"], timeout_s=15.0)
    with loopback_in_norway.open() as locator:
        passed = _by_name(run_placement_checks(config, policy_factory(), locator))["sinks"]
    with loopback_in_sweden.open() as locator:
        failed = _by_name(run_placement_checks(config, policy_factory(), locator))["sinks"]
    assert passed.status == "pass", passed.detail
    assert any("broker" in label for label in passed.facts)
    assert failed.status == "fail"


def test_an_unreachable_cluster_fails_with_a_clear_reason(
    loopback_in_norway: Any, policy_factory: Any
) -> None:
    # Port 1 on loopback: nothing listens there.
    config = PlacementConfig(kafka_bootstrap="127.0.0.1:1", timeout_s=2.0)
    with loopback_in_norway.open() as locator:
        results = _by_name(run_placement_checks(config, policy_factory(), locator))
    assert results["kafka.brokers"].status == "fail"
    assert "cannot read the cluster's metadata" in results["kafka.brokers"].detail
