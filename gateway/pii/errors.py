"""The one exception hierarchy of gateway.pii: what went wrong, where, and what to do.

Messages never carry a key, a secret or a personal value: key ids, paths and
field names only.
"""

from __future__ import annotations


class PiiError(Exception):
    """Base of every error this package raises."""


class KeyringError(PiiError):
    """The keyring file is missing, malformed or cannot be written."""


class KeyringPermissionError(KeyringError):
    """The keyring file is readable or writable by the group or others."""


class UnknownKeyError(KeyringError):
    """A key id that the keyring does not hold."""


class KeyShreddedError(UnknownKeyError):
    """A key id that was deliberately destroyed (crypto-shredded)."""


class TokenError(PiiError, ValueError):
    """A pseudonym or ciphertext token that is malformed or does not authenticate."""


class GeneraliseError(PiiError, ValueError):
    """A value that cannot be generalised as asked (unparseable date, address, coordinates)."""


class ScanLimitError(PiiError, ValueError):
    """Input beyond a documented scanning limit (nesting depth, line length)."""
