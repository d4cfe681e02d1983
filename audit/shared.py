"""Members that many audit records have in common, written once per segment.

A gateway decision record is mostly *why*: the field decisions, rule ids, reasons and the
policy's hash, the same for every event of one shape under one policy. The log writes
those once per segment as a record of type `shared` (`{"members":{...},"ref":R,...}`), and
each decision names them with the member `"shared":R` (docs/audit-format.md, section 4.1).
Measured on the served gateway (bench/gateway): a decision record went from about 1.5 kB
to 480 bytes, and a group's audit append from 37-42 ms to 20-27 ms.

`SharedMembers` is the writer's side (the log emits the definition before the first record
of a segment that names it); `SharedIndex` is the reader's (it checks the definitions and
adds the members back to each record, as the verifier and the report do).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from audit.canonical import canonical_json

SHARED = "shared"  # the definition's record type, and the member that names one
REF_DIGITS = 32  # hex digits of SHA-256 in a reference: 128 bits, unique within a segment
# Members the log or the reference owns; shared members may not be any of them.
_NOT_SHAREABLE = frozenset({"type", "seq", "ts", "prev", SHARED})


class SharedError(ValueError):
    """A `shared` definition or a reference to one breaks the format's rules."""


def _check_shareable(members: Mapping[str, Any]) -> None:
    clash = _NOT_SHAREABLE.intersection(members)
    if clash:
        raise SharedError(f"shared members may not include {sorted(clash)}")


def shared_ref(members: Mapping[str, Any]) -> str:
    """The reference of `members`: the first 32 hex digits of SHA-256 of their canonical
    JSON."""
    return hashlib.sha256(canonical_json(members)).hexdigest()[:REF_DIGITS]


@dataclass(frozen=True, slots=True, eq=False)
class SharedMembers:
    """Members to write once per segment and name by `ref` in every record that has them.

    Put it in a record as the value of `"shared"`; the log writes the reference there and
    the definition before the record when the segment does not have it yet. Treat
    `members` as read-only: the reference is their hash."""

    ref: str
    members: Mapping[str, Any]

    @classmethod
    def of(cls, members: Mapping[str, Any]) -> SharedMembers:
        _check_shareable(members)
        try:
            ref = shared_ref(members)
        except TypeError as exc:
            raise SharedError(f"shared members are not JSON-serialisable ({exc})") from None
        return cls(ref, dict(members))

    def definition(self) -> dict[str, Any]:
        """The record the log writes for them."""
        return {"type": SHARED, "ref": self.ref, "members": dict(self.members)}

    def __eq__(self, other: object) -> bool:
        # The reference is the members' hash: equal references, equal members.
        return isinstance(other, SharedMembers) and other.ref == self.ref

    def __hash__(self) -> int:
        return hash(self.ref)

    def __repr__(self) -> str:
        return f"SharedMembers({self.ref})"


def resolved(record: Mapping[str, Any]) -> dict[str, Any]:
    """An in-memory record (a dict or `CanonicalRecord`) as a reader sees it once resolved:
    its shared members in place of the member `shared`."""
    value = dict(record.items())
    shared = getattr(record, "shared", None) or value.get(SHARED)
    value.pop(SHARED, None)
    if isinstance(shared, SharedMembers):
        value.update(shared.members)
    return value


class SharedIndex:
    """The shared members defined so far in the segment being read, for a reader that
    walks a log's records in order (the verifier, the report): `add` checks each record
    and returns it resolved."""

    def __init__(self) -> None:
        self._segment: str | None = None
        self._defined: dict[str, dict[str, Any]] = {}

    def add(self, record: dict[str, Any], segment: str) -> dict[str, Any]:
        """`record`, read in `segment`, with its shared members in place of `shared`
        (itself when it names none); raises SharedError when the record breaks a rule."""
        members = self.check(record, segment)
        if members is None:
            return record
        value = {k: v for k, v in record.items() if k != SHARED}
        value.update(members)
        return value

    def check(self, record: dict[str, Any], segment: str) -> dict[str, Any] | None:
        """Take `record`, read in `segment`, as `add` does without resolving it: the
        members it names, or None; raises SharedError when it breaks a rule."""
        if segment != self._segment:
            self._segment = segment
            self._defined = {}  # a segment holds every definition its records name
        if record.get("type") == SHARED:
            self._define(record)
            return None
        ref = record.get(SHARED)
        if ref is None:
            return None
        if not isinstance(ref, str):
            raise SharedError(f"the member {SHARED!r} must be a reference string")
        members = self._defined.get(ref)
        if members is None:
            raise SharedError(
                f"the record names shared members {ref} that are not defined earlier in {segment}"
            )
        clash = members.keys() & record.keys()
        if clash:
            raise SharedError(f"the record also holds its shared members {sorted(clash)}")
        return members

    def _define(self, record: dict[str, Any]) -> None:
        ref, members = record.get("ref"), record.get("members")
        if not isinstance(ref, str) or not isinstance(members, dict):
            raise SharedError("a shared record needs a string 'ref' and an object 'members'")
        _check_shareable(members)
        if shared_ref(members) != ref:
            raise SharedError(f"the shared record's ref {ref} is not the hash of its members")
        # The hash fixes the members: a second definition of `ref` is the same one.
        self._defined[ref] = members
