"""CLI of the audit package (`fjordgate audit ...`), mounted under `fjordgate` by gateway/cli.py:
key files, verify, inclusion and consistency proofs, subject look-up and report export."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from audit.errors import AuditError
from audit.keys import PublicKey, SigningKey
from audit.segments import instance_logs, list_segments
from audit.verify import ProgressCallback, load_tree_head, verify_log

app = typer.Typer(
    help="The immutable audit log: verify it, prove records, find a subject, export reports.",
    no_args_is_help=True,
)
key_app = typer.Typer(help="Signing keys of the audit log.", no_args_is_help=True)
app.add_typer(key_app, name="key")

_err = Console(stderr=True)

LogsArgument = Annotated[
    Path, typer.Argument(help="A log directory, or one holding instance logs.")
]
InstanceArgument = Annotated[Path, typer.Argument(help="The log directory (one instance).")]
OutputOption = Annotated[
    Path | None, typer.Option("-o", "--output", help="Write here, not stdout.")
]
PublicKeyOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--public-key",
        help="Pinned public key (PEM) the tree heads must be signed with; repeat for several "
        "instances. Without it the key recorded in the log is used (not pinned).",
        exists=True,
        dir_okay=False,
    ),
]


def _keys(paths: list[Path] | None) -> list[PublicKey]:
    return [PublicKey.load(path) for path in paths or []]


def _logs_or_fail(directory: Path, code: int = 2) -> list[Path]:
    logs = instance_logs(directory)
    if not logs:
        raise _fail(
            f"{directory}: no audit log here (no segment files, nor subdirectories holding them)",
            code,
        )
    return logs


def _fail(message: str, code: int = 2) -> typer.Exit:
    _err.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


@contextmanager
def log_progress(directory: Path, label: str) -> Iterator[ProgressCallback | None]:
    """A byte-based progress bar over every segment under `directory` (terminals only)."""
    total = sum(
        path.stat().st_size for log in instance_logs(directory) for _, path in list_segments(log)
    )
    if not _err.is_terminal or total < 8 * 1024 * 1024:
        yield None
        return
    with Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=_err,
        transient=True,
    ) as progress:
        task = progress.add_task(label, total=total)
        yield lambda done: progress.advance(task, done)


@key_app.command("generate")
def key_generate(
    path: Annotated[Path, typer.Argument(help="Where to write the private key (mode 0600).")],
    public_out: Annotated[
        Path | None, typer.Option("--public-out", help="Also write the public key (PEM) here.")
    ] = None,
) -> None:
    """Create a new Ed25519 signing key for the audit log."""
    try:
        key = SigningKey.create(path)
    except AuditError as exc:
        raise _fail(str(exc)) from exc
    if public_out is not None:
        key.public_key.export(public_out)
    typer.echo(f"{key.key_id} written to {path}")


@key_app.command("export")
def key_export(
    path: Annotated[Path, typer.Argument(help="The private signing key file.")],
    out: Annotated[Path, typer.Option("-o", "--output", help="Where to write the public key.")],
) -> None:
    """Write the public key of a signing key file (PEM), for auditors to pin."""
    try:
        key = SigningKey.load(path)
    except AuditError as exc:
        raise _fail(str(exc)) from exc
    key.public_key.export(out)
    typer.echo(f"{key.key_id} public key written to {out}")


@app.command("verify")
def verify(
    directory: LogsArgument,
    public_key: PublicKeyOption = None,
    tree_head: Annotated[
        Path | None,
        typer.Option(
            "--tree-head",
            help="A signed tree head obtained earlier (JSON); the log must still contain it "
            "(detects records cut off the end).",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Fail when the newest records are not yet signed.")
    ] = False,
    archive: Annotated[
        Path | None,
        typer.Option(
            "--archive",
            help="Where `audit archive` moved old segments: verify the "
            "whole log from record 0 (default: from the archive checkpoint).",
            file_okay=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Recompute every hash, the chain, the Merkle roots and every signature.

    Exit 0 when intact; 1 with the first bad record, its segment, byte offset and what is
    wrong.
    """
    try:
        keys = _keys(public_key)
        witness = load_tree_head(tree_head) if tree_head is not None else None
    except (AuditError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    logs = _logs_or_fail(directory, 1)
    reports = []
    with log_progress(directory, "verifying") as progress:
        for log in logs:
            archived = None
            if archive is not None:
                archived = archive / log.name if (archive / log.name).is_dir() else archive
            reports.append(
                verify_log(log, keys, progress=progress, witness=witness, archive=archived)
            )
    failed = [r for r in reports if not r.ok or (strict and r.warnings)]
    if as_json:
        typer.echo(
            orjson.dumps(
                [
                    {
                        "directory": str(r.directory),
                        "log_id": r.log_id,
                        "intact": r.ok,
                        "records": r.records,
                        "tree_heads": r.tree_heads,
                        "segments": r.segments,
                        "pinned": r.pinned,
                        "latest_tree_head": r.latest_tree_head.to_dict()
                        if r.latest_tree_head
                        else None,
                        "problem": None
                        if r.problem is None
                        else {
                            "segment": r.problem.segment,
                            "offset": r.problem.offset,
                            "seq": r.problem.seq,
                            "message": r.problem.message,
                        },
                        "warnings": r.warnings,
                    }
                    for r in reports
                ],
                option=orjson.OPT_INDENT_2,
            ).decode()
        )
    else:
        for r in reports:
            typer.echo(("OK   " if r.ok else "FAIL ") + r.summary())
            for warning in r.warnings:
                typer.echo(f"     warning: {warning}")
    if failed:
        raise typer.Exit(1)


@app.command("archive")
def archive_command(
    directory: LogsArgument,
    before: Annotated[
        str, typer.Option("--before", help="Archive sealed segments signed before this time (UTC).")
    ],
    to: Annotated[
        Path, typer.Option("--to", help="The archive directory (one subdirectory per log).")
    ],
) -> None:
    """Retention: move whole sealed segments older than --before into an archive.

    The log must verify first; each moved segment keeps its final signed tree head, and a
    checkpoint (signed root, Merkle frontier, key records with inclusion proofs) lets the
    writer and `verify` continue without them. Nothing is deleted before the copies are
    fsynced and compared.
    """
    from audit.archive import archive_segments
    from audit.canonical import parse_timestamp

    try:
        cutoff = parse_timestamp(before)
    except ValueError as exc:
        raise _fail(f"--before: {exc}; use e.g. 2026-01-01 or 2026-01-01T00:00:00Z") from exc
    for log in _logs_or_fail(directory):
        try:
            result = archive_segments(log, to, cutoff)
        except AuditError as exc:
            raise _fail(str(exc), 1) from exc
        moved = ", ".join(result.segments) or "nothing (no sealed segment is old enough)"
        typer.echo(
            f"{log}: archived {moved}; {result.records_archived:,} records now in {to / log.name}"
        )


@app.command("prove")
def prove(
    directory: InstanceArgument,
    seq: Annotated[int, typer.Option("--seq", help="Sequence number of the record.")],
    public_key: PublicKeyOption = None,
    out: OutputOption = None,
) -> None:
    """Print an inclusion proof (JSON) of one record against the latest signed tree head."""
    from audit.proofs import prove_inclusion

    try:
        document = prove_inclusion(directory, seq, _keys(public_key))
    except AuditError as exc:
        raise _fail(str(exc), 1) from exc
    _emit(document, out)


@app.command("prove-consistency")
def prove_consistency_command(
    directory: InstanceArgument,
    old_size: Annotated[
        int | None, typer.Option("--old-size", help="Tree size of the older signed tree head.")
    ] = None,
    old_tree_head: Annotated[
        Path | None,
        typer.Option(
            "--old-tree-head",
            help="The older signed tree head (JSON) you hold.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    new_size: Annotated[
        int | None, typer.Option("--new-size", help="Tree size of the newer one (default: latest).")
    ] = None,
    public_key: PublicKeyOption = None,
    out: OutputOption = None,
) -> None:
    """Print a consistency proof (JSON): the older signed tree is a prefix of the newer one."""
    from audit.proofs import prove_consistency

    try:
        if old_tree_head is not None:
            held = load_tree_head(old_tree_head)
            old_size = held.tree_size
        if old_size is None:
            raise _fail("give --old-size N or --old-tree-head FILE")
        document = prove_consistency(directory, old_size, new_size, _keys(public_key))
        if old_tree_head is not None and document["old_tree_head"] != held.to_dict():
            raise _fail(
                "the log's tree head of that size differs from the one you hold: the log was "
                "rewritten since",
                1,
            )
    except (AuditError, ValueError) as exc:
        raise _fail(str(exc), 1) from exc
    _emit(document, out)


@app.command("check-proof")
def check_proof_command(
    proof: Annotated[
        Path,
        typer.Argument(help="A proof file from `prove` or `prove-consistency` ('-' for stdin)."),
    ],
    public_key: PublicKeyOption = None,
) -> None:
    """Check an inclusion or consistency proof on its own, without the log. Exit 1 if invalid."""
    from audit.proofs import check_proof

    data = sys.stdin.buffer.read() if str(proof) == "-" else proof.read_bytes()
    try:
        document = orjson.loads(data)
        keys = _keys(public_key)
    except (orjson.JSONDecodeError, AuditError) as exc:
        raise _fail(f"{proof}: {exc}") from exc
    if not isinstance(document, dict):
        raise _fail(f"{proof}: a proof is a JSON object")
    result = check_proof(document, keys)
    typer.echo(("valid: " if result.ok else "INVALID: ") + result.message)
    if not result.ok:
        raise typer.Exit(1)


@app.command("subject")
def subject(
    directory: LogsArgument,
    subject_id: Annotated[
        str | None,
        typer.Option(
            "--id",
            help="The person's identifier ('-' reads it from stdin, keeping it "
            "out of the shell history). Never printed.",
        ),
    ] = None,
    keyring: Annotated[
        Path | None,
        typer.Option(
            "--keyring", help="The gateway's pseudonymisation keyring (mode 0600).", dir_okay=False
        ),
    ] = None,
    pseudonym: Annotated[
        list[str] | None, typer.Option("--pseudonym", help="Search for this pseudonym directly.")
    ] = None,
    public_key: PublicKeyOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the records as JSON.")] = False,
) -> None:
    """Every record about one person (GDPR Article 15 access requests).

    Computes the person's pseudonyms with the keyring and searches for them; the log never
    holds the identifier itself.
    """
    from rich.table import Table

    from audit.subject import find_subject, load_pseudonym_keys, subject_pseudonyms
    from audit.verify import verify_directory

    needles = list(pseudonym or [])
    shredded: list[str] = []
    if subject_id is not None:
        if keyring is None:
            raise _fail("--id needs --keyring: the pseudonym is keyed")
        value = sys.stdin.readline().rstrip("\n") if subject_id == "-" else subject_id
        try:
            keys, shredded = load_pseudonym_keys(keyring)
        except AuditError as exc:
            raise _fail(str(exc)) from exc
        needles.extend(subject_pseudonyms(value, keys))
    if not needles:
        raise _fail("give --id VALUE --keyring FILE, or --pseudonym TOKEN")
    try:
        keys_pinned = _keys(public_key)
    except AuditError as exc:
        raise _fail(str(exc)) from exc
    with log_progress(directory, "verifying") as progress:
        reports = verify_directory(directory, keys_pinned, progress=progress)
    with log_progress(directory, "searching") as progress:
        matches = find_subject(directory, needles, progress)
    intact = all(r.ok for r in reports)
    if as_json:
        typer.echo(
            orjson.dumps(
                {
                    "log_verified": intact,
                    "pseudonyms_searched": len(needles),
                    "shredded_key_ids": shredded,
                    "records": [
                        {
                            "log": m.log,
                            "segment": m.segment,
                            "offset": m.offset,
                            "fields": m.fields,
                            "record": m.record,
                        }
                        for m in matches
                    ],
                },
                option=orjson.OPT_INDENT_2,
            ).decode()
        )
    else:
        out = Console(width=None if sys.stdout.isatty() else 160)
        status = "[green]verified intact[/green]" if intact else "[red]FAILED verification[/red]"
        out.print(
            f"log: {status}; searched {len(needles)} pseudonyms; {len(matches)} records found"
        )
        for r in reports:
            if not r.ok:
                out.print(f"  {r.summary()}", highlight=False)
        if shredded:
            out.print(
                f"keys {', '.join(shredded)} are shredded: pseudonyms made under them can "
                "no longer be linked to anyone (by design)"
            )
        table = Table("log", "seq", "time", "type", "stream", "outcome", "destination", "fields")
        for m in matches:
            rec = m.record
            table.add_row(
                m.log,
                str(rec.get("seq")),
                str(rec.get("ts")),
                str(rec.get("type")),
                str(rec.get("stream", "")),
                str(rec.get("outcome", "")),
                str(rec.get("destination", "") or ""),
                ", ".join(m.fields),
            )
        if matches:
            out.print(table)
    if not intact:
        raise typer.Exit(1)


@app.command("export")
def export(
    directory: LogsArgument,
    output_format: Annotated[
        str, typer.Option("--format", help="html, json, csv or bundle (.tar.gz or a directory).")
    ],
    out: Annotated[Path, typer.Option("-o", "--output", help="Where to write the report.")],
    period_from: Annotated[
        str | None, typer.Option("--from", help="Start of the period (RFC 3339 or a date), UTC.")
    ] = None,
    period_to: Annotated[
        str | None, typer.Option("--to", help="End of the period (exclusive), UTC.")
    ] = None,
    public_key: PublicKeyOption = None,
) -> None:
    """Write the report for the DPO and the auditor (HTML, JSON, CSV or a verifiable bundle).

    Verification status first, then totals by decision, stream, rule and destination, denied
    egress, placement attestations, policies in force, key rotations and decisions over time.
    Exit 1 when the log does not verify (the report is still written, saying so).
    """
    from audit.canonical import parse_timestamp
    from audit.export import FORMATS, write_bundle, write_csv, write_html, write_json
    from audit.report import build_report

    if output_format not in FORMATS:
        raise _fail(f"--format must be one of {', '.join(FORMATS)}, not {output_format!r}")
    try:
        start = parse_timestamp(period_from) if period_from else None
        end = parse_timestamp(period_to) if period_to else None
    except ValueError as exc:
        raise _fail(f"--from/--to: {exc}; use e.g. 2026-11-01 or 2026-11-01T12:00:00Z") from exc
    _logs_or_fail(directory)
    try:
        keys = _keys(public_key)
    except AuditError as exc:
        raise _fail(str(exc)) from exc
    with log_progress(directory, "reading and verifying") as progress:
        report = build_report(directory, keys, period_from=start, period_to=end, progress=progress)
    writers = {"html": write_html, "json": write_json, "csv": write_csv}
    if output_format == "bundle":
        write_bundle(report, directory, out)
    else:
        writers[output_format](report, out)
    status = "verified intact" if report.intact else "VERIFICATION FAILED"
    typer.echo(
        f"{output_format} report written to {out}: {report.records_in_period:,} records "
        f"in the period, {len(report.instances)} instance log(s), {status}"
    )
    if not report.intact:
        for instance in report.instances:
            if instance.problem:
                typer.echo(f"  {instance.name}: {instance.problem}", err=True)
        raise typer.Exit(1)


def _emit(document: object, out: Path | None) -> None:
    text = orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    if out is None:
        typer.echo(text.decode())
    else:
        out.write_bytes(text + b"\n")
        typer.echo(f"written to {out}")


def register(root: typer.Typer) -> None:
    """Mount this package's commands on the `fjordgate` root."""
    root.add_typer(app, name="audit")
