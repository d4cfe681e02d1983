"""The `fjordgate` command: the root that mounts every package's own CLI.

Each package owns its subcommands in its own `cli.py`, which exposes
`register(root)`; this module only mounts them and configures logging once.
"""

from __future__ import annotations

import typer

from audit import cli as audit_cli
from gateway import __version__
from gateway import service_cli as gateway_service_cli
from gateway.logs import configure_logging
from gateway.pii import cli as pii_cli
from policies import cli as policy_cli
from policies.location import cli as location_cli
from processor import cli as processor_cli

app = typer.Typer(
    name="fjordgate",
    help="Data-sovereignty gateway and stream processor that keeps personal data in Norway.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # a traceback must never print event values
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fjordgate {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    log_json: bool | None = typer.Option(
        None, "--log-json/--log-console", help="Log format (default: JSON unless a terminal)."
    ),
    log_level: str = typer.Option("INFO", "--log-level", help="DEBUG, INFO, WARNING or ERROR."),
) -> None:
    """fjordgate: tag, minimise, keep in Norway, and account for personal data."""
    configure_logging(json=log_json, level=log_level)


for package_cli in (
    gateway_service_cli,
    policy_cli,
    pii_cli,
    location_cli,
    processor_cli,
    audit_cli,
):
    package_cli.register(app)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
