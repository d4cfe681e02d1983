"""CLI of the location package, mounted under `fjordgate` by gateway/cli.py: locate, doctor, geo."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from policies import load_policy
from policies.errors import PolicyError
from policies.location.doctor import DoctorConfig, GeoConfig, load_doctor_config, run_doctor
from policies.location.egress import decide_egress
from policies.location.errors import LocationError
from policies.location.geodata import default_geo_dir, geo_info, update_geo
from policies.location.placement import placement_record, worst_status

_STATUS_STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}


def _fail(error: Exception) -> typer.Exit:
    print(f"error: {error}", file=sys.stderr)
    return typer.Exit(code=2)


def locate(
    target: Annotated[
        str, typer.Argument(metavar="ADDRESS|HOST", help="An IP address or host name.")
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object per address.")
    ] = False,
    geo_dir: Annotated[
        Path | None, typer.Option("--geo-dir", help="Folder of country.mmdb and asn.mmdb.")
    ] = None,
    country_db: Annotated[
        Path | None, typer.Option("--country-db", help="Country database file.")
    ] = None,
    asn_db: Annotated[Path | None, typer.Option("--asn-db", help="ASN database file.")] = None,
    owners: Annotated[
        Path | None, typer.Option("--owners", help="Network-owner data file.")
    ] = None,
    policy_file: Annotated[
        Path | None,
        typer.Option(
            "--policy",
            help="Also decide egress to the target under this policy (with --json: one "
            "object with `locations` and `egress`).",
        ),
    ] = None,
) -> None:
    """Country, ASN, owner and jurisdiction of every address a host resolves to."""
    config = GeoConfig(dir=geo_dir, country_db=country_db, asn_db=asn_db, owners=owners)
    decision = None
    try:
        policy = load_policy(policy_file) if policy_file else None
        with config.open() as locator:
            locations = locator.locate_host(target)
            if policy is not None:
                decision = decide_egress(target, policy, locator)
    except (LocationError, PolicyError) as error:
        raise _fail(error) from None
    if as_json:
        if decision is not None:
            record = decision.to_record()
            typer.echo(
                json.dumps(
                    {"locations": [loc.to_json() for loc in locations], "egress": record},
                    ensure_ascii=False,
                )
            )
            return
        # One JSON object per line, one line per address (JSON Lines).
        for location in locations:
            typer.echo(json.dumps(location.to_json(), ensure_ascii=False))
        return
    table = Table(title=f"fjordgate locate {target}")
    for column in ("address", "country", "ASN", "owner", "jurisdiction"):
        table.add_column(column)
    for loc in locations:
        table.add_row(
            loc.address,
            loc.country or "?",
            f"AS{loc.asn}" if loc.asn else "?",
            loc.owner or "?",
            loc.jurisdiction or "?",
        )
    console = Console()
    console.print(table)
    if decision is not None:
        style = "green" if decision.allowed else "bold red"
        console.print(
            f"egress: [{style}]{decision.outcome}[/] by rule {decision.rule_id}"
            + (" (logged)" if decision.logged else "")
        )
        for reason in decision.reasons:
            console.print(f"  {reason}", highlight=False)


def doctor(
    config_file: Annotated[
        Path | None, typer.Option("--config", help="Doctor configuration (YAML).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Run every placement check: exit 1 when one fails, 2 when the configuration is wrong."""
    try:
        config = load_doctor_config(config_file) if config_file else DoctorConfig()
        report = run_doctor(config)
    except (LocationError, PolicyError) as error:
        raise _fail(error) from None
    outcome = worst_status(report.results)
    if as_json:
        typer.echo(json.dumps(placement_record(report.results, report.policy), indent=2))
    else:
        table = Table(
            title=f"fjordgate doctor ({report.policy.metadata.name}, {report.policy.mode})"
        )
        table.add_column("check")
        table.add_column("status")
        table.add_column("detail", overflow="fold")
        table.add_column("fix", overflow="fold")
        for result in report.results:
            style = _STATUS_STYLE[result.status]
            table.add_row(result.name, f"[{style}]{result.status}[/]", result.detail, result.hint)
        console = Console()
        console.print(table)
        console.print(f"overall: [{_STATUS_STYLE[outcome]}]{outcome}[/]")
    if outcome == "fail":
        raise typer.Exit(code=1)


geo_app = typer.Typer(
    help="The GeoIP and ASN databases: fetch them, show their age.", no_args_is_help=True
)


@geo_app.command("update")
def geo_update(
    directory: Annotated[
        Path | None, typer.Option("--dir", help="Cache folder (default: ~/.cache/fjordgate/geo).")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Fetch even when the versions are current.")
    ] = False,
) -> None:
    """Fetch the @ip-location-db country and ASN packages and convert them to mmdb."""
    try:
        result = update_geo(directory, force=force)
    except LocationError as error:
        raise _fail(error) from None
    verb = "updated" if result.updated else "already current"
    typer.echo(
        f"{result.directory}: {verb} (country {result.country_version}, ASN {result.asn_version})"
    )


@geo_app.command("info")
def geo_info_command(
    directory: Annotated[
        Path | None, typer.Option("--dir", help="Cache folder (default: ~/.cache/fjordgate/geo).")
    ] = None,
    policy_file: Annotated[
        Path | None,
        typer.Option("--policy", help="Judge the age against this policy's geoip.max_age_days."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show each database's type, build date and age; with --policy, exit 1 when too old."""
    try:
        info = geo_info(directory or default_geo_dir())
        policy = load_policy(policy_file) if policy_file else None
    except (LocationError, PolicyError) as error:
        raise _fail(error) from None
    limit = policy.geoip.max_age_days if policy else None
    rows = [
        {
            "path": str(db.path),
            "database_type": db.database_type,
            "built": dt.datetime.fromtimestamp(db.build_epoch, dt.UTC).isoformat(),
            "age_days": round(db.age_days(), 1),
            "node_count": db.node_count,
            "stale": None if limit is None else db.age_days() > limit,
        }
        for db in info.databases
    ]
    stale = any(row["stale"] for row in rows)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "directory": str(info.directory),
                    "databases": rows,
                    "packages": info.packages,
                    "max_age_days": limit,
                },
                indent=2,
            )
        )
    else:
        table = Table(title=f"geo databases in {info.directory}")
        for column in ("file", "type", "built (UTC)", "age (days)"):
            table.add_column(column)
        if limit is not None:
            table.add_column(f"within {limit} days")
        for row in rows:
            cells = [
                Path(str(row["path"])).name,
                str(row["database_type"]),
                str(row["built"]),
                str(row["age_days"]),
            ]
            if limit is not None:
                cells.append("[bold red]no: stale[/]" if row["stale"] else "[green]yes[/]")
            table.add_row(*cells)
        console = Console()
        console.print(table)
        for package, version in info.packages.items():
            console.print(f"{package} {version}")
    if stale:
        print(
            "error: a geo database is older than the policy allows; run `fjordgate geo update`",
            file=sys.stderr,
        )
        raise typer.Exit(code=1)


def register(root: typer.Typer) -> None:
    """Mount this package's commands on the `fjordgate` root."""
    root.command("locate")(locate)
    root.command("doctor")(doctor)
    root.add_typer(geo_app, name="geo")
