"""Buckets and the Merkle root over them (protocol §4.4), against naive oracles."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scryp.core.balances import RECORD, encode_balances
from scryp.core.buckets import (
    BucketedBalances,
    MerkleTree,
    bucket_of,
    leaf_hash,
    merkle_root,
    node_hash,
    split,
    verify_proof,
)

ids = st.binary(min_size=32, max_size=32)
ledgers = st.dictionaries(ids, st.integers(1, 2**32 - 1), max_size=60)
bits_values = st.integers(0, 6)


def naive_root(flat: bytes, bits: int) -> bytes:
    """The root recomputed from scratch: bucket every record by its id's first bits."""
    buckets: list[list[bytes]] = [[] for _ in range(1 << bits)]
    for account, balance in RECORD.iter_unpack(flat):
        value = int.from_bytes(account, "big") >> (256 - bits)
        buckets[value].append(RECORD.pack(account, balance))
    return merkle_root([leaf_hash(b"".join(b)) for b in buckets])


@settings(max_examples=150, deadline=None)
@given(ledger=ledgers, bits=bits_values)
def test_buckets_concatenate_to_the_flat_file_and_hold_only_their_prefix(
    ledger: dict[bytes, int], bits: int
) -> None:
    flat = encode_balances(ledger.items())
    buckets = split(flat, bits)
    assert len(buckets) == 1 << bits
    assert b"".join(buckets) == flat
    for index, bucket in enumerate(buckets):
        assert all(bucket_of(a, bits) == index for a, _ in RECORD.iter_unpack(bucket))
    assert BucketedBalances(flat, bits).root == naive_root(flat, bits)


@settings(max_examples=150, deadline=None)
@given(
    ledger=ledgers,
    rounds=st.lists(st.dictionaries(ids, st.integers(0, 2**32 - 1), max_size=12), max_size=5),
    bits=bits_values,
    reuse=st.data(),
)
def test_incremental_root_equals_the_root_from_scratch(
    ledger: dict[bytes, int],
    rounds: list[dict[bytes, int]],
    bits: int,
    reuse: st.DataObject,
) -> None:
    state = BucketedBalances(encode_balances(ledger.items()), bits)
    model = dict(ledger)
    for changes in rounds:
        if model:  # also change existing accounts, and empty some (balance 0 removes them)
            known = reuse.draw(st.lists(st.sampled_from(sorted(model)), max_size=5))
            changes.update({a: reuse.draw(st.integers(0, 9)) for a in known})
        changed = state.apply(changes)
        model.update(changes)
        model = {a: b for a, b in model.items() if b}
        flat = encode_balances(model.items())
        assert state.flat() == flat
        assert state.root == naive_root(flat, bits)
        assert changed == sorted({bucket_of(a, bits) for a in changes})


@settings(max_examples=100, deadline=None)
@given(ledger=ledgers, bits=bits_values, probe=ids)
def test_a_proof_verifies_the_accounts_bucket_and_nothing_else(
    ledger: dict[bytes, int], bits: int, probe: bytes
) -> None:
    state = BucketedBalances(encode_balances(ledger.items()), bits)
    index, bucket, path = state.proof(probe)
    assert verify_proof(state.root, index, bucket, path, bits)
    assert not verify_proof(state.root, index, bucket + RECORD.pack(probe, 1), path, bits)
    if bits:
        assert not verify_proof(state.root, index, bucket, path[:-1], bits)
    if bits and state.buckets[index ^ 1] != bucket:  # equal siblings prove each other's place
        assert not verify_proof(state.root, index ^ 1, bucket, path, bits)


def test_tree_update_counts_shared_parents_once_and_tags_separate_leaves_from_nodes() -> None:
    leaves = [hashlib.sha256(bytes([i])).digest() for i in range(8)]
    tree = MerkleTree(leaves, 3)
    assert tree.root == merkle_root(leaves)
    new = hashlib.sha256(b"x").digest()
    assert tree.update({0: new, 1: new}) == 3  # one parent, grandparent, root
    leaves[0] = leaves[1] = new
    assert tree.root == merkle_root(leaves)
    assert leaf_hash(b"") != hashlib.sha256(b"").digest()
    assert node_hash(leaves[0], leaves[1]) != hashlib.sha256(leaves[0] + leaves[1]).digest()


def test_bits_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError):
        split(b"", 25)
