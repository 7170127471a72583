"""The 140-byte transaction, checked against an encoder written here from the spec (§3)."""

from __future__ import annotations

import hashlib
import struct

import nacl.signing
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scryp.core.tx import (
    TX_BYTES,
    Transaction,
    decode_many,
    encode_many,
    verify_signatures,
)
from scryp.crypto import KeyPair
from scryp.errors import MalformedInput

PAYER_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
PAYEE = bytes(range(32))


def independent_encoding(seed: bytes, payee: bytes, amount: int, timestamp_ms: int) -> bytes:
    """Protocol §3.1 written out again with struct and pynacl only, not Scryp's code."""
    signer = nacl.signing.SigningKey(seed)
    payer = bytes(signer.verify_key)
    body = struct.pack(">Q", timestamp_ms) + struct.pack(">I", amount) + payee + payer
    assert len(body) == 76
    return body + signer.sign(body).signature


def test_parses_and_verifies_an_independently_encoded_transaction() -> None:
    raw = independent_encoding(PAYER_SEED, PAYEE, 100, 1_700_000_000_123)
    tx = Transaction.decode(raw)
    assert tx.timestamp_ms == 1_700_000_000_123
    assert tx.amount == 100
    assert tx.payee == PAYEE
    assert tx.payer == bytes(nacl.signing.SigningKey(PAYER_SEED).verify_key)
    assert tx.signature == raw[76:]
    assert tx.tx_id == hashlib.sha256(raw).digest()
    assert tx.encode() == raw
    assert tx.signature_valid()


def test_scryp_signing_matches_the_independent_encoding() -> None:
    ours = Transaction.create(KeyPair.from_seed(PAYER_SEED), PAYEE, 7, 42)
    assert ours.encode() == independent_encoding(PAYER_SEED, PAYEE, 7, 42)


def test_any_one_byte_change_is_rejected() -> None:
    raw = independent_encoding(PAYER_SEED, PAYEE, 100, 1_700_000_000_123)
    for position in range(TX_BYTES):
        for flip in (0x01, 0x80, 0xFF):
            changed = bytearray(raw)
            changed[position] ^= flip
            tx = Transaction.decode(bytes(changed))
            assert not tx.signature_valid(), f"byte {position} ^ {flip:#x} still verifies"


@pytest.mark.parametrize("length", [0, 1, 139, 141, 280])
def test_wrong_length_is_malformed(length: int) -> None:
    with pytest.raises(MalformedInput, match="140 bytes"):
        Transaction.decode(bytes(length))


def test_non_bytes_is_malformed() -> None:
    with pytest.raises(MalformedInput):
        Transaction.decode("x" * 140)  # type: ignore[arg-type]


def test_create_refuses_values_the_layout_cannot_hold() -> None:
    payer = KeyPair.from_seed(PAYER_SEED)
    with pytest.raises(MalformedInput):
        Transaction.create(payer, PAYEE, 2**32, 0)
    with pytest.raises(MalformedInput):
        Transaction.create(payer, PAYEE, -1, 0)
    with pytest.raises(MalformedInput):
        Transaction.create(payer, PAYEE, 1, 2**64)
    with pytest.raises(MalformedInput):
        Transaction.create(payer, PAYEE[:31], 1, 0)


@given(
    timestamp_ms=st.integers(0, 2**64 - 1),
    amount=st.integers(0, 2**32 - 1),
    payee=st.binary(min_size=32, max_size=32),
)
def test_round_trip(timestamp_ms: int, amount: int, payee: bytes) -> None:
    tx = Transaction.create(KeyPair.from_seed(PAYER_SEED), payee, amount, timestamp_ms)
    again = Transaction.decode(tx.encode())
    assert again == tx
    assert (again.timestamp_ms, again.amount, again.payee) == (timestamp_ms, amount, payee)
    assert again.signature_valid()


@given(st.binary(min_size=TX_BYTES, max_size=TX_BYTES))
def test_random_bytes_decode_but_do_not_verify(raw: bytes) -> None:
    tx = Transaction.decode(raw)
    assert tx.encode() == raw
    assert not tx.signature_valid()


def test_batches_split_and_join() -> None:
    payer = KeyPair.from_seed(PAYER_SEED)
    txs = [Transaction.create(payer, PAYEE, n, n) for n in range(1, 6)]
    assert decode_many(encode_many(txs), count_max=5) == txs
    assert verify_signatures(txs) == [True] * 5
    with pytest.raises(MalformedInput, match="at most 4"):
        decode_many(encode_many(txs), count_max=4)
    with pytest.raises(MalformedInput, match="left over"):
        decode_many(encode_many(txs) + b"x", count_max=10)
    assert decode_many(b"", count_max=1) == []
