"""Subject look-up: the audit package computes exactly the gateway's pseudonyms from the keyring
file, and `audit subject` finds every record about one person without printing the id."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from audit import AuditLog, KeyringError, SigningKey
from audit.subject import find_subject, load_pseudonym_keys, subject_pseudonyms
from gateway.cli import app
from gateway.pii import Keyring, Pseudonymiser

SUBJECT = "01017012345"  # a synthetic 11-digit identifier, not a real person
OTHER = "02028054321"


def test_pseudonyms_equal_the_gateways_for_every_key(tmp_path: Path) -> None:
    ring = Keyring.generate(tmp_path / "keyring.json")
    first = Pseudonymiser(ring).pseudonymise(SUBJECT)
    ring.rotate()
    second = Pseudonymiser(ring).pseudonymise(SUBJECT)
    keys, shredded = load_pseudonym_keys(tmp_path / "keyring.json")
    computed = subject_pseudonyms(SUBJECT, keys)
    assert first in computed and second in computed
    assert shredded == []
    assert Pseudonymiser(ring).pseudonymise(OTHER) not in computed


def test_keyring_readable_by_others_is_refused(tmp_path: Path) -> None:
    Keyring.generate(tmp_path / "keyring.json")
    (tmp_path / "keyring.json").chmod(0o644)
    with pytest.raises(KeyringError, match="chmod 600"):
        load_pseudonym_keys(tmp_path / "keyring.json")


def test_subject_command_finds_every_decision_about_one_person(
    tmp_path: Path, signing_key: SigningKey
) -> None:
    ring = Keyring.generate(tmp_path / "keyring.json")
    pseudonymiser = Pseudonymiser(ring)
    mine, theirs = pseudonymiser.pseudonymise(SUBJECT), pseudonymiser.pseudonymise(OTHER)
    for instance in ("gw-1", "gw-2"):
        with AuditLog.open(tmp_path / "logs" / instance, signing_key) as log:
            log.append(
                {"type": "decision", "stream": "patients", "outcome": "allow", "subjects": [mine]}
            )
            log.append(
                {"type": "decision", "stream": "patients", "outcome": "deny", "subjects": [theirs]}
            )
            log.append(
                {
                    "type": "egress",
                    "destination": "kafka://broker:9092",
                    "outcome": "allow",
                    "key": mine,
                }
            )
    matches = find_subject(tmp_path / "logs", [mine])
    assert len(matches) == 4
    assert {m.fields for m in matches} == {("subjects[0]",), ("key",)}

    result = CliRunner().invoke(
        app,
        [
            "audit",
            "subject",
            str(tmp_path / "logs"),
            "--id",
            "-",
            "--keyring",
            str(tmp_path / "keyring.json"),
            "--json",
        ],
        input=SUBJECT + "\n",
    )
    assert result.exit_code == 0, result.output
    assert SUBJECT not in result.output
    report = orjson.loads(result.output)
    assert report["log_verified"] is True
    assert sorted((r["log"], r["record"]["seq"]) for r in report["records"]) == [
        ("gw-1", 1),
        ("gw-1", 3),
        ("gw-2", 1),
        ("gw-2", 3),
    ]
