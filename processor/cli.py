"""CLI of this package, mounted under `fjordgate` by gateway/cli.py.

Not landed yet: the windowing processor (issue #9).
"""

from __future__ import annotations

import sys

import typer


def _pending(name: str) -> typer.Typer:
    group = typer.Typer(help="The windowing processor (not available yet: issue #9).")

    @group.callback(invoke_without_command=True)
    def pending(ctx: typer.Context) -> None:
        if ctx.resilient_parsing:
            return
        print(
            f"fjordgate {name}: not available yet: the windowing processor (issue #9) "
            "has not landed in this build.",
            file=sys.stderr,
        )
        raise typer.Exit(code=2)

    return group


def register(root: typer.Typer) -> None:
    """Mount this package's commands on the `fjordgate` root."""
    root.add_typer(_pending("processor"), name="processor")
