"""CLI of this package, mounted under `fjordgate` by gateway/cli.py.

Not landed yet: the immutable audit log (issue #7).
"""

from __future__ import annotations

import sys

import typer


def _pending(name: str) -> typer.Typer:
    group = typer.Typer(help="The immutable audit log (not available yet: issue #7).")

    @group.callback(invoke_without_command=True)
    def pending(ctx: typer.Context) -> None:
        if ctx.resilient_parsing:
            return
        print(
            f"fjordgate {name}: not available yet: the immutable audit log (issue #7) "
            "has not landed in this build.",
            file=sys.stderr,
        )
        raise typer.Exit(code=2)

    return group


def register(root: typer.Typer) -> None:
    """Mount this package's commands on the `fjordgate` root."""
    root.add_typer(_pending("audit"), name="audit")
