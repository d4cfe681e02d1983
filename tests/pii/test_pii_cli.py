"""`fjordgate pii scan` and `fjordgate keys`, including the bad inputs they must survive."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import typer
from typer.testing import CliRunner

from gateway.pii import FieldCipher, Keyring, KeyShreddedError
from gateway.pii import cli as pii_cli

FNR = "15108695088"


@pytest.fixture
def app() -> typer.Typer:
    root = typer.Typer()

    @root.callback()
    def _root() -> None:
        """fjordgate (test root)."""

    pii_cli.register(root)
    return root


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def _records(stdout: str) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in stdout.splitlines() if line.strip()]


def test_scan_prints_one_object_per_finding_with_character_offsets_and_no_values(
    app: typer.Typer, runner: CliRunner, tmp_path: Path
) -> None:
    source = tmp_path / "in.txt"
    source.write_text(f"Åse har fnr {FNR}\nintet her\nmail åse@nav.no og tlf 41234567\n")
    result = runner.invoke(app, ["pii", "scan", str(source)])
    assert result.exit_code == 0, result.output
    records = _records(result.stdout)
    assert records == [
        {"line": 1, "start": 12, "end": 23, "type": "fodselsnummer", "synthetic": False},
        {"line": 3, "start": 5, "end": 15, "type": "email", "synthetic": False},
        {"line": 3, "start": 23, "end": 31, "type": "phone", "synthetic": False},
    ]
    assert FNR not in result.output and "nav.no" not in result.output
    assert "3 findings" in result.stderr and "fodselsnummer 1" in result.stderr


def test_show_values_adds_the_values(app: typer.Typer, runner: CliRunner) -> None:
    result = runner.invoke(app, ["pii", "scan", "--show-values", "-"], input=f"fnr {FNR}\n")
    assert _records(result.stdout)[0]["value"] == FNR


def test_jsonl_scans_every_string_value_and_names_the_field(
    app: typer.Typer, runner: CliRunner
) -> None:
    lines = [
        orjson.dumps({"user": {"notes": ["x", f"fnr {FNR}"]}, "n": 1}).decode(),
        "",
        orjson.dumps({"email": "kari@uio.no"}).decode(),
    ]
    result = runner.invoke(
        app, ["pii", "scan", "--jsonl", "--show-values", "-"], input="\n".join(lines) + "\n"
    )
    assert result.exit_code == 0, result.output
    assert _records(result.stdout) == [
        {
            "line": 1,
            "field": "user.notes.1",
            "start": 4,
            "end": 15,
            "type": "fodselsnummer",
            "synthetic": False,
            "value": FNR,
        },
        {
            "line": 3,
            "field": "email",
            "start": 0,
            "end": 11,
            "type": "email",
            "synthetic": False,
            "value": "kari@uio.no",
        },
    ]


def test_types_option_limits_the_scan(app: typer.Typer, runner: CliRunner) -> None:
    result = runner.invoke(app, ["pii", "scan", "--types", "email", "-"], input=f"{FNR} a@b.no\n")
    assert [r["type"] for r in _records(result.stdout)] == ["email"]
    bad = runner.invoke(app, ["pii", "scan", "--types", "navn", "-"], input="x\n")
    assert bad.exit_code == 2 and "unknown PII type" in bad.stderr


def test_missing_file_is_a_clear_usage_error(
    app: typer.Typer, runner: CliRunner, tmp_path: Path
) -> None:
    result = runner.invoke(app, ["pii", "scan", str(tmp_path / "nope.txt")])
    assert result.exit_code == 2 and "cannot read" in result.stderr


# -- bad input ------------------------------------------------------------------------------


def test_invalid_utf8_is_replaced_and_counted_by_default(
    app: typer.Typer, runner: CliRunner
) -> None:
    data = b"\xff\xfe fnr " + FNR.encode() + b"\n\xc3( ok\n"
    result = runner.invoke(app, ["pii", "scan", "-"], input=data)
    assert result.exit_code == 0
    # Each undecodable byte is one U+FFFD character: offsets stay in characters.
    assert _records(result.stdout) == [
        {"line": 1, "start": 7, "end": 18, "type": "fodselsnummer", "synthetic": False}
    ]
    assert "2 lines had invalid UTF-8" in result.stderr


def test_invalid_utf8_fails_clearly_when_asked(app: typer.Typer, runner: CliRunner) -> None:
    result = runner.invoke(
        app, ["pii", "scan", "--invalid-utf8", "fail", "-"], input=b"ok\nab\xff\n"
    )
    assert result.exit_code == 2
    assert "line 2: invalid UTF-8 at byte 2" in result.stderr


def test_null_bytes_are_ordinary_characters(app: typer.Typer, runner: CliRunner) -> None:
    result = runner.invoke(app, ["pii", "scan", "-"], input=f"\x00fnr\x00{FNR}\x00\n".encode())
    assert _records(result.stdout) == [
        {"line": 1, "start": 5, "end": 16, "type": "fodselsnummer", "synthetic": False}
    ]
    jsonl = runner.invoke(app, ["pii", "scan", "--jsonl", "-"], input=b'{"a": "x\x00y"}\n')
    assert jsonl.exit_code == 1 and "line 1: not valid JSON" in jsonl.stderr


def test_megabyte_lines_are_scanned_and_overlong_lines_skipped_with_a_message(
    app: typer.Typer, runner: CliRunner
) -> None:
    filler = "æ" * 600_000 + " "
    big = f"{filler}fnr {FNR} {filler}"
    data = (big + "\n" + "x" * 3000 + "\n" + f"tail {FNR}\n").encode()
    result = runner.invoke(app, ["pii", "scan", "-"], input=data)
    assert result.exit_code == 0
    assert _records(result.stdout)[0]["start"] == len(filler) + 4
    limited = runner.invoke(app, ["pii", "scan", "--max-line-bytes", "2000000", "-"], input=data)
    assert limited.exit_code == 1
    assert "line 1: longer than 2000000 bytes; skipped" in limited.stderr
    # The lines after the skipped one are still scanned, with their own numbers.
    assert [r["line"] for r in _records(limited.stdout)] == [3]


def test_deeply_nested_json_is_reported_not_crashed_on(app: typer.Typer, runner: CliRunner) -> None:
    deep = '{"a":' * 5000 + '"x"' + "}" * 5000
    medium = '{"a":' * 600 + f'"{FNR}"' + "}" * 600
    data = "\n".join([deep, medium, f'{{"ok": "{FNR}"}}']) + "\n"
    result = runner.invoke(app, ["pii", "scan", "--jsonl", "-"], input=data)
    assert result.exit_code == 1
    assert "line 1: not valid JSON" in result.stderr  # beyond the JSON parser's depth limit
    assert "line 2: JSON nested deeper than 512 levels" in result.stderr
    assert [r["line"] for r in _records(result.stdout)] == [3]


def test_scan_through_the_installed_command_and_a_pipe() -> None:
    exe = Path(sys.executable).with_name("fjordgate")
    proc = subprocess.run(
        [str(exe), "pii", "scan", "-"],
        input=b"org 974760673\n",
        capture_output=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert orjson.loads(proc.stdout) == {
        "line": 1,
        "start": 4,
        "end": 13,
        "type": "organisasjonsnummer",
        "synthetic": False,
    }


# -- keys -----------------------------------------------------------------------------------


def test_keys_new_list_rotate_shred(app: typer.Typer, runner: CliRunner, tmp_path: Path) -> None:
    ring_path = tmp_path / "ring.json"
    env = {"FJORDGATE_KEYRING": str(ring_path)}
    created = runner.invoke(app, ["keys", "new"], env=env)
    assert created.exit_code == 0, created.output
    first = Keyring.load(ring_path).active_id
    assert first in created.stdout
    token = FieldCipher(Keyring.load(ring_path)).encrypt(
        "hemmelig", stream="s", field="f", event_id="1"
    )

    rotated = runner.invoke(app, ["keys", "rotate"], env=env)
    assert rotated.exit_code == 0
    second = Keyring.load(ring_path).active_id
    assert second != first and second in rotated.stdout

    listed = runner.invoke(app, ["keys", "list", "--json"], env=env)
    states = {r["key_id"]: r["state"] for r in _records(listed.stdout)}
    assert states == {first: "retired", second: "active"}

    refused = runner.invoke(app, ["keys", "shred", second, "--yes"], env=env)
    assert refused.exit_code == 1 and "rotate" in refused.stderr

    shredded = runner.invoke(app, ["keys", "shred", first, "--yes"], env=env)
    assert shredded.exit_code == 0
    with pytest.raises(KeyShreddedError):
        FieldCipher(Keyring.load(ring_path)).decrypt(token, stream="s", field="f", event_id="1")

    # No command printed any secret.
    secret_free = created.output + rotated.output + listed.output + shredded.output
    assert '"secret"' not in secret_free and "secret" not in listed.stdout


def test_keys_refuse_a_keyring_others_can_read(
    app: typer.Typer, runner: CliRunner, tmp_path: Path
) -> None:
    ring_path = tmp_path / "ring.json"
    Keyring.generate(ring_path)
    os.chmod(ring_path, 0o644)
    result = runner.invoke(app, ["keys", "list", "-k", str(ring_path)])
    assert result.exit_code == 1
    assert "accessible to group or others" in result.stderr


def test_keys_new_will_not_overwrite_without_force(
    app: typer.Typer, runner: CliRunner, tmp_path: Path
) -> None:
    ring_path = tmp_path / "ring.json"
    assert runner.invoke(app, ["keys", "new", "-k", str(ring_path)]).exit_code == 0
    again = runner.invoke(app, ["keys", "new", "-k", str(ring_path)])
    assert again.exit_code == 1 and "already exists" in again.stderr
    assert runner.invoke(app, ["keys", "new", "-k", str(ring_path), "--force"]).exit_code == 0


def test_show_values_works_for_keys_with_dots_and_digits(
    app: typer.Typer, runner: CliRunner
) -> None:
    line = orjson.dumps({"kunde.epost": "a@b.no", "0": [f"fnr {FNR}"]}).decode()
    result = runner.invoke(app, ["pii", "scan", "--jsonl", "--show-values", "-"], input=line)
    assert result.exit_code == 0, result.output
    assert [(r["field"], r["value"]) for r in _records(result.stdout)] == [
        ("kunde.epost", "a@b.no"),
        ("0.0", FNR),
    ]
