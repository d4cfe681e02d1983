"""CLI of this package, mounted under `fjordgate` by gateway/cli.py: `pii` and `keys`.

`fjordgate pii scan FILE|-` prints one JSON object per finding and a summary
on stderr; `fjordgate keys new|list|rotate|shred` manage a keyring file.
Neither prints a personal value (unless `--show-values`) nor a key.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext, suppress
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import IO, Any, Final, NoReturn

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from audit import AuditError, AuditLog, SigningKey
from gateway.pii.detector import Detector
from gateway.pii.errors import PiiError, ScanLimitError
from gateway.pii.findings import PII_TYPES
from gateway.pii.keyring import Keyring

DEFAULT_MAX_LINE_BYTES: Final = 64 * 1024 * 1024
PROGRESS_MIN_BYTES: Final = 1024 * 1024
_SKIP_CHUNK: Final = 1024 * 1024

pii_app = typer.Typer(help="Find personal data in text and JSON lines.", no_args_is_help=True)
keys_app = typer.Typer(
    help="Manage a keyring of pseudonymisation and field-encryption keys.", no_args_is_help=True
)


class InvalidUtf8(StrEnum):
    REPLACE = "replace"
    FAIL = "fail"


@dataclass
class ScanStats:
    lines: int = 0
    findings: Counter[str] = field(default_factory=Counter)
    synthetic: int = 0
    replaced_utf8_lines: int = 0
    skipped_lines: int = 0


def _err(message: str) -> None:
    print(message, file=sys.stderr)


def _lines(stream: IO[bytes], max_line_bytes: int) -> Iterator[tuple[bytes | None, int]]:
    """Lines of a byte stream (without the newline) and the bytes consumed for each.

    A line longer than `max_line_bytes` is yielded as None after being skipped
    in chunks, so an endless line never has to fit in memory.
    """
    while True:
        raw = stream.readline(max_line_bytes + 1)
        if not raw:
            return
        consumed = len(raw)
        if len(raw) > max_line_bytes and not raw.endswith(b"\n"):
            while True:
                chunk = stream.readline(_SKIP_CHUNK)
                consumed += len(chunk)
                if not chunk or chunk.endswith(b"\n"):
                    break
            yield None, consumed
            continue
        if raw.endswith(b"\n"):
            raw = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
        yield raw, consumed


def _progress(total: int | None, enabled: bool) -> Progress | None:
    if not enabled or total is None or total < PROGRESS_MIN_BYTES or not sys.stderr.isatty():
        return None
    return Progress(
        TextColumn("scanning"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )


_INVALID_UTF8_OPTION: Final = typer.Option(
    InvalidUtf8.REPLACE,
    "--invalid-utf8",
    help="replace: read undecodable bytes as U+FFFD (one character each) and go on; "
    "fail: stop at the first such line.",
)


@pii_app.command("scan")
def scan(
    source: str = typer.Argument(..., metavar="FILE|-", help="File to scan, or - for stdin."),
    jsonl: bool = typer.Option(
        False, "--jsonl", help="Each line is a JSON document: scan every string value."
    ),
    show_values: bool = typer.Option(
        False, "--show-values", help="Include the found values in the output (personal data!)."
    ),
    types: str | None = typer.Option(
        None,
        "--types",
        help="Comma-separated types to look for (default: all; see `fjordgate pii types`).",
    ),
    invalid_utf8: InvalidUtf8 = _INVALID_UTF8_OPTION,
    max_line_bytes: int = typer.Option(
        DEFAULT_MAX_LINE_BYTES,
        "--max-line-bytes",
        min=1,
        help="Lines longer than this are skipped and reported (documented limit).",
    ),
    progress: bool = typer.Option(
        True, "--progress/--no-progress", help="Progress bar on a terminal for files over 1 MiB."
    ),
) -> None:
    """Print one JSON object per finding: line, start, end (characters), type, field.

    Exit status: 0 when every line was scanned, 1 when some lines could not be
    (reported on stderr), 2 on a usage error or with --invalid-utf8 fail.
    """
    try:
        detector = Detector(types=types.split(",") if types else None)
    except ValueError as exc:
        _err(f"fjordgate pii scan: {exc}")
        raise typer.Exit(2) from None
    total: int | None = None
    if source == "-":
        stream_cm: AbstractContextManager[IO[bytes]] = nullcontext(sys.stdin.buffer)
    else:
        path = Path(source)
        try:
            stream_cm = path.open("rb")
            total = os.fstat(stream_cm.fileno()).st_size
        except OSError as exc:
            _err(f"fjordgate pii scan: cannot read {source}: {exc.strerror}")
            raise typer.Exit(2) from None
    stats = ScanStats()
    out = sys.stdout.buffer
    bar = _progress(total, progress)
    with stream_cm as stream, bar if bar is not None else nullcontext():
        task = bar.add_task("scan", total=total) if bar is not None else None
        for number, (raw, consumed) in enumerate(_lines(stream, max_line_bytes), start=1):
            stats.lines += 1
            if bar is not None and task is not None:
                bar.advance(task, consumed)
            if raw is None:
                stats.skipped_lines += 1
                _err(
                    f"line {number}: longer than {max_line_bytes} bytes; skipped (--max-line-bytes)"
                )
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                if invalid_utf8 is InvalidUtf8.FAIL:
                    _err(
                        f"line {number}: invalid UTF-8 at byte {exc.start} of the line; "
                        "re-encode the input as UTF-8 or use --invalid-utf8 replace"
                    )
                    raise typer.Exit(2) from None
                stats.replaced_utf8_lines += 1
                text = raw.decode("utf-8", errors="replace")
            records = _scan_line(detector, text, number, jsonl, show_values, stats)
            if records:
                out.write(b"".join(orjson.dumps(r) + b"\n" for r in records))
    out.flush()
    _summary(stats)
    if stats.skipped_lines:
        raise typer.Exit(1)


def _scan_line(
    detector: Detector,
    text: str,
    number: int,
    jsonl: bool,
    show_values: bool,
    stats: ScanStats,
) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    if not jsonl:
        for f in detector.scan(text):
            record: dict[str, Any] = {
                "line": number,
                "start": f.start,
                "end": f.end,
                "type": f.type,
                "synthetic": f.synthetic,
            }
            if show_values:
                record["value"] = text[f.start : f.end]
            records.append(record)
    else:
        if not text.strip():
            return records
        try:
            doc = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            stats.skipped_lines += 1
            # orjson's message names the position, never the content.
            _err(f"line {number}: not valid JSON ({exc.msg}, char {exc.pos}); skipped")
            return records
        try:
            for path, value in detector.strings(doc):
                for f in detector.scan(value, context=path.rpartition(".")[2]):
                    record = {
                        "line": number,
                        "field": path,
                        "start": f.start,
                        "end": f.end,
                        "type": f.type,
                        "synthetic": f.synthetic,
                    }
                    if show_values:
                        record["value"] = value[f.start : f.end]
                    records.append(record)
        except ScanLimitError as exc:
            stats.skipped_lines += 1
            _err(f"line {number}: {exc}; skipped")
            return []
    for r in records:
        stats.findings[r["type"]] += 1
        stats.synthetic += bool(r["synthetic"])
    return records


def _summary(stats: ScanStats) -> None:
    total = sum(stats.findings.values())
    per_type = ", ".join(f"{t} {stats.findings[t]}" for t in PII_TYPES if stats.findings[t])
    line = f"pii scan: {stats.lines} lines, {total} findings" + (
        f": {per_type}" if per_type else ""
    )
    if stats.synthetic:
        line += f" ({stats.synthetic} synthetic)"
    _err(line)
    if stats.replaced_utf8_lines:
        _err(
            f"pii scan: {stats.replaced_utf8_lines} lines had invalid UTF-8; undecodable bytes "
            "were read as U+FFFD, one character each"
        )
    if stats.skipped_lines:
        _err(f"pii scan: {stats.skipped_lines} lines could not be scanned (see above)")


@pii_app.command("types")
def list_types() -> None:
    """List the personal-data types the detector reports."""
    for name in PII_TYPES:
        print(name)


# -- keys ---------------------------------------------------------------------------------

_KEYRING_OPTION = typer.Option(
    ...,
    "--keyring",
    "-k",
    envvar="FJORDGATE_KEYRING",
    help="Keyring file (mode 0600). Also FJORDGATE_KEYRING.",
)
_AUDIT_DIR_OPTION = typer.Option(
    None,
    "--audit-dir",
    envvar="FJORDGATE_AUDIT_DIR",
    file_okay=False,
    help="Record the change in the audit log in this directory (one of its own, e.g. "
    "/var/lib/fjordgate/audit/keys). Needs --audit-key. Also FJORDGATE_AUDIT_DIR.",
)
_AUDIT_KEY_OPTION = typer.Option(
    None,
    "--audit-key",
    envvar="FJORDGATE_AUDIT_KEY",
    dir_okay=False,
    help="The audit log's Ed25519 signing key (mode 0600). Also FJORDGATE_AUDIT_KEY.",
)

KEY_AUDIT_TYPE: Final = "key_rotation"


def _fail(exc: PiiError) -> typer.Exit:
    _err(f"fjordgate keys: {exc}")
    return typer.Exit(1)


def _reason(exc: BaseException) -> str:
    """What went wrong, in words that hold no key material (paths and errno texts only)."""
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return where + (exc.strerror or type(exc).__name__)
    return str(exc) or type(exc).__name__


class _KeyAudit:
    """The audit log one `fjordgate keys` command records its change in (or none).

    The log is opened before anything changes, so a log that cannot be opened (held by
    another process, unwritable, a wrong key) stops the command with the keyring untouched.
    Every message says whether the keyring was changed.
    """

    def __init__(
        self, command: str, keyring: Path, directory: Path | None, key_file: Path | None
    ) -> None:
        self.command = command
        self.keyring = keyring
        self.directory = directory
        self.log: AuditLog | None = None
        if directory is None and key_file is None:
            return
        if directory is None or key_file is None:
            self.error(
                "--audit-dir and --audit-key go together (also FJORDGATE_AUDIT_DIR and "
                "FJORDGATE_AUDIT_KEY); the keyring was not changed",
                code=2,
            )
        try:
            self.log = AuditLog.open(directory, SigningKey.load(key_file))
        except (AuditError, OSError, ValueError) as exc:
            self.error(
                f"cannot open the audit log {directory}: {_reason(exc)}; the keyring was "
                "not changed"
            )

    def error(self, message: str, code: int = 1) -> NoReturn:
        _err(f"fjordgate keys {self.command}: {message}")
        self.abandon()
        raise typer.Exit(code)

    def abandon(self) -> None:
        """Close the log without a record (nothing changed); a failure here changes nothing."""
        if self.log is not None:
            log, self.log = self.log, None
            with suppress(Exception):
                log.close()

    def record(self, action: str, key_id: str, **fields: Any) -> int:
        """Append one durable `key_rotation` record; returns its seq. Raises on failure."""
        assert self.log is not None
        record: dict[str, Any] = {
            "type": KEY_AUDIT_TYPE,
            "component": "keys",
            "action": action,
            "keyring": self.keyring.name,
            "key_id": key_id,
            **fields,
        }
        return self.log.append(record).seq

    def finish(self, done: str, seq: int) -> None:
        """Close the log (writing its signed tree head) after a recorded change."""
        assert self.log is not None
        log, self.log = self.log, None
        try:
            log.close()
        except Exception as exc:  # any failure is reported; the record is durable already
            _err(
                f"fjordgate keys {self.command}: {done} and recorded in the audit log "
                f"{self.directory} (record {seq}), but closing the log failed: {_reason(exc)}; "
                "its signed tree head is written when the log is next opened"
            )
            raise typer.Exit(1) from None

    def conclude(
        self, done: str, action: str, key_id: str, *, changed: str, advice: str = "", **fields: Any
    ) -> None:
        """After a change to the keyring: record it and close the log (without a log, warn);
        then print `done`. A record that fails is reported as an unaudited change."""
        if self.log is None:
            self.unaudited_warning()
        else:
            try:
                seq = self.record(action, key_id, **fields)
            except Exception as exc:  # whatever failed, the message below says what changed
                self.error(
                    f"the keyring WAS {changed}; but recording it in the audit log "
                    f"{self.directory} failed: {_reason(exc)}. The change is not audited: "
                    f"{advice}note it in your change log and repair the audit log"
                )
            self.finish(done, seq)
        print(done)

    def unaudited_warning(self) -> None:
        if self.log is None:
            _err(
                f"warning: fjordgate keys {self.command}: this change is not audited (no "
                "--audit-dir/--audit-key); keep your own record of it"
            )


@keys_app.command("new")
def keys_new(
    keyring: Path = _KEYRING_OPTION,
    force: bool = typer.Option(
        False, "--force", help="Replace an existing keyring (its keys are lost)."
    ),
    audit_dir: Path | None = _AUDIT_DIR_OPTION,
    audit_key: Path | None = _AUDIT_KEY_OPTION,
) -> None:
    """Create a keyring file with one fresh active key."""
    audit = _KeyAudit("new", keyring, audit_dir, audit_key)
    replaced: list[str] | None = None
    if audit.log is not None and force and keyring.exists():
        # The keys of a replaced keyring are destroyed: the record names them.
        try:
            replaced = Keyring.load(keyring).key_ids()
        except PiiError:
            replaced = []
    try:
        ring = Keyring.generate(keyring, overwrite=force)
    except PiiError as exc:
        audit.abandon()
        raise _fail(exc) from None
    fields: dict[str, Any] = {"active_key_id": ring.active_id}
    if replaced is not None:
        fields["replaced_key_ids"] = replaced
    audit.conclude(
        f"created {keyring} with active key {ring.active_id}",
        "new",
        ring.active_id,
        changed=f"created: {keyring} with active key {ring.active_id}",
        **fields,
    )


@keys_app.command("list")
def keys_list(
    keyring: Path = _KEYRING_OPTION,
    as_json: bool = typer.Option(False, "--json", help="One JSON object per key."),
) -> None:
    """List key ids, creation dates and states (never the keys)."""
    try:
        ring = Keyring.load(keyring)
    except PiiError as exc:
        raise _fail(exc) from None
    if as_json:
        for info in ring.list():
            print(
                orjson.dumps(
                    {"key_id": info.key_id, "created": info.created, "state": info.state}
                    | ({"shredded": info.shredded} if info.shredded else {})
                ).decode()
            )
        return
    table = Table("key id", "created", "state", "shredded")
    for info in ring.list():
        table.add_row(info.key_id, info.created, info.state, info.shredded or "")
    Console().print(table)


@keys_app.command("rotate")
def keys_rotate(
    keyring: Path = _KEYRING_OPTION,
    audit_dir: Path | None = _AUDIT_DIR_OPTION,
    audit_key: Path | None = _AUDIT_KEY_OPTION,
) -> None:
    """Add a fresh key and make it active; older keys stay for decryption."""
    try:
        ring = Keyring.load(keyring)
    except PiiError as exc:
        raise _fail(exc) from None
    audit = _KeyAudit("rotate", keyring, audit_dir, audit_key)
    try:
        previous = ring.active_id
        new = ring.rotate()
    except PiiError as exc:
        audit.abandon()
        raise _fail(exc) from None
    done = f"active key is now {new} (was {previous})"
    audit.conclude(
        done,
        "rotate",
        new,
        changed=f"rotated: {done}",
        advice="do not rotate again for it; ",
        active_key_id=new,
        old_key_id=previous,
        new_key_id=new,
    )


@keys_app.command("shred")
def keys_shred(
    key_id: str = typer.Argument(..., help="Id of the (retired) key to destroy."),
    keyring: Path = _KEYRING_OPTION,
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
    audit_dir: Path | None = _AUDIT_DIR_OPTION,
    audit_key: Path | None = _AUDIT_KEY_OPTION,
) -> None:
    """Destroy a key: everything encrypted with it becomes unreadable, for good.

    With --audit-dir the shred is recorded first: the record is durable before the key is
    destroyed, and the key is not destroyed when it cannot be recorded.
    """
    try:
        ring = Keyring.load(keyring)
        info = ring.check_shred(key_id)
    except PiiError as exc:
        raise _fail(exc) from None
    if info.state == "shredded":
        print(f"key {key_id} was already shredded at {info.shredded}; nothing changed")
        return
    if not yes and not typer.confirm(
        f"Shred key {key_id}? Data encrypted with it can never be decrypted again."
    ):
        raise typer.Exit(1)
    audit = _KeyAudit("shred", keyring, audit_dir, audit_key)
    seq = -1
    if audit.log is not None:
        try:
            seq = audit.record("shred", key_id, active_key_id=ring.active_id)
        except Exception as exc:  # whatever failed, the message below says what changed
            audit.error(
                f"key {key_id} was NOT shredded: recording the shred in the audit log "
                f"{audit_dir} failed first: {_reason(exc)}. The keyring is unchanged; repair "
                "the audit log and run the command again"
            )
    try:
        ring.shred(key_id)
    except PiiError as exc:
        if audit.log is not None:
            audit.error(
                f"key {key_id} was NOT shredded: {exc}. The audit log {audit_dir} already "
                f"records the shred (record {seq}); fix the cause and run the command again, "
                "which records it once more"
            )
        raise _fail(exc) from None
    done = f"shredded key {key_id}"
    if audit.log is not None:
        audit.finish(done, seq)
    else:
        audit.unaudited_warning()
    print(done)


def register(root: typer.Typer) -> None:
    """Mount this package's commands on the `fjordgate` root."""
    root.add_typer(pii_app, name="pii")
    root.add_typer(keys_app, name="keys")
