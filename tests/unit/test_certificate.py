"""Round statements and certificates (protocol §8.4)."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scryp.core.certificate import (
    STATEMENT_BYTES,
    Certificate,
    Statement,
    majority,
    verify_certificate,
)
from scryp.crypto import KeyPair
from scryp.errors import BadSignature, MalformedInput

KEYS = [KeyPair.from_seed(hashlib.sha256(b"server %d" % i).digest()) for i in range(5)]
QUORUM = [k.public for k in KEYS]
STATEMENT = Statement(
    network=hashlib.sha256(b"net").digest(),
    round=42,
    state_root=hashlib.sha256(b"state").digest(),
    infohash_v2=hashlib.sha256(b"info").digest(),
)


def certificate(signers: list[int], statement: Statement = STATEMENT) -> Certificate:
    return Certificate(tuple((i, statement.sign(KEYS[i])) for i in signers))


def test_statement_layout() -> None:
    data = STATEMENT.to_bytes()
    assert len(data) == STATEMENT_BYTES == 120
    assert data[:16] == b"scryp-round-v1\x00\x00"
    assert data[16:48] == STATEMENT.network
    assert data[48:56] == (42).to_bytes(8, "big")
    assert data[56:88] == STATEMENT.state_root
    assert data[88:120] == STATEMENT.infohash_v2
    assert Statement.from_bytes(data) == STATEMENT


def test_majority() -> None:
    assert [majority(n) for n in (1, 3, 5, 7)] == [1, 2, 3, 4]


def test_a_majority_certificate_verifies_and_round_trips() -> None:
    cert = certificate([0, 2, 4])
    data = cert.to_bytes()
    assert len(data) == 1 + 3 * 65
    assert Certificate.from_bytes(data) == cert
    verify_certificate(Certificate.from_bytes(data), STATEMENT, QUORUM)
    assembled = Certificate.assemble(
        {4: cert.signatures[2][1], 0: cert.signatures[0][1], 2: cert.signatures[1][1]}, len(QUORUM)
    )
    assert assembled == cert


def test_a_minority_is_refused() -> None:
    with pytest.raises(MalformedInput, match="majority"):
        verify_certificate(certificate([0, 1]), STATEMENT, QUORUM)


def test_forged_or_misattributed_signatures_are_refused() -> None:
    good = certificate([0, 1, 2])
    index, signature = good.signatures[1]
    forged = bytes([signature[0] ^ 0x40]) + signature[1:]
    with pytest.raises(BadSignature):
        verify_certificate(
            Certificate((good.signatures[0], (index, forged), good.signatures[2])),
            STATEMENT,
            QUORUM,
        )
    # Server 1's signature claimed as server 3's (wrong key).
    with pytest.raises(BadSignature):
        verify_certificate(
            Certificate((good.signatures[0], (3, signature), good.signatures[2])),
            STATEMENT,
            QUORUM,
        )
    # A certificate for another round does not vouch for this one.
    other = Statement(STATEMENT.network, 43, STATEMENT.state_root, STATEMENT.infohash_v2)
    with pytest.raises(BadSignature):
        verify_certificate(certificate([0, 1, 2], other), STATEMENT, QUORUM)
    # Signed by keys outside the quorum.
    outsiders = [KeyPair.from_seed(bytes([i]) * 32) for i in range(3)]
    with pytest.raises(BadSignature):
        verify_certificate(
            Certificate(tuple((i, STATEMENT.sign(k)) for i, k in enumerate(outsiders))),
            STATEMENT,
            QUORUM,
        )


def test_duplicate_or_out_of_range_indices_are_refused() -> None:
    cert = certificate([0, 1, 2])
    duplicated = Certificate((cert.signatures[0], cert.signatures[0], cert.signatures[1]))
    with pytest.raises(MalformedInput):
        verify_certificate(duplicated, STATEMENT, QUORUM)
    with pytest.raises(MalformedInput):
        Certificate.from_bytes(duplicated.to_bytes())
    beyond = Certificate((*cert.signatures, (9, cert.signatures[0][1])))
    with pytest.raises(MalformedInput, match="outside"):
        verify_certificate(beyond, STATEMENT, QUORUM)


@pytest.mark.parametrize(
    "data", [b"", b"\x01", b"\x01" + bytes(64), b"\x02" + bytes(65), b"\x00\x00"]
)
def test_malformed_certificate_bytes(data: bytes) -> None:
    with pytest.raises(MalformedInput):
        Certificate.from_bytes(data)


@given(st.binary(max_size=300))
def test_certificate_decoding_only_raises_malformed_input(data: bytes) -> None:
    try:
        cert = Certificate.from_bytes(data)
    except MalformedInput:
        return
    assert cert.to_bytes() == data


@pytest.mark.parametrize("data", [b"", bytes(119), bytes(121), b"x" * 16 + bytes(104)])
def test_malformed_statement_bytes(data: bytes) -> None:
    with pytest.raises(MalformedInput):
        Statement.from_bytes(data)
