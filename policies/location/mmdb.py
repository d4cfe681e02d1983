"""A small writer of MaxMind DB (.mmdb) files, for test databases and for converting CSV geo data.

Follows the MaxMind DB format 2.0 specification: a binary search tree over the
address bits, a 16-byte separator, a deduplicated data section, and a metadata
section after the `\\xab\\xcd\\xefMaxMind.com` marker. Our own writer rather than the
`mmdb-writer` package because converting the ~515,000 ranges of the ASN set goes
through netaddr IPSets there; measured on this project's 2-core machine (see
bench/location/README.md), ours converts the set several times faster and needs no
extra dependency. Reading is always done by the `maxminddb` package.
"""

from __future__ import annotations

import ipaddress
import os
import struct
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

METADATA_MARKER = b"\xab\xcd\xefMaxMind.com"

_IPV4_IN_IPV6_DEPTH = 96
_IPV4_MAPPED_PREFIX = 0xFFFF << 32  # ::ffff:0:0/96, aliased to the IPv4 subtree

# Control-byte type numbers from the specification.
_POINTER = 1
_UTF8 = 2
_DOUBLE = 3
_BYTES = 4
_UINT16 = 5
_UINT32 = 6
_MAP = 7
_INT32 = 8
_UINT64 = 9
_UINT128 = 10
_ARRAY = 11
_BOOLEAN = 14


def _control(type_num: int, size: int) -> bytes:
    if type_num <= 7:
        first = type_num << 5
        extended = b""
    else:
        first = 0
        extended = bytes((type_num - 7,))
    if size < 29:
        return bytes((first | size,)) + extended
    if size < 285:
        return bytes((first | 29,)) + extended + bytes((size - 29,))
    if size < 65821:
        return bytes((first | 30,)) + extended + (size - 285).to_bytes(2, "big")
    return bytes((first | 31,)) + extended + (size - 65821).to_bytes(3, "big")


def _pointer(offset: int) -> bytes:
    if offset < 2048:
        return bytes((0x20 | (offset >> 8), offset & 0xFF))
    if offset < 526336:
        rest = offset - 2048
        return bytes((0x28 | (rest >> 16), (rest >> 8) & 0xFF, rest & 0xFF))
    if offset < 134744064:
        rest = offset - 526336
        return bytes((0x30 | (rest >> 24),)) + (rest & 0xFFFFFF).to_bytes(3, "big")
    return bytes((0x38,)) + offset.to_bytes(4, "big")


class UInt16(int):
    """An integer stored as an mmdb uint16 (readers such as libmaxminddb check metadata types)."""


class UInt32(int):
    """An integer stored as an mmdb uint32 (the type MaxMind uses for ASNs and node counts)."""


class UInt64(int):
    """An integer stored as an mmdb uint64."""


_FORCED_TYPES: dict[type, tuple[int, int]] = {
    UInt16: (_UINT16, 2**16),
    UInt32: (_UINT32, 2**32),
    UInt64: (_UINT64, 2**64),
}


