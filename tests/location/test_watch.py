"""PlacementWatch: the checks again on a schedule, results handed on, a broken run reported."""

from __future__ import annotations

import threading
from typing import Any

from policies.location import CheckResult, PlacementConfig, PlacementWatch


def test_the_watch_reruns_the_checks_and_hands_on_every_result(policy_factory: Any) -> None:
    seen: list[list[CheckResult]] = []
    two_runs = threading.Event()

    def on_results(results: list[CheckResult]) -> None:
        seen.append(results)
        if len(seen) >= 2:
            two_runs.set()

    calls: list[int] = []

    def run_checks(config: Any, policy: Any, locator: Any) -> list[CheckResult]:
        calls.append(1)
        return [CheckResult("sysctl.swappiness", "fail" if len(calls) > 1 else "pass", "x")]

    watch = PlacementWatch(
        PlacementConfig(),
        policy_factory(),
        None,
        on_results,
        interval_s=0.01,
        run_checks=run_checks,
    )
    with watch:
        assert two_runs.wait(timeout=30), "the watch did not run twice"
    assert [results[0].status for results in seen[:2]] == ["pass", "fail"]
    assert watch.last_results == seen[-1]
    assert watch.runs == len(seen) == len(calls)  # every run's results were handed on
    assert watch._thread is None  # stop() joined the thread


def test_a_check_that_raises_becomes_a_failed_run_and_the_watch_goes_on(
    policy_factory: Any,
) -> None:
    def broken(config: Any, policy: Any, locator: Any) -> list[CheckResult]:
        raise RuntimeError("mountinfo vanished")

    received: list[list[CheckResult]] = []
    watch = PlacementWatch(
        PlacementConfig(), policy_factory(), None, received.append, run_checks=broken
    )
    first = watch.check_now()
    second = watch.check_now()
    assert first[0].name == "placement.run" and first[0].status == "fail"
    assert "RuntimeError: mountinfo vanished" in first[0].detail
    assert len(received) == 2 and second == received[1]


def test_a_failing_results_handler_does_not_stop_the_checks(policy_factory: Any) -> None:
    def handler(results: list[CheckResult]) -> None:
        raise ValueError("audit log closed")

    watch = PlacementWatch(
        PlacementConfig(),
        policy_factory(),
        None,
        handler,
        run_checks=lambda config, policy, locator: [CheckResult("x", "pass", "ok")],
    )
    watch.check_now()
    watch.check_now()
    assert watch.runs == 2


def test_the_interval_defaults_to_the_policys_recheck_interval(policy_factory: Any) -> None:
    policy = policy_factory()
    watch = PlacementWatch(PlacementConfig(), policy, None, lambda results: None)
    assert watch.interval_s == policy.placement.recheck_interval_s
