"""The gateway's one exception hierarchy: every error a caller or operator can cause.

Messages name what was wrong, where (stream, field path, event id, file) and
what to do, and never carry a field value of an event.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base class of every error the gateway raises on purpose."""


class ConfigError(GatewayError):
    """The gateway configuration file is missing, unreadable or invalid."""


class EventRejected(GatewayError):
    """One event cannot be accepted; the batch goes on without it.

    `code` is a stable machine-readable reason (`invalid_json`, `schema`,
    `denied`, ...); `field` names the offending field path when there is one.
    """

    def __init__(self, code: str, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


class BatchError(GatewayError):
    """A whole request is refused before any event in it is looked at (4xx)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class Unavailable(GatewayError):
    """The audit log or the publisher cannot make an event durable now (503).

    Nothing covered by this error was acknowledged; the client retries the
    batch later, and event ids keep the retry from publishing twice.
    """

    def __init__(self, message: str, *, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s


class Overloaded(GatewayError):
    """The commit queue is full: back off and retry (429)."""

    def __init__(self, message: str, *, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s


class PublishError(GatewayError):
    """The publisher (Kafka or the local log) did not durably take a batch."""


class PlacementRefused(GatewayError):
    """Placement checks failed in `enforce` mode: the gateway refuses to start."""
