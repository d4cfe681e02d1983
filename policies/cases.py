"""Policy test cases, as `opa test` has them: event, stream, destination, expected decision.

A case file is YAML holding one case, or a list of them under `cases:`.
Expectations are partial: only what a case states is compared, and each
difference is reported as expected-versus-got.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from policies.egress import KnownAddress
from policies.engine import Decision, PolicyEngine
from policies.errors import PolicyLoadError, UnknownStream
from policies.loader import load_yaml_model, read_yaml_file
from policies.models import Action, Country, PolicyModel

FieldExpectation = Action | Literal["absent"]


class LocatedAddressCase(PolicyModel):
    """A resolved address of the destination, as the location package would give it."""

    address: str
    country: Country | None = None
    jurisdiction: Country | None = None


class Expectation(PolicyModel):
    """What the decision must be; only the keys given are checked."""

    outcome: Literal["allow", "deny"] | None = None
    fields: dict[str, FieldExpectation] | None = Field(
        default=None, description="Field path → action (or `absent` for no decision)."
    )
    rule_ids: list[str] | None = Field(default=None, description="Rule ids that must appear.")
    egress: Literal["allow", "deny", "unresolved"] | None = None
    egress_rule: str | None = None
    egress_logged: bool | None = None
    reasons_contain: list[str] | None = Field(
        default=None, description="Texts that must appear in some reason."
    )
    detected: dict[str, list[str]] | None = None
    event_time_ms: int | None = None


class PolicyCase(PolicyModel):
    """One test case."""

    name: Annotated[str, Field(min_length=1)]
    stream: str
    event: dict[str, Any]
    destination: str | None = None
    detected: dict[str, list[str]] | None = None
    located: list[LocatedAddressCase] | None = None
    expect: Expectation

    @model_validator(mode="after")
    def _expects_something(self) -> PolicyCase:
        if all(value is None for _, value in self.expect):
            raise ValueError("`expect:` states nothing to check")
        return self


class CaseFile(PolicyModel):
    """A file of several cases."""

    cases: Annotated[list[PolicyCase], Field(min_length=1)]


@dataclass(frozen=True, slots=True)
class Mismatch:
    """One way a decision differs from the case's expectation."""

    what: str
    expected: str
    got: str


@dataclass(frozen=True, slots=True)
class CaseResult:
    """The outcome of one case."""

    file: str
    name: str
    mismatches: tuple[Mismatch, ...]
    decision: Decision | None
    error: str | None = None

    @property
    def passed(self) -> bool:
        """True when the decision met every expectation."""
        return not self.mismatches and self.error is None


@dataclass
class CaseRun:
    """All case results of a run, plus case files that could not be read."""

    results: list[CaseResult] = field(default_factory=list)
    load_errors: list[PolicyLoadError] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when every case passed and every case file loaded."""
        return not self.load_errors and bool(self.results) and all(r.passed for r in self.results)


def load_cases(path: str | Path) -> list[PolicyCase]:
    """The cases of one file (one case, or `cases:` with a list)."""
    file = str(path)
    text = read_yaml_file(path)
    if _has_top_level_key(text, "cases"):
        many, _ = load_yaml_model(text, CaseFile, file=file)
        return list(many.cases)
    one, _ = load_yaml_model(text, PolicyCase, file=file)
    return [one]


def _has_top_level_key(text: str, key: str) -> bool:
    return any(line.startswith(f"{key}:") for line in text.splitlines())


def case_files(directory: str | Path) -> list[Path]:
    """Case files in a directory (recursively), sorted: *.yaml and *.yml."""
    root = Path(directory)
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())


def run_case(engine: PolicyEngine, case: PolicyCase, file: str = "") -> CaseResult:
    """Decide the case's event and compare with its expectation."""
    located = (
        [KnownAddress(a.address, a.country, a.jurisdiction) for a in case.located]
        if case.located is not None
        else None
    )
    try:
        decision = engine.decide(
            case.event, case.stream, case.destination, case.detected, located=located
        )
    except UnknownStream as exc:
        return CaseResult(file, case.name, (), None, str(exc))
    return CaseResult(file, case.name, tuple(compare(case.expect, decision)), decision)


def compare(expect: Expectation, decision: Decision) -> Iterator[Mismatch]:
    """Every difference between an expectation and a decision."""
    if expect.outcome is not None and expect.outcome != decision.outcome:
        yield Mismatch("outcome", expect.outcome, decision.outcome)
    actions = decision.actions()
    for path, wanted in (expect.fields or {}).items():
        got = actions.get(path, "absent")
        if got != wanted:
            yield Mismatch(f"fields.{path}", wanted, got)
    for rule_id in expect.rule_ids or ():
        if rule_id not in decision.rule_ids:
            yield Mismatch("rule_ids", f"contains {rule_id}", ", ".join(decision.rule_ids))
    verdict = decision.egress
    if expect.egress is not None:
        got = verdict.outcome if verdict else "(no destination)"
        if got != expect.egress:
            yield Mismatch("egress", expect.egress, got)
    if expect.egress_rule is not None:
        got = verdict.rule_id if verdict else "(no destination)"
        if got != expect.egress_rule:
            yield Mismatch("egress_rule", expect.egress_rule, got)
    if expect.egress_logged is not None:
        got_logged = verdict.logged if verdict else None
        if got_logged != expect.egress_logged:
            yield Mismatch("egress_logged", str(expect.egress_logged).lower(), str(got_logged))
    for text in expect.reasons_contain or ():
        if not any(text in reason for reason in decision.reasons):
            yield Mismatch(
                "reasons",
                f"a reason containing {text!r}",
                " | ".join(decision.reasons) or "(no reasons)",
            )
    for path, types in (expect.detected or {}).items():
        fd = decision.field(path)
        got_types = list(fd.detected) if fd else []
        if sorted(types) != got_types:
            yield Mismatch(f"detected.{path}", ", ".join(sorted(types)), ", ".join(got_types))
    if expect.event_time_ms is not None and expect.event_time_ms != decision.event_time_ms:
        yield Mismatch("event_time_ms", str(expect.event_time_ms), str(decision.event_time_ms))


def run_cases(engine: PolicyEngine, directory: str | Path) -> CaseRun:
    """Run every case file under `directory` against the engine's policy."""
    run = CaseRun()
    for path in case_files(directory):
        try:
            cases = load_cases(path)
        except PolicyLoadError as exc:
            run.load_errors.append(exc)
            continue
        for case in cases:
            run.results.append(run_case(engine, case, str(path)))
    return run
