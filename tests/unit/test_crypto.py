"""Ed25519 keys and libtorrent's key form (§2), against RFC 8032's first test vector."""

from __future__ import annotations

import hashlib

import nacl.bindings
import pytest

from scryp.crypto import KeyPair, libtorrent_secret_from_seed, parse_public_key_hex, verify
from scryp.errors import MalformedInput

# RFC 8032 §7.1, TEST 1 (empty message).
RFC_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC_SIGNATURE = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555"
    "fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)


def test_rfc8032_test_1() -> None:
    key = KeyPair.from_seed(RFC_SEED)
    assert key.public == RFC_PUBLIC
    assert key.sign(b"") == RFC_SIGNATURE
    assert verify(RFC_PUBLIC, b"", RFC_SIGNATURE)
    assert not verify(RFC_PUBLIC, b"x", RFC_SIGNATURE)
    assert not verify(RFC_PUBLIC, b"", RFC_SIGNATURE[:-1] + b"\x00")


def test_libtorrent_secret_is_the_clamped_sha512_of_the_seed() -> None:
    expanded = libtorrent_secret_from_seed(RFC_SEED)
    digest = hashlib.sha512(RFC_SEED).digest()
    assert len(expanded) == 64
    assert expanded[32:] == digest[32:]  # the nonce prefix is SHA-512's second half, as is
    assert expanded[0] == digest[0] & 0b1111_1000
    assert expanded[31] == (digest[31] & 0b0011_1111) | 0b0100_0000
    assert expanded[1:31] == digest[1:31]
    # The scalar half times the base point is the public key (RFC 8032 §5.1.5 step 4).
    scalar = expanded[:32]
    reduced = nacl.bindings.crypto_core_ed25519_scalar_reduce(scalar + bytes(32))
    assert nacl.bindings.crypto_scalarmult_ed25519_base_noclamp(reduced) == RFC_PUBLIC
    assert KeyPair.from_seed(RFC_SEED).libtorrent_secret() == expanded
    # And it is not pynacl's own 64-byte form (seed || public), which libtorrent drops.
    assert expanded != RFC_SEED + RFC_PUBLIC


def test_bad_seed_lengths() -> None:
    with pytest.raises(MalformedInput):
        KeyPair.from_seed(bytes(31))
    with pytest.raises(MalformedInput):
        libtorrent_secret_from_seed(bytes(33))


def test_verify_never_raises_on_wrong_lengths() -> None:
    assert not verify(RFC_PUBLIC[:31], b"", RFC_SIGNATURE)
    assert not verify(RFC_PUBLIC, b"", RFC_SIGNATURE[:63])
    assert not verify(bytes(32), b"", bytes(64))


def test_parse_public_key_hex() -> None:
    assert parse_public_key_hex(RFC_PUBLIC.hex().upper()) == RFC_PUBLIC
    with pytest.raises(MalformedInput, match="64 hex digits"):
        parse_public_key_hex("abcd")
    with pytest.raises(MalformedInput, match="not hexadecimal"):
        parse_public_key_hex("zz" * 32)


def test_repr_hides_the_seed() -> None:
    assert RFC_SEED.hex() not in repr(KeyPair.from_seed(RFC_SEED))
