"""`fjordgate policy ...`: the policy author's tools (check, schema, test, explain, diff).

Mounted under `fjordgate` by gateway/cli.py through `register(root)`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from policies.cases import run_cases
from policies.diff import diff_policies
from policies.egress import KnownAddress
from policies.engine import PolicyEngine
from policies.errors import PolicyError, PolicyLoadError
from policies.explain import explain
from policies.loader import load_policy
from policies.models import Policy
from policies.schema import policy_json_schema

policy_app = typer.Typer(
    help="Author and check policies: check, schema, test, explain, diff.",
    no_args_is_help=True,
)


def _console(stderr: bool = False) -> Console:
    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _load_or_exit(path: Path) -> Policy:
    try:
        return load_policy(path)
    except PolicyLoadError as exc:
        for issue in exc.issues:
            typer.echo(str(issue))
        raise typer.Exit(code=1) from None


@policy_app.command("check")
def check(
    files: Annotated[list[Path], typer.Argument(help="Policy files (or directories) to check.")],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print problems only.")] = False,
) -> None:
    """Validate policy files: `FILE:LINE:COL: message` per problem; exit 1 if any."""
    failed = False
    expanded: list[Path] = []
    for path in files:
        if path.is_dir():  # a directory of policies: its *.yaml and *.yml files
            expanded.extend(sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml")))
        else:
            expanded.append(path)
    if not expanded:
        typer.echo(f"no policy files (*.yaml, *.yml) in {', '.join(map(str, files))}", err=True)
        raise typer.Exit(code=1)
    for path in expanded:
        try:
            policy = load_policy(path)
        except PolicyLoadError as exc:
            failed = True
            for issue in exc.issues:
                typer.echo(str(issue))
            continue
        if not quiet:
            streams = ", ".join(policy.streams)
            typer.echo(f"{path}: ok ({policy.mode}; streams: {streams}; {policy.content_hash})")
    raise typer.Exit(code=1 if failed else 0)


@policy_app.command("schema")
def schema(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file, not stdout.")
    ] = None,
) -> None:
    """Print the JSON Schema of policy files (for editors' YAML support)."""
    text = json.dumps(policy_json_schema(), indent=2, sort_keys=True) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")


@policy_app.command("test")
def test(
    file: Annotated[Path, typer.Argument(help="The policy file.")],
    cases: Annotated[Path, typer.Option("--cases", help="Directory (or file) of test cases.")],
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Show failing cases and the summary only.")
    ] = False,
) -> None:
    """Run test cases (event + stream + destination + expected decision); exit 1 on a failure."""
    policy = _load_or_exit(file)
    run = run_cases(PolicyEngine(policy), cases)
    out = _console()
    for error in run.load_errors:
        for issue in error.issues:
            typer.echo(str(issue))
    for result in run.results:
        where = f"{result.file}::{result.name}"
        if result.passed:
            if not quiet:
                out.print(Text.assemble(("PASS ", "green"), where))
            continue
        out.print(Text.assemble(("FAIL ", "bold red"), where))
        if result.error:
            out.print(f"  {result.error}")
        for mismatch in result.mismatches:
            out.print(f"  {mismatch.what}:")
            out.print(Text.assemble("    expected: ", (mismatch.expected, "green")))
            out.print(Text.assemble("    got:      ", (mismatch.got, "red")))
        if result.decision is not None and result.mismatches:
            for reason in result.decision.reasons:
                out.print(f"    reason: {reason}")
    passed = sum(r.passed for r in run.results)
    failed = len(run.results) - passed
    summary = f"{passed} passed, {failed} failed"
    if run.load_errors:
        summary += f", {len(run.load_errors)} case file(s) unreadable"
    if not run.results and not run.load_errors:
        summary = f"no cases found under {cases}"
    out.print(Text(summary, style="bold green" if run.passed else "bold red"))
    raise typer.Exit(code=0 if run.passed else 1)


