"""Keyed pseudonymisation: HMAC-SHA-256 under a key id, deterministic per key.

A pseudonym is `ps1:<key id>:<base64url HMAC, unpadded>`. The same value under
the same key always gives the same pseudonym, so joins still work downstream;
without the key it cannot be recomputed. An unkeyed hash is never used: the
space of 11-digit identifiers is small enough to enumerate.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Final

from gateway.pii.errors import TokenError
from gateway.pii.keyring import Keyring

PREFIX: Final = "ps1"
_PURPOSE: Final = b"pseudonym/v1"


class Pseudonymiser:
    """Turns values into keyed pseudonyms with the keyring's active key (or a chosen one)."""

    __slots__ = ("_key", "_key_id", "_prefix")

    def __init__(self, keyring: Keyring, *, key_id: str | None = None) -> None:
        self._key_id = key_id or keyring.active_id
        self._key = keyring.subkey(self._key_id, _PURPOSE)
        self._prefix = f"{PREFIX}:{self._key_id}:"

    @property
    def key_id(self) -> str:
        return self._key_id

    def pseudonymise(self, value: str) -> str:
        """The pseudonym of `value` (exactly as given: normalise first if forms vary)."""
        digest = hmac.new(self._key, value.encode("utf-8"), hashlib.sha256).digest()
        return self._prefix + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def __repr__(self) -> str:
        return f"Pseudonymiser(key_id={self._key_id})"


def pseudonym_key_id(token: str) -> str:
    """The key id a pseudonym was made with (to find pseudonyms of a shredded key)."""
    parts = token.split(":")
    if len(parts) != 3 or parts[0] != PREFIX or not parts[1]:
        raise TokenError("not a pseudonym of the form ps1:<key id>:<digest>")
    return parts[1]
