"""Subject look-up for GDPR Article 15 requests: compute a person's pseudonyms with the gateway's
keyed scheme and find every record that carries one, without the log ever holding the id.

The audit package imports nothing of the gateway, so the keyring file (owned by gateway.pii) is
read here against its documented format: JSON `{"version": 1, "active": kid, "keys": [{"id",
"created", "secret": base64 32 bytes} | {"id", "created", "shredded"}]}`, mode 0600. A pseudonym
is "ps1:<kid>:" + unpadded base64url(HMAC-SHA-256(subkey, value as UTF-8)) where subkey =
HKDF-SHA-256(secret, salt none, info "fjordgate/pseudonym/v1", 32 bytes).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from audit.errors import KeyringError
from audit.segments import instance_logs, list_segments, split_entries
from audit.shared import SHARED, SharedError, SharedIndex
from audit.tree_head import TREE_HEAD_TYPE

PSEUDONYM_PREFIX = "ps1"
_PSEUDONYM_INFO = b"fjordgate/pseudonym/v1"


@dataclass(frozen=True)
class PseudonymKey:
    """One pseudonymisation key of the keyring: its id and derived HMAC key (never printed)."""

    key_id: str
    hmac_key: bytes

    def __repr__(self) -> str:
        return f"PseudonymKey(key_id={self.key_id!r})"

    def pseudonym(self, value: str) -> str:
        digest = hmac.new(self.hmac_key, value.encode("utf-8"), hashlib.sha256).digest()
        encoded = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
        return f"{PSEUDONYM_PREFIX}:{self.key_id}:{encoded}"


def load_pseudonym_keys(path: Path) -> tuple[list[PseudonymKey], list[str]]:
    """The usable keys of a keyring file and the ids of shredded ones (whose pseudonyms can no
    longer be computed). Refuses a file that group or others can access."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise KeyringError(f"{path}: cannot open the keyring ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(handle.fileno()).st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyringError(
                f"{path}: the keyring is accessible to group or others (mode "
                f"{stat.S_IMODE(mode):04o}); run `chmod 600 {path}` first"
            )
        raw = handle.read()
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise KeyringError(f"{path}: not a keyring (invalid JSON)") from None
    if not isinstance(document, dict) or document.get("version") != 1:
        raise KeyringError(f"{path}: not a keyring of format version 1")
    entries = document.get("keys")
    if not isinstance(entries, list):
        raise KeyringError(f"{path}: 'keys' must be a list")
    keys: list[PseudonymKey] = []
    shredded: list[str] = []
    for n, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            raise KeyringError(f"{path}: keys[{n}] has no string 'id'")
        if entry.get("shredded"):
            shredded.append(entry["id"])
            continue
        try:
            secret = base64.b64decode(entry["secret"], validate=True)
        except (KeyError, TypeError, ValueError):
            raise KeyringError(f"{path}: key {entry['id']} has no valid base64 'secret'") from None
        if len(secret) != 32:
            raise KeyringError(f"{path}: key {entry['id']} is not 32 bytes long")
        subkey = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_PSEUDONYM_INFO).derive(
            secret
        )
        keys.append(PseudonymKey(entry["id"], subkey))
    if not keys:
        raise KeyringError(f"{path}: the keyring holds no usable key")
    return keys, shredded


def subject_pseudonyms(value: str, keys: list[PseudonymKey]) -> list[str]:
    """Every pseudonym `value` may appear under: each key, the value as given and without
    whitespace (identifiers are often written with spaces)."""
    forms = dict.fromkeys([value, "".join(value.split())])
    return [key.pseudonym(form) for key in keys for form in forms if form]


_DEFINITION = b'"type":"shared"'  # in every definition's canonical JSON


@dataclass(frozen=True)
class SubjectMatch:
    """One record that carries one of the subject's pseudonyms."""

    log: str
    segment: str
    offset: int
    record: dict[str, Any]
    fields: tuple[str, ...]  # dotted paths of the values that hold a pseudonym


def _paths_holding(value: Any, needles: set[str], prefix: str = "") -> Iterator[str]:
    if isinstance(value, str):
        if any(needle in value for needle in needles):
            yield prefix or "."
    elif isinstance(value, dict):
        for key, inner in value.items():
            yield from _paths_holding(inner, needles, f"{prefix}.{key}" if prefix else key)
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from _paths_holding(inner, needles, f"{prefix}[{index}]")


def find_subject(
    directory: Path, pseudonyms: list[str], progress: Callable[[int], None] | None = None
) -> list[SubjectMatch]:
    """Every record under `directory` (one log or instance logs) holding one of `pseudonyms`."""
    needles = {p.encode("ascii") for p in pseudonyms}
    wanted = set(pseudonyms)
    matches: list[SubjectMatch] = []
    for log in instance_logs(directory):
        for _, path in list_segments(log):
            data = path.read_bytes()
            if progress is not None:
                progress(len(data))
            if not any(needle in data for needle in needles):
                continue
            shared = SharedIndex()  # a match is shown with its shared members
            for raw in split_entries(data):
                hit = any(needle in raw.data for needle in needles)
                if not raw.complete or not (hit or _DEFINITION in raw.data):
                    continue
                try:
                    record = orjson.loads(raw.data)
                except orjson.JSONDecodeError:
                    continue
                if not isinstance(record, dict) or record.get("type") == TREE_HEAD_TYPE:
                    continue
                try:
                    # The search does not verify (the command verifies first): a broken
                    # reference leaves the record as it is.
                    resolved = shared.add(record, path.name)
                except SharedError:
                    resolved = record
                if hit and record.get("type") != SHARED:
                    fields = tuple(_paths_holding(record, wanted))
                    matches.append(SubjectMatch(log.name, path.name, raw.offset, resolved, fields))
    return matches
