"""Field encryption: AES-256-GCM under a key id, bound to stream, field and event id.

A ciphertext token is `enc1:<key id>:<base64url(nonce || ciphertext || tag)>`.
Each encryption takes a fresh random 96-bit nonce. The associated data binds
the token to where it belongs (format, key id, stream, field, event id), so a
value copied to another field or event does not decrypt. Shredding the key in
the keyring makes every token under it unreadable.
"""

from __future__ import annotations

import base64
import binascii
import os
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.pii.errors import TokenError
from gateway.pii.keyring import Keyring

PREFIX: Final = "enc1"
NONCE_BYTES: Final = 12
_PURPOSE: Final = b"field-encryption/aes-256-gcm/v1"


def _associated_data(key_id: str, stream: str, field: str, event_id: str) -> bytes:
    # Length-prefixed parts: ("a", "bc") and ("ab", "c") must not give the same bytes.
    out = bytearray(PREFIX.encode("ascii"))
    for part in (key_id, stream, field, event_id):
        encoded = part.encode("utf-8")
        out += len(encoded).to_bytes(4, "big") + encoded
    return bytes(out)


class FieldCipher:
    """Encrypts field values with the keyring's active key; decrypts with any unshredded key."""

    __slots__ = ("_aeads", "_keyring")

    def __init__(self, keyring: Keyring) -> None:
        self._keyring = keyring
        self._aeads: dict[str, tuple[bytes, AESGCM]] = {}

    def _aead(self, key_id: str) -> AESGCM:
        # Asking the keyring every time makes a shred take effect at once, even for a
        # cipher object made before it; the AESGCM object is cached per subkey.
        subkey = self._keyring.subkey(key_id, _PURPOSE)
        cached = self._aeads.get(key_id)
        if cached is None or cached[0] is not subkey:
            cached = (subkey, AESGCM(subkey))
            self._aeads[key_id] = cached
        return cached[1]

    def encrypt(self, value: str, *, stream: str, field: str, event_id: str) -> str:
        """Encrypt `value` for this stream, field and event with the active key."""
        key_id = self._keyring.active_id
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead(key_id).encrypt(
            nonce, value.encode("utf-8"), _associated_data(key_id, stream, field, event_id)
        )
        body = base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode("ascii")
        return f"{PREFIX}:{key_id}:{body}"

    def decrypt(self, token: str, *, stream: str, field: str, event_id: str) -> str:
        """Decrypt a token made for this stream, field and event.

        Raises TokenError when the token is malformed or does not authenticate
        for this context, and KeyShreddedError when its key was shredded.
        """
        parts = token.split(":")
        if len(parts) != 3 or parts[0] != PREFIX or not parts[1]:
            raise TokenError(
                f"field {field!r} of event {event_id!r} in stream {stream!r}: "
                "not a ciphertext token of the form enc1:<key id>:<data>"
            )
        key_id, body = parts[1], parts[2]
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (binascii.Error, ValueError):
            raise TokenError(
                f"field {field!r} of event {event_id!r}: ciphertext is not base64url"
            ) from None
        if len(raw) < NONCE_BYTES + 16:
            raise TokenError(f"field {field!r} of event {event_id!r}: ciphertext is truncated")
        aead = self._aead(key_id)
        try:
            plain = aead.decrypt(
                raw[:NONCE_BYTES],
                raw[NONCE_BYTES:],
                _associated_data(key_id, stream, field, event_id),
            )
        except InvalidTag:
            raise TokenError(
                f"field {field!r} of event {event_id!r} in stream {stream!r}: ciphertext does not "
                "authenticate (tampered, or decrypted with another stream, field or event id)"
            ) from None
        return plain.decode("utf-8")

    def __repr__(self) -> str:
        return f"FieldCipher(active_key_id={self._keyring.active_id})"
