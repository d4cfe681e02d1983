"""Merkle proofs against a brute-force reference: the RFC 6962 definitions written out naively
(every subtree hashed from scratch), compared with the frontier, the proofs and their checks."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from audit.merkle import (
    EMPTY_ROOT,
    MerkleFrontier,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    merkle_root,
    root_from_inclusion_proof,
    verify_consistency,
    verify_inclusion,
)


def ref_root(entries: list[bytes]) -> bytes:
    """MTH straight from RFC 6962 2.1, over raw entries."""
    if not entries:
        return hashlib.sha256(b"").digest()
    if len(entries) == 1:
        return hashlib.sha256(b"\x00" + entries[0]).digest()
    k = 1
    while k * 2 < len(entries):
        k *= 2
    return hashlib.sha256(b"\x01" + ref_root(entries[:k]) + ref_root(entries[k:])).digest()


def ref_path(m: int, entries: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]) straight from RFC 6962 2.1.1."""
    if len(entries) == 1:
        return []
    k = 1
    while k * 2 < len(entries):
        k *= 2
    if m < k:
        return [*ref_path(m, entries[:k]), ref_root(entries[k:])]
    return [*ref_path(m - k, entries[k:]), ref_root(entries[:k])]


def ref_subproof(m: int, entries: list[bytes], b: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b) straight from RFC 6962 2.1.2."""
    n = len(entries)
    if m == n:
        return [] if b else [ref_root(entries)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return [*ref_subproof(m, entries[:k], b), ref_root(entries[k:])]
    return [*ref_subproof(m - k, entries[k:], False), ref_root(entries[:k])]


entry_lists = st.lists(st.binary(max_size=12), min_size=1, max_size=70)


@given(entry_lists)
def test_root_and_frontier_equal_the_reference(entries: list[bytes]) -> None:
    leaves = [leaf_hash(e) for e in entries]
    frontier = MerkleFrontier()
    for i, leaf in enumerate(leaves):
        frontier.append(leaf)
        assert frontier.root() == ref_root(entries[: i + 1])
    assert merkle_root(leaves) == ref_root(entries)
    rebuilt = MerkleFrontier.from_subtrees(frontier.size, frontier.subtrees())
    assert rebuilt.root() == frontier.root()


def test_empty_tree_root_is_hash_of_nothing() -> None:
    assert MerkleFrontier().root() == EMPTY_ROOT == ref_root([])


@given(entry_lists, st.data())
def test_inclusion_proof_equals_reference_and_verifies(
    entries: list[bytes], data: st.DataObject
) -> None:
    leaves = [leaf_hash(e) for e in entries]
    index = data.draw(st.integers(0, len(entries) - 1))
    proof = inclusion_proof(index, leaves)
    assert proof == ref_path(index, entries)
    root = ref_root(entries)
    assert verify_inclusion(index, len(leaves), leaves[index], proof, root)


@given(entry_lists, st.data())
def test_inclusion_proof_rejects_wrong_leaf_index_or_path(
    entries: list[bytes], data: st.DataObject
) -> None:
    leaves = [leaf_hash(e) for e in entries]
    n = len(leaves)
    index = data.draw(st.integers(0, n - 1))
    proof = inclusion_proof(index, leaves)
    root = merkle_root(leaves)
    assert not verify_inclusion(index, n, leaf_hash(b"not in the tree"), proof, root)
    other = data.draw(st.integers(0, n - 1))
    if leaves[other] != leaves[index] and other != index:
        assert not verify_inclusion(other, n, leaves[index], proof, root)
    if proof:
        position = data.draw(st.integers(0, len(proof) - 1))
        bad = list(proof)
        bad[position] = hashlib.sha256(bad[position]).digest()
        assert not verify_inclusion(index, n, leaves[index], bad, root)
        assert root_from_inclusion_proof(index, n, leaves[index], proof[:-1]) != root


@given(entry_lists, st.data())
@settings(max_examples=150)
def test_consistency_proof_equals_reference_and_verifies(
    entries: list[bytes], data: st.DataObject
) -> None:
    leaves = [leaf_hash(e) for e in entries]
    n = len(leaves)
    m = data.draw(st.integers(1, n))
    proof = consistency_proof(m, leaves)
    assert proof == ref_subproof(m, entries, True)
    assert verify_consistency(m, n, ref_root(entries[:m]), ref_root(entries), proof)


@given(entry_lists, st.data())
def test_consistency_proof_rejects_a_rewritten_history(
    entries: list[bytes], data: st.DataObject
) -> None:
    leaves = [leaf_hash(e) for e in entries]
    n = len(leaves)
    m = data.draw(st.integers(1, n))
    proof = consistency_proof(m, leaves)
    old_root, new_root = merkle_root(leaves[:m]), merkle_root(leaves)
    # An old tree whose leaf was changed is not a prefix of the new tree.
    changed = list(leaves[:m])
    position = data.draw(st.integers(0, m - 1))
    changed[position] = leaf_hash(entries[position] + b"!")
    assert not verify_consistency(m, n, merkle_root(changed), new_root, proof)
    if proof:
        bad = list(proof)
        bad[data.draw(st.integers(0, len(bad) - 1))] = leaf_hash(b"forged")
        assert not verify_consistency(m, n, old_root, new_root, bad)
    if m < n:
        assert not verify_consistency(m, n, old_root, leaf_hash(b"other root"), proof)
