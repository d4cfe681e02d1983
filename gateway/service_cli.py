"""CLI of this package, mounted under `fjordgate` by gateway/cli.py.

Not landed yet: the gateway service and the embedded demo (issue #8).
"""

from __future__ import annotations

import sys

import typer


def _pending(name: str) -> typer.Typer:
    group = typer.Typer(
        help="The gateway service and the embedded demo (not available yet: issue #8)."
    )

    @group.callback(invoke_without_command=True)
    def pending(ctx: typer.Context) -> None:
        if ctx.resilient_parsing:
            return
        print(
            f"fjordgate {name}: not available yet: the gateway service and the embedded demo "
            "(issue #8) "
            "has not landed in this build.",
            file=sys.stderr,
        )
        raise typer.Exit(code=2)

    return group


def register(root: typer.Typer) -> None:
    """Mount this package's commands on the `fjordgate` root."""
    root.add_typer(_pending("demo"), name="demo")
    root.add_typer(_pending("gateway"), name="gateway")
