"""Every `fjordgate` command in the operations runbook (docs/operations.md) exists, with
every option it is shown with, and runs its --help; the files it names are shipped."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from gateway.cli import app

ROOT = Path(__file__).resolve().parents[2]
RUNBOOK = ROOT / "docs" / "operations.md"


def _shell_lines(text: str) -> list[str]:
    """Command lines of the ```sh blocks (continuations joined, comments cut) and of
    inline code that starts with `fjordgate `."""
    lines: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.DOTALL):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                lines.append(line)
    prose = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
    lines += [span for span in re.findall(r"`([^`]+)`", prose) if span.startswith("fjordgate ")]
    return lines


def _invocations(text: str) -> list[list[str]]:
    """The words after `fjordgate` in every command line that runs it."""
    found = []
    for line in _shell_lines(text):
        words = shlex.split(line)
        # The program is the first word after any VAR=value environment assignments.
        while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0]):
            words.pop(0)
        if words and (words[0] == "fjordgate" or words[0].endswith("/bin/fjordgate")):
            found.append(words[1:])
    return found


def _resolve(words: list[str]) -> tuple[list[str], Any, list[str]]:
    """The command path, the command it names, and the options given to it."""
    # typer vendors its own click: its command classes are not `click`'s.
    command: Any = typer.main.get_command(app)
    path: list[str] = []
    rest = list(words)
    while _is_group(command) and rest and rest[0] in command.commands:
        path.append(rest[0])
        command = command.commands[rest.pop(0)]
    options = [w.split("=", 1)[0] for w in rest if w.startswith("--")]
    return path, command, options


def _is_group(command: Any) -> bool:
    return hasattr(command, "commands")


INVOCATIONS = _invocations(RUNBOOK.read_text(encoding="utf-8"))


def test_the_runbook_shows_the_operators_commands() -> None:
    shown = {" ".join(_resolve(words)[0]) for words in INVOCATIONS}
    expected = {
        "doctor", "geo update", "geo info", "locate", "keys rotate", "keys shred",
        "keys new", "audit key generate", "gateway api-key new", "gateway serve",
        "processor run", "processor checkpoints", "audit verify", "audit export",
        "audit prove", "audit check-proof", "audit subject", "policy check",
    }  # fmt: skip
    assert expected - shown == set()


@pytest.mark.parametrize("words", INVOCATIONS, ids=[" ".join(w[:3]) for w in INVOCATIONS])
def test_runbook_command_exists_with_its_options(words: list[str]) -> None:
    path, command, options = _resolve(words)
    assert path or all(w.startswith("--") for w in words), f"`fjordgate {' '.join(words)}`"
    assert not (path and _is_group(command)), f"`fjordgate {' '.join(path)}` is a group"
    known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    assert [o for o in options if o not in known] == [], f"fjordgate {' '.join(path)}"
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output


def test_files_the_runbook_names_in_the_repository_exist() -> None:
    text = RUNBOOK.read_text(encoding="utf-8")
    named = set(re.findall(r"`((?:deploy|policies|docs|tests)/[\w./@-]+)`", text))
    named |= {f"docs/{m}" for m in re.findall(r"\]\(([\w-]+\.md)\)", text)}
    assert named
    assert sorted(p for p in named if not (ROOT / p).exists()) == []
