"""RFC 6962 / RFC 9162 Merkle tree hashing: leaf and node hashes, roots, inclusion and
consistency proofs, and their verification."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()
_sha256 = hashlib.sha256


def leaf_hash(entry: bytes) -> bytes:
    """SHA-256(0x00 || entry)."""
    return hashlib.sha256(LEAF_PREFIX + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


class MerkleFrontier:
    """The right edge of a growing tree: one subtree root per set bit of the size.

    Appending is O(1) amortised and the root O(log n), so the writer and the verifier
    never hold every leaf hash.
    """

    __slots__ = ("_stack", "size")

    def __init__(self) -> None:
        self._stack: list[bytes] = []
        self.size = 0

    def append(self, leaf: bytes) -> None:
        """Add one leaf hash."""
        stack = self._stack
        self.size += 1
        size = self.size
        # Each trailing zero bit of the new size closes one perfect subtree.
        while size & 1 == 0:
            leaf = _sha256(NODE_PREFIX + stack.pop() + leaf).digest()
            size >>= 1
        stack.append(leaf)

    def root(self) -> bytes:
        """The RFC 6962 Merkle tree hash of the leaves so far."""
        if not self._stack:
            return EMPTY_ROOT
        root = self._stack[-1]
        for subtree in reversed(self._stack[:-1]):
            root = node_hash(subtree, root)
        return root

    def subtrees(self) -> list[bytes]:
        """The perfect-subtree roots, largest (leftmost) first."""
        return list(self._stack)

    @classmethod
    def from_subtrees(cls, size: int, subtrees: Sequence[bytes]) -> MerkleFrontier:
        """Rebuild a frontier from `subtrees()` of a tree of `size` leaves."""
        if bin(size).count("1") != len(subtrees):
            raise ValueError(f"a tree of {size} leaves has {bin(size).count('1')} subtrees")
        frontier = cls()
        frontier._stack = list(subtrees)
        frontier.size = size
        return frontier


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) over leaf hashes (RFC 6962 section 2.1)."""
    n = len(leaves)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaves[0]
    k = _split(n)
    return node_hash(merkle_root(leaves[:k]), merkle_root(leaves[k:]))


def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]): the audit path of leaf `index` in the tree over `leaves`."""
    n = len(leaves)
    if not 0 <= index < n:
        raise ValueError(f"leaf index {index} is outside a tree of {n} leaves")
    path: list[bytes] = []
    lo, hi = 0, n
    # Walk down from the root; each step records the sibling subtree, so the path is
    # built top-down and reversed at the end (RFC order is leaf-to-root).
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            path.append(merkle_root(leaves[lo + k : hi]))
            hi = lo + k
        else:
            path.append(merkle_root(leaves[lo : lo + k]))
            lo = lo + k
    path.reverse()
    return path


def consistency_proof(old_size: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) (RFC 6962 section 2.1.2) between the first `old_size` leaves and all."""
    n = len(leaves)
    if not 0 < old_size <= n:
        raise ValueError(f"old tree size {old_size} must be between 1 and {n}")
    return _subproof(old_size, leaves, True)


def _subproof(m: int, leaves: Sequence[bytes], complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [merkle_root(leaves)]
    k = _split(n)
    if m <= k:
        return [*_subproof(m, leaves[:k], complete), merkle_root(leaves[k:])]
    return [*_subproof(m - k, leaves[k:], False), merkle_root(leaves[:k])]


def root_from_inclusion_proof(
    index: int, tree_size: int, leaf: bytes, proof: Sequence[bytes]
) -> bytes | None:
    """RFC 9162 section 2.1.3.2: the root implied by an inclusion proof, or None if malformed."""
    if not 0 <= index < tree_size:
        return None
    fn, sn = index, tree_size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while True:
                    fn >>= 1
                    sn >>= 1
                    if fn & 1 or fn == 0:
                        break
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        return None
    return r


def verify_inclusion(
    index: int, tree_size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> bool:
    """True when `proof` shows leaf `index` is in the tree of `tree_size` with `root`."""
    return root_from_inclusion_proof(index, tree_size, leaf, proof) == root


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 section 2.1.4.2: True when the tree (old_size, old_root) is a prefix of
    (new_size, new_root)."""
    if old_size < 1 or old_size > new_size:
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    path = list(proof)
    # A power-of-two old tree is a complete subtree: its root is the proof's implicit first node.
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    if not path:
        return False
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while True:
                    fn >>= 1
                    sn >>= 1
                    if fn & 1 or fn == 0:
                        break
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root
