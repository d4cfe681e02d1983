"""The keyring: secret keys with ids for pseudonymisation and field encryption.

A keyring is a JSON file readable by its owner only (mode 0600; anything the
group or others may read or write is refused). One key is active: new
pseudonyms and ciphertexts use it; older keys stay for decryption until they
are shredded. Shredding removes the key material and leaves a tombstone, so
data encrypted under that key becomes unreadable (crypto-shredding) and the
error for it says so.

Each key is 32 random bytes; the pseudonymiser and the field cipher derive
separate subkeys from it with HKDF-SHA-256, so one secret never serves two
algorithms directly.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import fcntl
import os
import secrets
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson
import structlog
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway.pii.errors import (
    KeyringError,
    KeyringPermissionError,
    KeyShreddedError,
    UnknownKeyError,
)

log = structlog.get_logger(__name__)

FORMAT_VERSION: Final = 1
KEY_BYTES: Final = 32
_FORBIDDEN_MODE_BITS: Final = stat.S_IRWXG | stat.S_IRWXO


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What may be shown about a key: its id, dates and state, never the secret."""

    key_id: str
    created: str
    state: str  # "active" | "retired" | "shredded"
    shredded: str | None = None


class _Secret:
    """Key material that does not print itself."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        self._value = value

    def reveal(self) -> bytes:
        return self._value

    def __repr__(self) -> str:
        return "<secret>"

    __str__ = __repr__


def _now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _new_key_id() -> str:
    # Random, not derived from the key: an id must reveal nothing about the secret.
    return "k" + secrets.token_hex(6)


class Keyring:
    """Keys by id, one of them active; backed by a file unless ephemeral."""

    __slots__ = ("_active", "_info", "_path", "_secrets", "_subkeys")

    def __init__(
        self,
        path: Path | None,
        keys: dict[str, _Secret],
        info: dict[str, KeyInfo],
        active: str,
    ) -> None:
        self._path = path
        self._secrets = keys
        self._info = info
        self._active = active
        self._subkeys: dict[tuple[str, bytes], bytes] = {}

    # -- construction -----------------------------------------------------------------

    @classmethod
    def generate(cls, path: Path | str, *, overwrite: bool = False) -> Keyring:
        """Create a new keyring file (mode 0600) holding one fresh active key."""
        path = Path(path)
        if path.exists() and not overwrite:
            raise KeyringError(
                f"{path}: a keyring already exists here; use `fjordgate keys rotate` to add a "
                "key, or choose another path"
            )
        ring = cls._fresh(path)
        ring._save()
        log.info("keyring_created", path=str(path), key_id=ring.active_id)
        return ring

    @classmethod
    def ephemeral(cls) -> Keyring:
        """An in-memory keyring with one fresh key (tests, demos): never written anywhere."""
        return cls._fresh(None)

    @classmethod
    def _fresh(cls, path: Path | None) -> Keyring:
        kid = _new_key_id()
        return cls(
            path,
            {kid: _Secret(secrets.token_bytes(KEY_BYTES))},
            {kid: KeyInfo(kid, _now(), "active")},
            kid,
        )

    @classmethod
    def load(cls, path: Path | str) -> Keyring:
        """Read a keyring file, refusing one that the group or others could read or write."""
        path = Path(path)
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            raise KeyringError(
                f"{path}: no keyring file; create one with `fjordgate keys new {path}`"
            ) from None
        except OSError as exc:
            raise KeyringError(f"{path}: cannot open the keyring: {exc.strerror}") from None
        with os.fdopen(fd, "rb") as handle:
            st = os.fstat(handle.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise KeyringError(f"{path}: not a regular file")
            if st.st_mode & _FORBIDDEN_MODE_BITS:
                raise KeyringPermissionError(
                    f"{path}: keyring is accessible to group or others (mode "
                    f"{stat.S_IMODE(st.st_mode):04o}); refusing to use it. Run `chmod 600 {path}` "
                    "and consider rotating the keys, since others may have read them"
                )
            raw = handle.read()
        return cls._parse(path, raw)

    @classmethod
    def _parse(cls, path: Path, raw: bytes) -> Keyring:
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise KeyringError(f"{path}: not a keyring (invalid JSON)") from None
        if not isinstance(doc, dict) or doc.get("version") != FORMAT_VERSION:
            raise KeyringError(f"{path}: not a keyring of format version {FORMAT_VERSION}")
        keys: dict[str, _Secret] = {}
        info: dict[str, KeyInfo] = {}
        active = doc.get("active")
        entries = doc.get("keys")
        if not isinstance(entries, list):
            raise KeyringError(f"{path}: 'keys' must be a list")
        for n, entry in enumerate(entries):
            if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
                raise KeyringError(f"{path}: keys[{n}] has no string 'id'")
            kid = entry["id"]
            created = str(entry.get("created", ""))
            if entry.get("shredded"):
                info[kid] = KeyInfo(kid, created, "shredded", str(entry["shredded"]))
                continue
            try:
                material = base64.b64decode(entry["secret"], validate=True)
            except (KeyError, TypeError, ValueError):
                # The message names the key id only: the broken value may be a partial secret.
                raise KeyringError(f"{path}: key {kid} has no valid base64 'secret'") from None
            if len(material) != KEY_BYTES:
                raise KeyringError(f"{path}: key {kid} is not {KEY_BYTES} bytes long")
            keys[kid] = _Secret(material)
            info[kid] = KeyInfo(kid, created, "active" if kid == active else "retired")
        if not isinstance(active, str) or active not in keys:
            raise KeyringError(f"{path}: the active key id is missing or names no usable key")
        return cls(path, keys, info, active)

    # -- queries ----------------------------------------------------------------------

    @property
    def path(self) -> Path | None:
        return self._path

    @property
    def active_id(self) -> str:
        """The id of the key that new pseudonyms and ciphertexts use."""
        return self._active

    def key_ids(self) -> list[str]:
        """Ids of keys that still hold material (active and retired), oldest first."""
        return [kid for kid in self._info if kid in self._secrets]

    def list(self) -> list[KeyInfo]:
        """Every key the keyring knows, shredded ones included, oldest first."""
        return list(self._info.values())

    def subkey(self, key_id: str, purpose: bytes) -> bytes:
        """A 32-byte key for one purpose, derived from key `key_id` with HKDF-SHA-256."""
        cache_key = (key_id, purpose)
        derived = self._subkeys.get(cache_key)
        if derived is None:
            secret = self._secrets.get(key_id)
            if secret is None:
                info = self._info.get(key_id)
                if info is not None and info.state == "shredded":
                    raise KeyShreddedError(
                        f"key {key_id} was shredded at {info.shredded}; data protected by it "
                        "is unrecoverable by design"
                    )
                raise UnknownKeyError(
                    f"key {key_id} is not in this keyring"
                    + (f" ({self._path})" if self._path else "")
                    + "; load the keyring that issued the token"
                )
            derived = HKDF(
                algorithm=hashes.SHA256(), length=32, salt=None, info=b"fjordgate/" + purpose
            ).derive(secret.reveal())
            self._subkeys[cache_key] = derived
        return derived

    # -- changes (persisted at once) --------------------------------------------------

    @contextlib.contextmanager
    def _change(self) -> Iterator[None]:
        """Hold the keyring's lock and start from what the file says now, so that two
        processes rotating or shredding at once cannot lose each other's keys."""
        if self._path is None:
            yield
            return
        lock_path = self._path.with_name(self._path.name + ".lock")
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise KeyringError(f"{lock_path}: cannot lock the keyring: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if self._path.exists():
                current = Keyring.load(self._path)
                self._secrets, self._info, self._active = (
                    current._secrets,
                    current._info,
                    current._active,
                )
                self._subkeys.clear()
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def rotate(self) -> str:
        """Add a fresh key, make it active, keep the old ones for decryption. Returns its id."""
        with self._change():
            kid = _new_key_id()
            previous = self._active
            self._secrets[kid] = _Secret(secrets.token_bytes(KEY_BYTES))
            old = self._info[previous]
            self._info[previous] = KeyInfo(old.key_id, old.created, "retired")
            self._info[kid] = KeyInfo(kid, _now(), "active")
            self._active = kid
            self._save()
        log.info("keyring_rotated", path=str(self._path), key_id=kid, previous_key_id=previous)
        return kid

    def shred(self, key_id: str) -> None:
        """Destroy a retired key's material, leaving a tombstone with its id and the time.

        The file is rewritten without the secret and atomically replaced; the
        old blocks may linger on the device until overwritten, so a keyring
        belongs on encrypted storage.
        """
        with self._change():
            info = self.check_shred(key_id)
            if info.state == "shredded":
                return
            del self._secrets[key_id]
            for cached in [c for c in self._subkeys if c[0] == key_id]:
                del self._subkeys[cached]
            self._info[key_id] = KeyInfo(key_id, info.created, "shredded", _now())
            self._save()
        log.info("keyring_key_shredded", path=str(self._path), key_id=key_id)

    def check_shred(self, key_id: str) -> KeyInfo:
        """Raise what `shred(key_id)` would raise now (unknown key, active key); else return
        the key's info, whose state is "shredded" when there is nothing left to destroy.

        Lets a caller record its intent to shred before the key is destroyed, knowing the
        shred is allowed.
        """
        info = self._info.get(key_id)
        if info is None:
            raise UnknownKeyError(f"key {key_id} is not in this keyring")
        if key_id == self._active:
            raise KeyringError(
                f"key {key_id} is the active key; run `fjordgate keys rotate` first, then shred it"
            )
        return info

    def _document(self) -> dict[str, Any]:
        entries: list[dict[str, Any]] = []
        for kid, info in self._info.items():
            entry: dict[str, Any] = {"id": kid, "created": info.created}
            if info.state == "shredded":
                entry["shredded"] = info.shredded
            else:
                entry["secret"] = base64.b64encode(self._secrets[kid].reveal()).decode("ascii")
            entries.append(entry)
        return {"version": FORMAT_VERSION, "active": self._active, "keys": entries}

    def _save(self) -> None:
        if self._path is None:
            return
        path = self._path
        directory = path.parent if str(path.parent) else Path(".")
        data = orjson.dumps(self._document(), option=orjson.OPT_INDENT_2)
        try:
            # mkstemp creates the file 0600 before any secret is written to it.
            fd, tmp = tempfile.mkstemp(prefix=".keyring-", dir=directory)
        except OSError as exc:
            raise KeyringError(f"{path}: cannot write the keyring: {exc.strerror}") from None
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise KeyringError(f"{path}: cannot write the keyring: {exc.strerror}") from None
        with contextlib.suppress(OSError):
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def __repr__(self) -> str:
        return f"Keyring(path={self._path!s}, active={self._active}, keys={self.key_ids()})"
