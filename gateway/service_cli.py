"""CLI of the gateway package, mounted under `fjordgate` by gateway/cli.py: `demo` and `gateway`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from gateway.auth import hash_api_key, new_api_key

console = Console()


def _progress_table(stats: object, duration_s: float) -> Table:
    from gateway.demo import DemoStats

    assert isinstance(stats, DemoStats)
    import time

    elapsed = time.monotonic() - stats.started
    table = Table(title=f"fjordgate demo — {min(elapsed, duration_s):4.1f}s / {duration_s:.0f}s")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("events sent (HTTP)", f"{stats.sent:,}")
    table.add_row("accepted (audited, in the local log)", f"{stats.outcomes['accepted']:,}")
    table.add_row(
        "duplicates of retried batches (not kept twice)", f"{stats.outcomes['duplicate']:,}"
    )
    table.add_row("rejected", f"{stats.outcomes['rejected']:,}")
    table.add_row("fields pseudonymised", f"{stats.actions['pseudonymise']:,}")
    table.add_row("free-text spans redacted (fields)", f"{stats.actions['redact']:,}")
    table.add_row("processor: events read", f"{stats.processor_events:,}")
    table.add_row("processor: windows written to SQLite", f"{stats.windows_written:,}")
    return table


def demo(
    duration: Annotated[
        float, typer.Option("--duration", min=1.0, help="Seconds of traffic.")
    ] = 20.0,
    rate: Annotated[int, typer.Option("--rate", min=1, help="Events per second to post.")] = 200,
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Directory for the run's outputs (an earlier run moves to previous-runs/).",
        ),
    ] = Path("fjordgate-demo"),
    time_scale: Annotated[
        float,
        typer.Option("--time-scale", min=1.0, help="Event-time seconds per wall-clock second."),
    ] = 12.0,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Generator seed (default: random).")
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", help="Show the components' info logs.")
    ] = False,
) -> None:
    """Run the whole path in one process: HTTP gateway, local log, processor, SQLite, audit."""
    import logging

    import structlog

    from gateway.demo import EMBEDDED_PLACEMENT_NOTE, Demo
    from gateway.server import tune_gc

    if not verbose:
        # The live table is the demo's output; info lines would tear through it.
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    console.print(
        "[bold]fjordgate demo[/bold]: synthetic norway-traffic events (synthetic "
        "fødselsnummer and plates) → HTTP gateway → policy norway-strict → audit log → "
        "local log → max speed per region per minute → SQLite"
    )
    console.print(f"[dim]Placement: {EMBEDDED_PLACEMENT_NOTE}.[/dim]")
    with Live(console=console, refresh_per_second=4, transient=False) as live:
        runner = Demo(
            out,
            duration_s=duration,
            rate=rate,
            time_scale=time_scale,
            seed=seed,
            on_tick=lambda stats: live.update(_progress_table(stats, duration)),
        )
        tune_gc()
        result = runner.run()
        live.update(_progress_table(result.stats, duration))
    console.print()

    stats = result.stats
    summary = Table(title="Summary")
    summary.add_column("")
    summary.add_column("", justify="right")
    summary.add_row("events in", f"{stats.sent:,}")
    for outcome in ("accepted", "duplicate", "rejected"):
        summary.add_row(f"decisions: {outcome}", f"{stats.outcomes[outcome]:,}")
    for code, count in sorted(stats.reasons.items()):
        summary.add_row(f"  rejected because {code}", f"{count:,}")
    if stats.http_errors:
        for status, count in sorted(stats.http_errors.items()):
            summary.add_row(f"HTTP {status} answers", f"{count:,}")
    summary.add_row(
        "windows written (max speed per region per minute)", f"{stats.windows_written:,}"
    )
    summary.add_row("audit records", f"{result.audit_records:,}")
    console.print(summary)
    if result.top_windows:
        top = Table(title="Fastest windows")
        for name in ("window start", "region", "max speed"):
            top.add_column(name)
        for start, region, speed in result.top_windows:
            top.add_row(start, region, f"{speed:.1f}")
        console.print(top)
    console.print("Placement checks:")
    for check in result.placement:
        console.print(f"  {check['status']:>4}  {check['name']}: {check['detail']}")
    console.print("\nOutputs:")
    console.print(f"  audit log      {result.audit_dir}")
    console.print(f"  public key     {result.public_key_path}")
    console.print(f"  SQLite results {result.sqlite_path}  (table max_speed_per_region)")
    if result.report_path is not None:
        console.print(f"  HTML report    {result.report_path}  ({result.report_note})")
    else:
        console.print(f"  HTML report    not written: {result.report_note}")
    console.print(
        f"\nVerify the audit log: fjordgate audit verify {result.audit_dir} "
        f"--public-key {result.public_key_path}"
    )


gateway_app = typer.Typer(
    help="The gateway service: HTTP and Kafka ingress with policy enforcement.",
    no_args_is_help=True,
)
api_key_app = typer.Typer(help="API keys for producers (only their digests are stored).")
gateway_app.add_typer(api_key_app, name="api-key")


@api_key_app.command("new")
def api_key_new(
    name: Annotated[str, typer.Option("--name", help="Producer name (logs and audit).")],
    streams: Annotated[
        list[str], typer.Option("--stream", help="Stream the key may write (repeat).")
    ],
) -> None:
    """Make a key: prints the key once, and the config entry holding only its digest."""
    key = new_api_key()
    # Plain echo, not rich: the lines must not wrap, they are pasted into YAML.
    typer.echo(f"API key (give it to the producer; it is not stored anywhere): {key}")
    typer.echo("Add to the gateway configuration under api_keys:")
    typer.echo(f"  - name: {name}\n    digest: {hash_api_key(key)}\n    streams: {list(streams)}")


@gateway_app.command("serve")
def serve(
    config: Annotated[
        Path, typer.Option("--config", exists=True, dir_okay=False, help="YAML file.")
    ],
) -> None:
    """Run the production gateway (Kafka-backed) until SIGTERM/SIGINT."""
    from gateway.errors import GatewayError
    from gateway.serve import serve_from_config

    try:
        serve_from_config(config)
    except GatewayError as exc:
        console.print(f"[red]fjordgate gateway serve: {exc}[/red]")
        raise typer.Exit(code=2) from None


def register(root: typer.Typer) -> None:
    """Mount this package's commands on the `fjordgate` root."""
    root.command("demo")(demo)
    root.add_typer(gateway_app, name="gateway")
