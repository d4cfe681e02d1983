"""Ed25519 signing keys for tree heads: key files that only their owner can read, public-key
export, and the key id that names a public key in the log."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from audit.errors import KeyFileError


def key_id_of(raw_public_key: bytes) -> str:
    """The key id: "ed25519:" + the first 16 hex digits of SHA-256 of the raw 32-byte public key."""
    return "ed25519:" + hashlib.sha256(raw_public_key).hexdigest()[:16]


@dataclass(frozen=True)
class PublicKey:
    """An Ed25519 public key that checks tree-head signatures."""

    raw: bytes

    @property
    def key_id(self) -> str:
        return key_id_of(self.raw)

    @property
    def base64(self) -> str:
        return base64.b64encode(self.raw).decode("ascii")

    def verify(self, signature: bytes, message: bytes) -> bool:
        """True when `signature` is this key's Ed25519 signature of `message`."""
        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True

    def pem(self) -> bytes:
        """SubjectPublicKeyInfo PEM, the form `audit verify --public-key` reads."""
        return Ed25519PublicKey.from_public_bytes(self.raw).public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def export(self, path: Path) -> None:
        """Write the PEM public key to `path` (world-readable: it is public)."""
        path.write_bytes(self.pem())

    @classmethod
    def from_base64(cls, text: str) -> PublicKey:
        raw = base64.b64decode(text, validate=True)
        if len(raw) != 32:
            raise ValueError(f"an Ed25519 public key is 32 bytes, this one is {len(raw)}")
        return cls(raw)

    @classmethod
    def load(cls, path: Path) -> PublicKey:
        """Read a PEM public key (or a bare base64 raw key) from `path`."""
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise KeyFileError(
                path,
                f"cannot read the public key ({exc.strerror})",
                "give the file `fjordgate audit key export` wrote",
            ) from exc
        try:
            if b"-----BEGIN" in data:
                key = serialization.load_pem_public_key(data)
                if not isinstance(key, Ed25519PublicKey):
                    raise ValueError("not an Ed25519 key")
                return cls(
                    key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
                )
            return cls.from_base64(data.decode("ascii").strip())
        except ValueError as exc:
            raise KeyFileError(
                path,
                f"not an Ed25519 public key ({exc})",
                "give the PEM file `fjordgate audit key export` wrote",
            ) from exc


class SigningKey:
    """An Ed25519 private key that signs tree heads. Never printed, logged or repr'd."""

    __slots__ = ("_private", "public_key")

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public_key = PublicKey(
            private.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
        )

    def __repr__(self) -> str:
        return f"SigningKey(key_id={self.key_id!r})"

    @property
    def key_id(self) -> str:
        return self.public_key.key_id

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)

    @classmethod
    def generate(cls) -> SigningKey:
        """A fresh key in memory."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def create(cls, path: Path) -> SigningKey:
        """Generate a key and write it to `path` (PKCS#8 PEM, mode 0600; refuses to overwrite)."""
        key = cls.generate()
        pem = key._private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError as exc:
            raise KeyFileError(
                path,
                "the file exists already",
                "choose another path; an existing key is never overwritten",
            ) from exc
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
            out.flush()
            os.fsync(out.fileno())
        return key

    @classmethod
    def load(cls, path: Path) -> SigningKey:
        """Read a PKCS#8 PEM Ed25519 key; refuses a file that group or others can read."""
        try:
            mode = path.stat().st_mode
        except OSError as exc:
            raise KeyFileError(
                path,
                f"cannot read the signing key ({exc.strerror})",
                "create one with `fjordgate audit key generate PATH`",
            ) from exc
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyFileError(
                path,
                f"the signing key is readable or writable by group or others (mode "
                f"{stat.S_IMODE(mode):04o})",
                f"restrict it with `chmod 600 {path}`",
            )
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError) as exc:
            raise KeyFileError(
                path,
                "not an unencrypted PKCS#8 PEM private key",
                "create one with `fjordgate audit key generate PATH`",
            ) from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError(
                path,
                "the key is not Ed25519",
                "create one with `fjordgate audit key generate PATH`",
            )
        return cls(key)