def _minimal(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


class _DataSection:
    """Encodes values into the data section, writing each distinct string and record once."""

    def __init__(self, *, deduplicate: bool = True) -> None:
        self.buffer = bytearray()
        self._deduplicate = deduplicate
        self._strings: dict[str, int] = {}

    def encode(self, value: Any) -> int:
        """Append `value`; return its offset in the section."""
        offset = len(self.buffer)
        self._write(value)
        return offset

    def _write(self, value: Any) -> None:
        buffer = self.buffer
        if isinstance(value, bool):
            buffer += _control(_BOOLEAN, int(value))
        elif isinstance(value, str):
            if self._deduplicate:
                seen = self._strings.get(value)
                if seen is not None:
                    buffer += _pointer(seen)
                    return
                self._strings[value] = len(buffer)
            raw = value.encode("utf-8")
            buffer += _control(_UTF8, len(raw))
            buffer += raw
        elif isinstance(value, int):
            self._write_int(value)
        elif isinstance(value, float):
            buffer += _control(_DOUBLE, 8)
            buffer += struct.pack(">d", value)
        elif isinstance(value, bytes | bytearray):
            buffer += _control(_BYTES, len(value))
            buffer += value
        elif isinstance(value, Mapping):
            buffer += _control(_MAP, len(value))
            for key, item in value.items():
                if not isinstance(key, str):
                    raise TypeError(f"mmdb map keys must be strings, not {type(key).__name__}")
                self._write(key)
                self._write(item)
        elif isinstance(value, Sequence):
            buffer += _control(_ARRAY, len(value))
            for item in value:
                self._write(item)
        else:
            raise TypeError(f"cannot store a {type(value).__name__} in an mmdb data section")

    def _write_int(self, value: int) -> None:
        if value < 0:
            if value < -(2**31):
                raise ValueError(f"integer {value} is below the int32 range mmdb can store")
            self.buffer += _control(_INT32, 4)
            self.buffer += value.to_bytes(4, "big", signed=True)
            return
        payload = _minimal(value)
        forced = _FORCED_TYPES.get(type(value))
        if forced is not None:
            type_num, limit = forced
            if value >= limit:
                raise ValueError(f"integer {value} does not fit its declared mmdb type")
        elif value < 2**16:
            type_num = _UINT16
        elif value < 2**32:
            type_num = _UINT32
        elif value < 2**64:
            type_num = _UINT64
        elif value < 2**128:
            type_num = _UINT128
        else:
            raise ValueError(f"integer {value} is above the uint128 range mmdb can store")
        self.buffer += _control(type_num, len(payload))
        self.buffer += payload


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class MmdbWriter:
    """Builds a MaxMind DB in memory from networks or address ranges, then writes it atomically.

    A later insert wins inside the addresses it covers; the rest of an earlier,
    larger network keeps its data (`127.0.0.0/8 → SE` then `127.0.0.1/32 → NO`).
    """

    def __init__(
        self,
        *,
        database_type: str,
        ip_version: int = 6,
        description: Mapping[str, str] | None = None,
        languages: Sequence[str] = (),
        build_epoch: int | None = None,
    ) -> None:
        if ip_version not in (4, 6):
            raise ValueError(f"ip_version must be 4 or 6, not {ip_version}")
        self.database_type = database_type
        self.ip_version = ip_version
        self.description = dict(description or {"en": database_type})
        self.languages = list(languages)
        self.build_epoch = int(time.time()) if build_epoch is None else int(build_epoch)
        # The tree as two parallel child arrays. A child is 0 (no data: node 0 is the
        # root and never a child), a node index (> 0), or a data id encoded as -(id + 1).
        self._left: list[int] = [0]
        self._right: list[int] = [0]
        self._records: list[Any] = []
        self._record_ids: dict[bytes, int] = {}
        self._ipv4_root = 0
        if ip_version == 6:
            self._ipv4_root = self._node_at(0, _IPV4_IN_IPV6_DEPTH, 128)
            self._alias(_IPV4_MAPPED_PREFIX, _IPV4_IN_IPV6_DEPTH, self._ipv4_root)

    # -- building -----------------------------------------------------------------------

    def insert_network(self, network: str | Network, data: Mapping[str, Any]) -> None:
        """Map every address of `network` (e.g. "127.0.0.0/8") to `data`."""
        net = ipaddress.ip_network(network, strict=False) if isinstance(network, str) else network
        if net.version == 6 and self.ip_version == 4:
            raise ValueError(f"cannot insert IPv6 network {net} into an IPv4 database")
        self._insert(int(net.network_address), net.prefixlen, net.version, self._record_id(data))

    def insert_range(
        self, first: str | int, last: str | int, data: Mapping[str, Any], *, version: int = 0
    ) -> None:
        """Map every address from `first` to `last` (inclusive) to `data`.

        Addresses may be strings, or integers together with `version` (4 or 6).
        """
        if isinstance(first, str):
            start_addr = ipaddress.ip_address(first)
            version = start_addr.version
            start = int(start_addr)
        else:
            start = first
        end = int(ipaddress.ip_address(last)) if isinstance(last, str) else last
        if version not in (4, 6):
            raise ValueError("integer range bounds need version=4 or version=6")
        if end < start:
            raise ValueError(f"range end {last} is before its start {first}")
        bits = 32 if version == 4 else 128
        record = self._record_id(data)
        # Split the range into the fewest aligned blocks (as CIDR summarisation does).
        while start <= end:
            size = (start & -start).bit_length() - 1 if start else bits
            span = end - start + 1
            while (1 << size) > span:
                size -= 1
            self._insert(start, bits - size, version, record)
            start += 1 << size

    def _record_id(self, data: Mapping[str, Any]) -> int:
        try:
            key: bytes | None = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
        except TypeError:
            key = None  # bytes or an int beyond 64 bits: stored without deduplication
        found = self._record_ids.get(key) if key is not None else None
        if found is None:
            found = len(self._records)
            self._records.append(dict(data))
            if key is not None:
                self._record_ids[key] = found
        return found

    def _node_at(self, value: int, depth: int, bits: int) -> int:
        """The node reached by the first `depth` bits of `value`, created as needed."""
        node = 0
        left, right = self._left, self._right
        for i in range(depth):
            side = left if not (value >> (bits - 1 - i)) & 1 else right
            child = side[node]
            if child <= 0:
                # A new node inherits the leaf it replaces on both sides, so a more
                # specific insert keeps the rest of a larger network's data.
                new = len(left)
                left.append(child)
                right.append(child)
                side[node] = new
                child = new
            node = child
        return node

    def _alias(self, value: int, depth: int, target: int) -> None:
        parent = self._node_at(value, depth - 1, 128)
        side = self._left if not (value >> (128 - depth)) & 1 else self._right
        side[parent] = target

    def _insert(self, value: int, prefixlen: int, version: int, record: int) -> None:
        if version == 4 and self.ip_version == 6:
            start, bits = self._ipv4_root, 32
            if prefixlen == 0:
                raise ValueError("0.0.0.0/0 cannot be inserted into an IPv6 database")
        else:
            start, bits = 0, (32 if version == 4 else 128)
            if prefixlen == 0:
                raise ValueError("a default route (/0) cannot be inserted")
        left, right = self._left, self._right
        node = start
        for i in range(prefixlen - 1):
            side = left if not (value >> (bits - 1 - i)) & 1 else right
            child = side[node]
            if child <= 0:
                new = len(left)
                left.append(child)
                right.append(child)
                side[node] = new
                child = new
            node = child
        side = left if not (value >> (bits - prefixlen)) & 1 else right
        side[node] = -(record + 1)

    # -- writing ------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The complete database file."""
        left, right = self._left, self._right
        # Number the nodes reachable from the root in breadth-first order; nodes cut
        # off by a later, larger insert are dropped, and aliased nodes counted once.
        number: dict[int, int] = {0: 0}
        order = [0]
        position = 0
        while position < len(order):
            node = order[position]
            position += 1
            for child in (left[node], right[node]):
                if child > 0 and child not in number:
                    number[child] = len(order)
                    order.append(child)
        node_count = len(order)

        data = _DataSection()
        data_offsets: dict[int, int] = {}

        def record_value(child: int) -> int:
            if child > 0:
                return number[child]
            if child == 0:
                return node_count
            record = -child - 1
            offset = data_offsets.get(record)
            if offset is None:
                offset = data.encode(self._records[record])
                data_offsets[record] = offset
            return node_count + 16 + offset

        values = [(record_value(left[n]), record_value(right[n])) for n in order]
        highest = max((max(pair) for pair in values), default=node_count)
        highest = max(highest, node_count + 16 + len(data.buffer))
        record_size = next((size for size in (24, 28, 32) if highest < 2**size), 0)
        if not record_size:
            raise ValueError("database too large for 32-bit records")

        tree = bytearray()
        if record_size == 24:
            for a, b in values:
                tree += a.to_bytes(3, "big")
                tree += b.to_bytes(3, "big")
        elif record_size == 28:
            for a, b in values:
                tree += (a & 0xFFFFFF).to_bytes(3, "big")
                tree.append(((a >> 24) << 4) | (b >> 24))
                tree += (b & 0xFFFFFF).to_bytes(3, "big")
        else:
            for a, b in values:
                tree += struct.pack(">II", a, b)

        metadata = _DataSection(deduplicate=False)
        metadata.encode(
            {
                "binary_format_major_version": UInt16(2),
                "binary_format_minor_version": UInt16(0),
                "build_epoch": UInt64(self.build_epoch),
                "database_type": self.database_type,
                "description": self.description,
                "ip_version": UInt16(self.ip_version),
                "languages": self.languages,
                "node_count": UInt32(node_count),
                "record_size": UInt16(record_size),
            }
        )
        return b"".join(
            (bytes(tree), bytes(16), bytes(data.buffer), METADATA_MARKER, bytes(metadata.buffer))
        )

    def write(self, path: Path | str) -> Path:
        """Write the database to `path` atomically (a reader never sees half a file)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(target.name + ".tmp")
        with open(temporary, "wb") as handle:
            handle.write(self.to_bytes())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
        return target
