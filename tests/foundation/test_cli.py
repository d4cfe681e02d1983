"""The `fjordgate` command: every group is listed and every group's help works."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from gateway.cli import app

GROUPS = [
    "demo",
    "gateway",
    "policy",
    "pii",
    "keys",
    "locate",
    "doctor",
    "geo",
    "processor",
    "audit",
]


def test_version_is_printed() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.startswith("fjordgate ")


def test_root_help_lists_every_group() -> None:
    result = CliRunner().invoke(app, ["--help"], terminal_width=200)
    assert result.exit_code == 0
    for group in GROUPS:
        assert f" {group} " in result.stdout, f"{group} missing from fjordgate --help"


@pytest.mark.parametrize("group", GROUPS)
def test_every_group_has_help(group: str) -> None:
    result = CliRunner().invoke(app, [group, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.stdout


def test_console_script_runs() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "--version"], capture_output=True, text=True
    )
    assert proc.returncode == 0
    assert "fjordgate" in proc.stdout
