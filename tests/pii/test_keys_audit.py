"""`fjordgate keys new|rotate|shred --audit-dir --audit-key`: one durable `key_rotation` record
per keyring change, a verifiable and closed log, the change in the audit report, never a key
in the log; and an audit log that cannot take the record fails the command, saying whether the
keyring was changed."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import typer
from typer.testing import CliRunner

from audit import AuditLog, SigningKey
from audit import cli as audit_cli
from audit.errors import LogClosed
from audit.segments import list_segments
from gateway.pii import Keyring
from gateway.pii import cli as pii_cli


@pytest.fixture
def app() -> typer.Typer:
    root = typer.Typer()

    @root.callback()
    def _root() -> None:
        """fjordgate (test root)."""

    pii_cli.register(root)
    root.add_typer(audit_cli.app, name="audit")
    return root


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def setup(tmp_path: Path) -> dict[str, Path]:
    key_path = tmp_path / "secrets" / "audit-signing.key"
    key_path.parent.mkdir(mode=0o700)
    key = SigningKey.create(key_path)
    public = tmp_path / "audit-signing.pub"
    key.public_key.export(public)
    return {
        "keyring": tmp_path / "secrets" / "keyring.json",
        "audit_dir": tmp_path / "audit" / "keys",
        "audit_key": key_path,
        "public": public,
    }


def _audit_args(setup: dict[str, Path]) -> list[str]:
    return ["--audit-dir", str(setup["audit_dir"]), "--audit-key", str(setup["audit_key"])]


def _pinned(setup: dict[str, Path]) -> list[str]:
    return ["--public-key", str(setup["public"])]


def _records(directory: Path) -> list[dict[str, Any]]:
    out = []
    for _, path in list_segments(directory):
        out += [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
    return [r for r in out if r.get("type") not in ("tree_head", "log_created")]


def _secrets(keyring: Path) -> list[bytes]:
    doc = orjson.loads(keyring.read_bytes())
    return [base64.b64decode(k["secret"]) for k in doc["keys"] if "secret" in k]


def _encodings(secret: bytes) -> Iterator[bytes]:
    """Every way a 32-byte key could plausibly be written into a file."""
    yield secret
    for b64 in (base64.b64encode(secret), base64.urlsafe_b64encode(secret)):
        yield b64
        yield b64.rstrip(b"=")
    yield secret.hex().encode()
    yield secret.hex().upper().encode()
    yield base64.b32encode(secret).rstrip(b"=")


def _assert_no_key_material(directory: Path, secrets: list[bytes], *texts: str) -> None:
    files = [p for p in directory.rglob("*") if p.is_file()]
    assert files
    blobs = [p.read_bytes() for p in files] + [t.encode() for t in texts]
    for secret in secrets:
        for encoded in _encodings(secret):
            # Also a prefix long enough to be no accident (a key cut short is still a leak).
            for needle in (encoded, encoded[:16]):
                assert all(needle not in blob for blob in blobs)


def test_rotate_and_shred_are_recorded_verified_and_reported(
    app: typer.Typer, runner: CliRunner, setup: dict[str, Path], tmp_path: Path
) -> None:
    ring = setup["keyring"]
    env = {"FJORDGATE_KEYRING": str(ring)}
    created = runner.invoke(app, ["keys", "new", *_audit_args(setup)], env=env)
    assert created.exit_code == 0, created.output
    assert "not audited" not in created.stderr
    first = Keyring.load(ring).active_id
    seen = set(_secrets(ring))

    rotated = runner.invoke(app, ["keys", "rotate", *_audit_args(setup)], env=env)
    assert rotated.exit_code == 0, rotated.output
    second = Keyring.load(ring).active_id
    seen |= set(_secrets(ring))

    # The options also come from the environment, like FJORDGATE_KEYRING.
    shred_env = env | {
        "FJORDGATE_AUDIT_DIR": str(setup["audit_dir"]),
        "FJORDGATE_AUDIT_KEY": str(setup["audit_key"]),
    }
    shredded = runner.invoke(app, ["keys", "shred", first, "--yes"], env=shred_env)
    assert shredded.exit_code == 0, shredded.output
    assert "not audited" not in shredded.stderr
    assert [k.state for k in Keyring.load(ring).list()] == ["shredded", "active"]
    assert len(seen) == 2

    records = _records(setup["audit_dir"])
    assert [{k: v for k, v in r.items() if k not in ("seq", "ts", "prev")} for r in records] == [
        {
            "type": "key_rotation",
            "component": "keys",
            "action": "new",
            "keyring": "keyring.json",
            "key_id": first,
            "active_key_id": first,
        },
        {
            "type": "key_rotation",
            "component": "keys",
            "action": "rotate",
            "keyring": "keyring.json",
            "key_id": second,
            "active_key_id": second,
            "old_key_id": first,
            "new_key_id": second,
        },
        {
            "type": "key_rotation",
            "component": "keys",
            "action": "shred",
            "keyring": "keyring.json",
            "key_id": first,
            "active_key_id": second,
        },
    ]
    outputs = [created.output, rotated.output, shredded.output]
    _assert_no_key_material(setup["audit_dir"], sorted(seen), *outputs)

    # Each command closed the log: every record is covered by a signed tree head.
    verified = runner.invoke(
        app,
        ["audit", "verify", str(setup["audit_dir"].parent), "--strict", *_pinned(setup)],
    )
    assert verified.exit_code == 0, verified.output
    assert "OK" in verified.output and "warning" not in verified.output

    out = tmp_path / "report.json"
    exported = runner.invoke(
        app,
        [
            "audit",
            "export",
            str(setup["audit_dir"].parent),
            "--format=json",
            f"--output={out}",
            *_pinned(setup),
        ],
    )
    assert exported.exit_code == 0, exported.output
    report = orjson.loads(out.read_bytes())
    assert report["verification"]["intact"] and report["verification"]["pinned_key"]
    assert report["records_by_type"]["key_rotation"] == 3
    section = report["key_rotations"]
    assert section["total"] == 3
    assert [
        (r["instance"], r["key"], r["action"], r["key_id"], r["old_key_id"], r["new_key_id"])
        for r in section["rows"]
    ] == [
        ("keys", "keyring.json", "new", first, "", ""),
        ("keys", "keyring.json", "rotate", second, first, second),
        ("keys", "keyring.json", "shred", first, "", ""),
    ]
    _assert_no_key_material(tmp_path / "audit", sorted(seen), out.read_text())

    html = tmp_path / "report.html"
    exported = runner.invoke(
        app, ["audit", "export", str(setup["audit_dir"]), "--format", "html", "--output", str(html)]
    )
    assert exported.exit_code == 0, exported.output
    page = html.read_text()
    assert "shred" in page and first in page and second in page


def test_without_the_options_the_change_is_made_with_a_warning(
    app: typer.Typer, runner: CliRunner, setup: dict[str, Path]
) -> None:
    ring = setup["keyring"]
    env = {"FJORDGATE_KEYRING": str(ring)}
    for command in (["keys", "new"], ["keys", "rotate"]):
        result = runner.invoke(app, command, env=env)
        assert result.exit_code == 0, result.output
        warnings = [line for line in result.stderr.splitlines() if "not audited" in line]
        assert len(warnings) == 1 and warnings[0].startswith("warning: ")
    first = Keyring.load(ring).list()[0].key_id
    result = runner.invoke(app, ["keys", "shred", first, "--yes"], env=env)
    assert result.exit_code == 0 and "not audited" in result.stderr
    assert not setup["audit_dir"].exists()


def test_an_audit_dir_without_a_key_is_a_usage_error(
    app: typer.Typer, runner: CliRunner, setup: dict[str, Path]
) -> None:
    ring = setup["keyring"]
    Keyring.generate(ring)
    before = ring.read_bytes()
    result = runner.invoke(
        app, ["keys", "rotate", "-k", str(ring), "--audit-dir", str(setup["audit_dir"])]
    )
    assert result.exit_code == 2
    assert "--audit-key" in result.stderr and "not changed" in result.stderr
    assert ring.read_bytes() == before


def test_an_audit_log_held_open_elsewhere_stops_rotate_and_shred_before_any_change(
    app: typer.Typer, runner: CliRunner, setup: dict[str, Path]
) -> None:
    ring = setup["keyring"]
    Keyring.generate(ring)
    retired = Keyring.load(ring).active_id
    Keyring.load(ring).rotate()
    before = ring.read_bytes()
    with AuditLog.open(setup["audit_dir"], SigningKey.load(setup["audit_key"])):
        for command in (["keys", "rotate"], ["keys", "shred", retired, "--yes"]):
            result = runner.invoke(app, [*command, "-k", str(ring), *_audit_args(setup)])
            assert result.exit_code == 1, result.output
            assert "cannot open the audit log" in result.stderr
            assert "another process has this audit log open" in result.stderr
            assert "the keyring was not changed" in result.stderr
            assert "active key" not in result.stdout and "shredded" not in result.stdout
            assert ring.read_bytes() == before
    assert _records(setup["audit_dir"]) == []
    _assert_no_key_material(setup["audit_dir"], _secrets(ring))


def test_an_audit_dir_that_cannot_be_written_stops_the_change(
    app: typer.Typer, runner: CliRunner, setup: dict[str, Path], tmp_path: Path
) -> None:
    ring = setup["keyring"]
    Keyring.generate(ring)
    before = ring.read_bytes()
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the audit directory should be\n")
    key_option = ["--audit-key", str(setup["audit_key"])]
    result = runner.invoke(
        app,
        ["keys", "rotate", "-k", str(ring), "--audit-dir", str(blocked / "keys"), *key_option],
    )
    assert result.exit_code == 1, result.output
    assert "cannot open the audit log" in result.stderr
    assert "the keyring was not changed" in result.stderr
    assert ring.read_bytes() == before


def _failing_append(self: AuditLog, record: object) -> Any:
    raise LogClosed("the audit log's writer failed: No space left on device")


def test_rotate_whose_record_fails_says_the_keyring_was_rotated(
    app: typer.Typer, runner: CliRunner, setup: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    ring = setup["keyring"]
    Keyring.generate(ring)
    previous = Keyring.load(ring).active_id
    monkeypatch.setattr(AuditLog, "append", _failing_append)
    result = runner.invoke(app, ["keys", "rotate", "-k", str(ring), *_audit_args(setup)])
    assert result.exit_code == 1, result.output
    new = Keyring.load(ring).active_id
    assert new != previous  # the key was written first
    assert "the keyring WAS rotated" in result.stderr
    assert f"active key is now {new} (was {previous})" in result.stderr
    assert "No space left on device" in result.stderr and "not audited" in result.stderr
    assert "active key is now" not in result.stdout  # no success reported
    _assert_no_key_material(setup["audit_dir"], _secrets(ring), result.output)


def test_new_whose_record_fails_says_the_keyring_was_created(
    app: typer.Typer, runner: CliRunner, setup: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    ring = setup["keyring"]
    monkeypatch.setattr(AuditLog, "append", _failing_append)
    result = runner.invoke(app, ["keys", "new", "-k", str(ring), *_audit_args(setup)])
    assert result.exit_code == 1, result.output
    assert ring.exists() and "the keyring WAS created" in result.stderr
    assert Keyring.load(ring).active_id in result.stderr


def test_shred_whose_record_fails_keeps_the_key(
    app: typer.Typer, runner: CliRunner, setup: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    ring = setup["keyring"]
    Keyring.generate(ring)
    retired = Keyring.load(ring).active_id
    Keyring.load(ring).rotate()
    before = ring.read_bytes()
    monkeypatch.setattr(AuditLog, "append", _failing_append)
    result = runner.invoke(
        app, ["keys", "shred", retired, "--yes", "-k", str(ring), *_audit_args(setup)]
    )
    assert result.exit_code == 1, result.output
    assert f"key {retired} was NOT shredded" in result.stderr
    assert "keyring is unchanged" in result.stderr
    assert ring.read_bytes() == before


def test_the_shred_is_recorded_before_the_key_is_destroyed(
    app: typer.Typer, runner: CliRunner, setup: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    ring = setup["keyring"]
    Keyring.generate(ring)
    retired = Keyring.load(ring).active_id
    Keyring.load(ring).rotate()
    seen: list[list[dict[str, Any]]] = []
    shred = Keyring.shred

    def watched(self: Keyring, key_id: str) -> None:
        # The log is still open (this process holds it): read what is on disk already.
        seen.append(_records(setup["audit_dir"]))
        shred(self, key_id)

    monkeypatch.setattr(Keyring, "shred", watched)
    result = runner.invoke(
        app, ["keys", "shred", retired, "--yes", "-k", str(ring), *_audit_args(setup)]
    )
    assert result.exit_code == 0, result.output
    [on_disk] = seen
    assert [(r["action"], r["key_id"]) for r in on_disk] == [("shred", retired)]


def test_a_refused_shred_writes_no_record(
    app: typer.Typer, runner: CliRunner, setup: dict[str, Path]
) -> None:
    ring = setup["keyring"]
    Keyring.generate(ring)
    active = Keyring.load(ring).active_id
    for key_id in (active, "knosuchkey00"):
        result = runner.invoke(
            app, ["keys", "shred", key_id, "--yes", "-k", str(ring), *_audit_args(setup)]
        )
        assert result.exit_code == 1
    assert not setup["audit_dir"].exists() or _records(setup["audit_dir"]) == []


def test_new_over_an_existing_keyring_names_the_keys_it_destroyed(
    app: typer.Typer, runner: CliRunner, setup: dict[str, Path]
) -> None:
    ring = setup["keyring"]
    Keyring.generate(ring)
    old = Keyring.load(ring).active_id
    result = runner.invoke(app, ["keys", "new", "--force", "-k", str(ring), *_audit_args(setup)])
    assert result.exit_code == 0, result.output
    new = Keyring.load(ring).active_id
    [record] = _records(setup["audit_dir"])
    assert (record["action"], record["key_id"], record["replaced_key_ids"]) == ("new", new, [old])
