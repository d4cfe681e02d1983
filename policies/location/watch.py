"""`PlacementWatch`: the placement checks again on a schedule, after the start-up check.

A component checks its placement when it starts; brokers can move, disks can be
remounted and sysctls changed while it runs, so the watch re-runs the checks
every `placement.recheck_interval_s` and hands each run's results to a callback
(the gateway audits them and, in enforce mode, stops on a failure).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType

import structlog

from policies.location.locator import Locator
from policies.location.placement import (
    CheckResult,
    PlacementConfig,
    run_placement_checks,
    worst_status,
)
from policies.models import Policy

log = structlog.get_logger(__name__)

ResultsHandler = Callable[[list[CheckResult]], None]
ChecksRunner = Callable[[PlacementConfig, Policy, Locator | None], list[CheckResult]]


class PlacementWatch:
    """Runs the placement checks every `interval_s` seconds on a daemon thread."""

    def __init__(
        self,
        config: PlacementConfig,
        policy: Policy,
        locator: Locator | None,
        on_results: ResultsHandler,
        *,
        interval_s: float | None = None,
        run_checks: ChecksRunner = run_placement_checks,
    ) -> None:
        self.config = config
        self.policy = policy
        self.locator = locator
        self.interval_s = (
            float(policy.placement.recheck_interval_s) if interval_s is None else interval_s
        )
        self._on_results = on_results
        self._run_checks = run_checks
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_results: list[CheckResult] = []
        self.runs = 0

    def check_now(self) -> list[CheckResult]:
        """Run the checks once, hand the results on, and return them.

        A check that raises becomes a failed `placement.run` result: a broken
        check must not end the watch, nor pass silently.
        """
        try:
            results = self._run_checks(self.config, self.policy, self.locator)
        except Exception as error:  # the watch outlives any one broken run
            results = [
                CheckResult(
                    "placement.run",
                    "fail",
                    f"the placement checks could not run: {type(error).__name__}: {error}",
                    "see the log of this process",
                )
            ]
        self.last_results = results
        self.runs += 1
        try:
            self._on_results(results)
        except Exception:
            log.exception("placement_results_handler_failed", status=worst_status(results))
        return results

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.check_now()

    def start(self) -> PlacementWatch:
        """Start re-checking in the background (the first run comes after one interval)."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._loop, name="fjordgate-placement-watch", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop and wait for a run in progress to finish."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> PlacementWatch:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
