"""API keys scoped to streams: stored as SHA-256 digests, compared in constant time.

Keys are 256-bit random tokens made by `new_api_key`, so a plain SHA-256 is
enough to store them (as for GitHub tokens): there is nothing to brute-force
that a slow password hash would protect. Every stored digest is compared with
`hmac.compare_digest`, with no early exit, so the time taken does not reveal
which key, or how much of one, matched.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

KEY_PREFIX = "fjg_"


def hash_api_key(key: str) -> str:
    """The digest form a configuration stores: `sha256:<hex>`."""
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_api_key() -> str:
    """A fresh random API key (shown once; only its digest is stored)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One producer's key: a name for logs and audit, its digest, the streams it may write."""

    name: str
    digest: str
    streams: frozenset[str]

    def allows(self, stream: str) -> bool:
        """Whether this key may post to `stream` (`*` allows every stream)."""
        return "*" in self.streams or stream in self.streams


class ApiKeyStore:
    """The configured keys; `authenticate` finds the one a request presents."""

    def __init__(self, keys: Iterable[ApiKey]) -> None:
        self._keys = tuple(keys)
        for key in self._keys:
            if not key.digest.startswith("sha256:") or len(key.digest) != 71:
                raise ValueError(
                    f"API key {key.name!r}: digest must be 'sha256:' and 64 hex digits "
                    "(make one with `fjordgate gateway api-key new`)"
                )

    def __len__(self) -> int:
        return len(self._keys)

    def authenticate(self, presented: str | None) -> ApiKey | None:
        """The key whose digest matches `presented`, or None; constant time over all keys."""
        if not presented:
            return None
        digest = hash_api_key(presented).encode("ascii")
        found: ApiKey | None = None
        for key in self._keys:
            if hmac.compare_digest(digest, key.digest.encode("ascii")):
                found = key
        return found
