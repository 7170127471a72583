"""Buckets and the Merkle root over them (protocol §4.4), against naive oracles."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scryp.core.balances import RECORD, encode_balances
from scryp.core.buckets import (
    BUCKET_BITS,
    BucketedBalances,
    MerkleTree,
    bucket_of,
    bucket_range,
    leaf_hash,
    merkle_root,
    node_hash,
    split,
    state_root,
    verify_proof,
)
from scryp.errors import MalformedInput

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


@settings(max_examples=100, deadline=None)
@given(ledger=ledgers, bits=bits_values, probe=ids)
def test_state_root_and_bucket_ranges_agree_with_the_naive_split(
    ledger: dict[bytes, int], bits: int, probe: bytes
) -> None:
    flat = encode_balances(ledger.items())
    assert state_root(flat, bits) == MerkleTree.of_file(flat, bits).root == naive_root(flat, bits)
    index = bucket_of(probe, bits)
    start, end = bucket_range(flat, index, bits)
    assert flat[start:end] == split(flat, bits)[index]
    tree = MerkleTree.of_file(flat, bits)
    twin = tree.copy()
    twin.update({index: leaf_hash(b"changed")})
    assert tree.root == naive_root(flat, bits) != twin.root  # a copy shares no node


def test_the_protocol_root_of_a_small_file_and_a_tampered_sibling() -> None:
    """§4.4.3 at the protocol's 16 bits; §4.4.6: a proof with one sibling changed (any
    level, any byte) or another bucket's bytes does not give the certified root."""
    accounts = [hashlib.sha256(b"proof %d" % i).digest() for i in range(40)]
    flat = encode_balances((a, i + 1) for i, a in enumerate(accounts))
    root = state_root(flat)
    assert root == naive_root(flat, BUCKET_BITS)
    tree = MerkleTree.of_file(flat)
    index = bucket_of(accounts[7], BUCKET_BITS)
    start, end = bucket_range(flat, index, BUCKET_BITS)
    bucket, siblings = flat[start:end], tree.proof(index)
    assert RECORD.pack(accounts[7], 8) in bucket and len(siblings) == BUCKET_BITS
    assert verify_proof(root, index, bucket, siblings, BUCKET_BITS)
    for level in range(BUCKET_BITS):
        tampered = list(siblings)
        tampered[level] = bytes([siblings[level][0] ^ 1]) + siblings[level][1:]
        assert not verify_proof(root, index, bucket, tampered, BUCKET_BITS), level
    assert not verify_proof(root, index, b"", siblings, BUCKET_BITS)


def test_every_byte_of_a_file_is_under_its_root() -> None:
    """An untrusted file is hashed before it is checked canonical: its buckets must still
    cover every byte once (else a root could match with bytes left out)."""
    low, high = RECORD.pack(b"\x00" * 32, 1), RECORD.pack(b"\xff" * 32, 1)
    assert state_root(high + low) != state_root(low + high)
    assert b"".join(split(high + low, BUCKET_BITS)) == high + low
    with pytest.raises(MalformedInput):
        state_root(low + b"\x00")


def test_bits_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError):
        split(b"", 25)


@settings(max_examples=100, deadline=None)
@given(bits=st.integers(0, 8), data=st.data())
def test_a_sparse_tree_equals_the_dense_one_node_for_node(bits: int, data: st.DataObject) -> None:
    """MerkleTree.sparse (small ledgers) against the dense constructor (every leaf given)."""
    width = 1 << bits
    filled = data.draw(st.sets(st.integers(0, width - 1), max_size=width))
    leaves = {b: leaf_hash(b"bucket %d" % b) for b in filled}
    dense = MerkleTree([leaves.get(b, leaf_hash(b"")) for b in range(width)], bits)
    sparse = MerkleTree.sparse(leaves, bits)
    assert sparse.root == dense.root
    assert all(sparse.proof(b) == dense.proof(b) for b in range(width))