def _json_arg(value: str, what: str) -> Any:
    text = value
    if value.startswith("@"):
        try:
            text = Path(value[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            typer.echo(f"{what}: cannot read {value[1:]}: {exc.strerror or exc}", err=True)
            raise typer.Exit(code=2) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        typer.echo(
            f"{what}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})", err=True
        )
        raise typer.Exit(code=2) from None


@policy_app.command("explain")
def explain_command(
    file: Annotated[Path, typer.Argument(help="The policy file.")],
    stream: Annotated[str, typer.Option("--stream", help="Stream the event belongs to.")],
    event: Annotated[str, typer.Option("--event", help="The event as JSON, or @file.json.")],
    destination: Annotated[
        str | None, typer.Option("--destination", help="Where the event would go.")
    ] = None,
    detected: Annotated[
        str | None,
        typer.Option("--detected", help='Detector findings as JSON: {"note": ["phone"]}.'),
    ] = None,
    located: Annotated[
        str | None,
        typer.Option(
            "--located",
            help='Destination addresses as JSON: [{"address": "...", "country": "NO", '
            '"jurisdiction": "NO"}].',
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Explain a decision: each rule considered, matched or not, and why."""
    policy = _load_or_exit(file)
    engine = PolicyEngine(policy)
    event_data = _json_arg(event, "--event")
    if not isinstance(event_data, dict):
        typer.echo("--event: an event is a JSON object", err=True)
        raise typer.Exit(code=2)
    detected_data = _json_arg(detected, "--detected") if detected else None
    located_data = None
    if located:
        raw = _json_arg(located, "--located")
        try:
            located_data = [
                KnownAddress(str(a["address"]), a.get("country"), a.get("jurisdiction"))
                for a in raw
            ]
        except (TypeError, KeyError, AttributeError):
            typer.echo("--located: a list of objects with address, country, jurisdiction", err=True)
            raise typer.Exit(code=2) from None
    try:
        result = explain(
            engine, event_data, stream, destination, detected_data, located=located_data
        )
    except PolicyError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(code=2) from None
    decision = result.decision
    if as_json:
        payload = decision.to_record()
        payload["steps"] = [
            {
                "rule_id": s.rule_id,
                "subject": s.subject,
                "result": s.result,
                "action": s.action,
                "why": s.why,
            }
            for s in result.steps
        ]
        typer.echo(json.dumps(payload, indent=2))
        return
    out = _console()
    table = Table(title=f"{stream}: rules considered", show_lines=False)
    for column in ("rule", "subject", "result", "action", "why"):
        table.add_column(column, overflow="fold")
    styles = {
        "matched": "green",
        "not matched": "dim",
        "needs location": "yellow",
        "denies": "bold red",
    }
    for step in result.steps:
        table.add_row(
            step.rule_id,
            step.subject,
            Text(step.result, style=styles[step.result]),
            step.action or "",
            step.why,
        )
    out.print(table)
    colour = "green" if decision.outcome == "allow" else "bold red"
    out.print(
        Text.assemble(
            "outcome: ",
            (decision.outcome, colour),
            f"  (mode {decision.mode}{', blocks' if decision.blocks else ''})",
        )
    )
    for reason in decision.reasons:
        out.print(f"  reason: {reason}")
    out.print(f"policy: {decision.policy_hash}")


@policy_app.command("diff")
def diff(
    old: Annotated[Path, typer.Argument(help="The policy in force.")],
    new: Annotated[Path, typer.Argument(help="The proposed policy.")],
    exit_code: Annotated[
        bool, typer.Option("--exit-code", help="Exit 1 when an outcome changes.")
    ] = False,
) -> None:
    """Which fields and destinations change outcome between two policies."""
    old_policy = _load_or_exit(old)
    new_policy = _load_or_exit(new)
    changes = diff_policies(old_policy, new_policy)
    out = _console()
    if not changes:
        same = old_policy.content_hash == new_policy.content_hash
        out.print("no change in outcome" + (" (identical policies)" if same else ""))
        return
    table = Table(title=f"{old} → {new}")
    for column in ("kind", "subject", "old", "new"):
        table.add_column(column, overflow="fold")
    for change in changes:
        table.add_row(
            change.kind,
            change.subject,
            Text(change.old, style="red"),
            Text(change.new, style="green"),
        )
    out.print(table)
    out.print(f"{len(changes)} change(s) in outcome")
    if exit_code:
        raise typer.Exit(code=1)


def register(root: typer.Typer) -> None:
    """Mount this package's commands on the `fjordgate` root."""
    root.add_typer(policy_app, name="policy")
