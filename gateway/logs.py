"""structlog configured once for every fjordgate process, with personal values scrubbed.

JSON lines in production (not a terminal), a readable console renderer on a
terminal. Values of fields marked personal never reach a log line: the
`scrub_personal` processor replaces them before rendering.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

REDACTED = "[personal]"

# Field names whose values are personal wherever they appear in a log event.
# Policies add their declared personal fields at load time (mark_personal).
_DEFAULT_PERSONAL = frozenset(
    {
        "fodselsnummer",
        "d_nummer",
        "h_nummer",
        "national_id",
        "driver_id",
        "plate",
        "email",
        "phone",
        "ip_address",
        "iban",
        "kontonummer",
        "payment_card",
        "name",
        "value",
        "raw",
        "event",
    }
)
_personal: set[str] = set(_DEFAULT_PERSONAL)
_lock = threading.Lock()
_configured = False


def mark_personal(field_names: Iterable[str]) -> None:
    """Declare more field names whose values must never be logged."""
    with _lock:
        _personal.update(name.lower() for name in field_names)


def personal_fields() -> frozenset[str]:
    """The field names whose values are scrubbed from every log line."""
    return frozenset(_personal)


def _scrub(value: Any, depth: int = 0) -> Any:
    if depth > 8:
        return REDACTED
    if isinstance(value, dict):
        return {
            k: (REDACTED if str(k).lower() in _personal else _scrub(v, depth + 1))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_scrub(v, depth + 1) for v in value]
    return value


def scrub_personal(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: drop the values of fields marked personal, at any depth.

    The log message itself (structlog's "event" key) is kept: it is a constant
    string written by us, never user data.
    """
    for key in list(event_dict):
        if key == "event":
            continue
        if key.lower() in _personal:
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _scrub(event_dict[key])
    return event_dict


class _CurrentStderr:
    """Writes to whatever `sys.stderr` is at the time of the write.

    Test runners and CLI runners swap and close `sys.stderr`; a logger that
    captured the stream at configure time would then write to a closed file.
    """

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def console_renderer(*, colors: bool) -> structlog.dev.ConsoleRenderer:
    """The renderer for a terminal. Its tracebacks are plain, not rich's, which show each
    frame's local variables: those hold the events' values."""
    return structlog.dev.ConsoleRenderer(
        colors=colors, exception_formatter=structlog.dev.plain_traceback
    )


def configure_logging(*, json: bool | None = None, level: str = "INFO") -> None:
    """Configure structlog once per process; later calls do nothing.

    `json=None` picks JSON when stderr is not a terminal.
    """
    global _configured
    with _lock:
        if _configured:
            return
        _configured = True
    use_json = (not sys.stderr.isatty()) if json is None else json
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else console_renderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            scrub_personal,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        # Not cached: a cached logger keeps the processors of its first use, so
        # `structlog.testing.capture_logs` (and any later reconfiguration) would not
        # reach it. Log lines are per batch or rarer, never per event.
        cache_logger_on_first_use=False,
    )
