"""The exceptions of the policy package: each error says what, where and what to do."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class PolicyIssue:
    """One problem in a policy file, located at a 1-based line and column."""

    file: str
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.message}"


class PolicyError(Exception):
    """Base class of every error the policy package raises."""


class PolicyLoadError(PolicyError):
    """A policy file could not be loaded; `issues` lists every problem found in it."""

    def __init__(self, path: str | Path, issues: list[PolicyIssue]) -> None:
        self.path = str(path)
        self.issues = list(issues)
        count = len(self.issues)
        head = "\n".join(str(issue) for issue in self.issues[:20])
        more = f"\n... and {count - 20} more" if count > 20 else ""
        super().__init__(
            f"{self.path}: {count} problem{'s' if count != 1 else ''} in the policy; "
            f"fix them and run `fjordgate policy check {self.path}`:\n{head}{more}"
        )


class UnknownStream(PolicyError, KeyError):
    """An event named a stream that the policy does not declare."""

    def __init__(self, stream: str, known: list[str]) -> None:
        self.stream = stream
        self.known = list(known)
        super().__init__(stream)

    def __str__(self) -> str:
        known = ", ".join(self.known) or "(none)"
        return (
            f"stream {self.stream!r} is not declared in the policy (declared: {known}); "
            "declare it under `streams:` or send the event to a declared stream"
        )


class InvalidDestination(PolicyError, ValueError):
    """A destination string is neither a host, a URL nor an IP address."""
