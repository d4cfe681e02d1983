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
import ipaddress
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
        """The pseudonym of `value` exactly as given (see `pseudonymise_identifier`)."""
        digest = hmac.new(self._key, value.encode("utf-8"), hashlib.sha256).digest()
        return self._prefix + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def pseudonymise_identifier(self, value: str, pii_type: str) -> str:
        """The pseudonym of an identifier in its canonical form, so that the written
        forms of one identifier (`010190 12345`, `01019012345`) join downstream."""
        return self.pseudonymise(canonical(value, pii_type))

    def __repr__(self) -> str:
        return f"Pseudonymiser(key_id={self._key_id})"


_SEPARATORS: Final = str.maketrans("", "", " .-\u00a0")
_DIGIT_TYPES: Final = frozenset(
    {"fodselsnummer", "d_nummer", "h_nummer", "organisasjonsnummer", "kontonummer", "payment_card"}
)


def canonical(value: str, pii_type: str) -> str:
    """One written form per identifier: separators dropped, case folded where it does
    not matter, phone numbers with their country code (+47 when none is written)."""
    text = value.strip()
    if pii_type in _DIGIT_TYPES:
        return text.translate(_SEPARATORS)
    if pii_type in ("iban", "vehicle_plate"):
        return text.translate(_SEPARATORS).upper()
    if pii_type == "email":
        return text.lower()
    if pii_type == "phone":
        digits = text.translate(_SEPARATORS).replace("(", "").replace(")", "")
        if digits.startswith("00"):
            return "+" + digits[2:]
        if digits.startswith("+"):
            return digits
        return "+47" + digits
    if pii_type == "ip_address":
        try:
            return str(ipaddress.ip_address(text))
        except ValueError:
            return text
    return text


def pseudonym_key_id(token: str) -> str:
    """The key id a pseudonym was made with (to find pseudonyms of a shredded key)."""
    parts = token.split(":")
    if len(parts) != 3 or parts[0] != PREFIX or not parts[1]:
        raise TokenError("not a pseudonym of the form ps1:<key id>:<digest>")
    return parts[1]
