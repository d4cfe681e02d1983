"""CLI of this package, mounted under `fjordgate` by gateway/cli.py.

Not landed yet: location, jurisdiction and placement checks (issue #6).
"""

from __future__ import annotations

import sys

import typer


def _pending(name: str) -> typer.Typer:
    group = typer.Typer(
        help="Location, jurisdiction and placement checks (not available yet: issue #6)."
    )

    @group.callback(invoke_without_command=True)
    def pending(ctx: typer.Context) -> None:
        if ctx.resilient_parsing:
            return
        print(
            f"fjordgate {name}: not available yet: location, jurisdiction and placement checks "
            "(issue #6) "
            "has not landed in this build.",
            file=sys.stderr,
        )
        raise typer.Exit(code=2)

    return group


def register(root: typer.Typer) -> None:
    """Mount this package's commands on the `fjordgate` root."""
    root.add_typer(_pending("locate"), name="locate")
    root.add_typer(_pending("doctor"), name="doctor")
    root.add_typer(_pending("geo"), name="geo")
