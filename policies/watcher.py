"""Hot reload of a policy file: a change is validated first; a bad file keeps the old policy.

The watcher polls the file (stat, then content) rather than relying on
inotify, so it works the same on every file system, including the bind
mounts and config maps policies are often delivered through. The gateway
passes callbacks that write `policy_loaded` / `policy_rejected` audit records;
this package does not import the audit log.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable
from pathlib import Path

import structlog

from policies.engine import PolicyEngine
from policies.errors import PolicyIssue, PolicyLoadError
from policies.loader import MAX_POLICY_BYTES, load_policy
from policies.models import Policy

log = structlog.get_logger(__name__)

OnLoaded = Callable[[Policy], None]
OnRejected = Callable[[str, list[PolicyIssue]], None]


class PolicyWatcher:
    """Keeps the policy of one file in force, reloading it when the file changes."""

    def __init__(
        self,
        path: str | Path,
        *,
        on_loaded: OnLoaded | None = None,
        on_rejected: OnRejected | None = None,
        interval_s: float = 1.0,
        max_bytes: int = MAX_POLICY_BYTES,
    ) -> None:
        """Load the file now (raises PolicyLoadError if it is bad: there is no old policy)."""
        self.path = Path(path)
        self.interval_s = interval_s
        self.max_bytes = max_bytes
        self._on_loaded = on_loaded
        self._on_rejected = on_rejected
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stat = self._stat_key()
        self._digest = self._file_digest()
        policy = load_policy(self.path, max_bytes=max_bytes)
        self._policy = policy
        self._engine = PolicyEngine(policy)
        self._rejected_digest: str | None = None
        self._notify_loaded(policy)

    @property
    def policy(self) -> Policy:
        """The policy in force."""
        return self._policy

    @property
    def engine(self) -> PolicyEngine:
        """The compiled engine of the policy in force."""
        return self._engine

    def _stat_key(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _file_digest(self) -> str | None:
        try:
            with open(self.path, "rb") as handle:
                return hashlib.sha256(handle.read(self.max_bytes + 1)).hexdigest()
        except OSError:
            return None

    def check_now(self) -> bool:
        """Look at the file once; True when a new policy was put in force."""
        with self._lock:
            stat = self._stat_key()
            if stat == self._stat:
                return False
            self._stat = stat
            digest = self._file_digest()
            if digest == self._digest or (digest is None and self._digest is None):
                return False
            if digest is not None and digest == self._rejected_digest:
                return False  # the same bad content again (touched, not fixed)
            try:
                policy = load_policy(self.path, max_bytes=self.max_bytes)
            except PolicyLoadError as exc:
                self._rejected_digest = digest
                log.warning(
                    "policy_rejected",
                    path=str(self.path),
                    issues=len(exc.issues),
                    kept=self._policy.content_hash,
                )
                self._notify_rejected(str(self.path), exc.issues)
                return False
            self._digest = digest
            self._rejected_digest = None
            if policy.content_hash == self._policy.content_hash:
                return False  # reformatted or reordered: the same policy
            self._engine = PolicyEngine(policy)
            self._policy = policy
            log.info("policy_loaded", path=str(self.path), policy_hash=policy.content_hash)
            self._notify_loaded(policy)
            return True

    def _notify_loaded(self, policy: Policy) -> None:
        if self._on_loaded is not None:
            try:
                self._on_loaded(policy)
            except Exception:  # a failing callback must not stop the watcher
                log.exception("policy_on_loaded_failed", path=str(self.path))

    def _notify_rejected(self, path: str, issues: list[PolicyIssue]) -> None:
        if self._on_rejected is not None:
            try:
                self._on_rejected(path, issues)
            except Exception:
                log.exception("policy_on_rejected_failed", path=path)

    def start(self) -> PolicyWatcher:
        """Poll in a daemon thread every `interval_s` seconds."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, name=f"policy-watcher:{self.path.name}", daemon=True
            )
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.check_now()
            except Exception:
                log.exception("policy_watch_failed", path=str(self.path))

    def stop(self) -> None:
        """Stop polling and wait for the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> PolicyWatcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
