"""Hot reload: a changed file is validated first; a bad one keeps the old policy and is reported."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from policies import Policy, PolicyIssue, PolicyLoadError, PolicyWatcher
from tests.policies.conftest import BASE_POLICY


class Recorder:
    def __init__(self) -> None:
        self.loaded: list[Policy] = []
        self.rejected: list[tuple[str, list[PolicyIssue]]] = []
        self.changed = threading.Event()

    def on_loaded(self, policy: Policy) -> None:
        self.loaded.append(policy)
        self.changed.set()

    def on_rejected(self, path: str, issues: list[PolicyIssue]) -> None:
        self.rejected.append((path, issues))
        self.changed.set()


def _rewrite(path: Path, text: str) -> None:
    # Move the mtime forward explicitly: two writes can land in one timestamp tick.
    path.write_text(text, encoding="utf-8")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_initial_load_reports_the_policy(base_policy_file: Path) -> None:
    recorder = Recorder()
    watcher = PolicyWatcher(base_policy_file, on_loaded=recorder.on_loaded)
    assert [p.content_hash for p in recorder.loaded] == [watcher.policy.content_hash]
    assert watcher.engine.policy is watcher.policy


def test_a_bad_initial_file_raises(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("mode: enforce\n", encoding="utf-8")
    with pytest.raises(PolicyLoadError):
        PolicyWatcher(path)


def test_a_valid_change_is_put_in_force(base_policy_file: Path) -> None:
    recorder = Recorder()
    watcher = PolicyWatcher(base_policy_file, on_loaded=recorder.on_loaded)
    old = watcher.policy.content_hash
    _rewrite(base_policy_file, BASE_POLICY.replace("mode: enforce", "mode: observe"))
    assert watcher.check_now() is True
    assert watcher.policy.mode == "observe"
    assert watcher.engine.mode == "observe"
    assert recorder.loaded[0].content_hash == old
    assert recorder.loaded[-1].content_hash == watcher.policy.content_hash != old


def test_a_bad_change_keeps_the_old_policy_and_is_reported_once(base_policy_file: Path) -> None:
    recorder = Recorder()
    watcher = PolicyWatcher(
        base_policy_file, on_loaded=recorder.on_loaded, on_rejected=recorder.on_rejected
    )
    before = watcher.policy
    _rewrite(base_policy_file, BASE_POLICY.replace("action: pseudonymise", "action: pseudonymize"))
    assert watcher.check_now() is False
    assert watcher.policy is before
    ((path, issues),) = recorder.rejected
    assert path == str(base_policy_file)
    assert any("did you mean 'pseudonymise'" in i.message for i in issues)
    # Touching the same bad content again does not report it again.
    st = base_policy_file.stat()
    os.utime(base_policy_file, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    assert watcher.check_now() is False
    assert len(recorder.rejected) == 1
    # Fixing the file puts the fixed policy in force.
    _rewrite(base_policy_file, BASE_POLICY.replace("mode: enforce", "mode: observe"))
    assert watcher.check_now() is True
    assert watcher.policy.mode == "observe"


def test_reformatting_without_a_change_is_not_a_new_policy(base_policy_file: Path) -> None:
    recorder = Recorder()
    watcher = PolicyWatcher(base_policy_file, on_loaded=recorder.on_loaded)
    _rewrite(base_policy_file, "# reformatted\n" + BASE_POLICY.replace("  ", "  ", 1))
    assert watcher.check_now() is False
    assert len(recorder.loaded) == 1


def test_a_deleted_file_keeps_the_old_policy(base_policy_file: Path) -> None:
    recorder = Recorder()
    watcher = PolicyWatcher(base_policy_file, on_rejected=recorder.on_rejected)
    before = watcher.policy
    base_policy_file.unlink()
    assert watcher.check_now() is False
    assert watcher.policy is before
    assert recorder.rejected and "cannot read" in recorder.rejected[0][1][0].message


def test_a_failing_callback_does_not_stop_reloading(base_policy_file: Path) -> None:
    calls: list[str] = []

    def explode(policy: Policy) -> None:
        calls.append(policy.mode)
        raise RuntimeError("audit unavailable")

    watcher = PolicyWatcher(base_policy_file, on_loaded=explode)
    _rewrite(base_policy_file, BASE_POLICY.replace("mode: enforce", "mode: observe"))
    assert watcher.check_now() is True
    assert calls == ["enforce", "observe"]


def test_the_polling_thread_picks_up_a_change(base_policy_file: Path) -> None:
    recorder = Recorder()
    watcher = PolicyWatcher(base_policy_file, on_loaded=recorder.on_loaded, interval_s=0.05)
    recorder.changed.clear()
    with watcher:
        _rewrite(base_policy_file, BASE_POLICY.replace("mode: enforce", "mode: observe"))
        # Bounded wait for the event, not a timing claim: fails only if nothing arrives.
        assert recorder.changed.wait(30)
    assert watcher.policy.mode == "observe"
