"""Round statements and certificates: a majority of servers vouching for one round.

Owns: the canonical bytes of the statement a server signs at each round boundary, the
certificate (a strict majority of those signatures) and its byte codec and verification
against the quorum from ``.keys``. Pure. Reference: docs/protocol.md §8.4.

Statement, 120 bytes, all integers big-endian::

    b"scryp-round-v1\\0\\0" (16) | network id (32) | round (8) | state root (32) | infohash v2 (32)

The infohash is the 32-byte BEP 52 info-hash of the round's hybrid torrent (SHA-256 of the info
dict). The info dict carries the v1 piece hashes and the v2 file roots, so one signature binds
every byte of the snapshot; users still type the 40-hex v1 infohash, which a client checks
against the v2 one once it holds the metadata.

Certificate bytes: ``count (1) | count × (server index (1) | signature (64))``, indices into
``.keys`` strictly increasing, ``count`` a strict majority of the quorum. Invariant: a
certificate that ``verify_certificate`` accepts holds ``count`` distinct valid signatures.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from scryp.crypto import KeyPair, verify
from scryp.errors import BadSignature, MalformedInput

STATEMENT_TAG = b"scryp-round-v1\x00\x00"
NETWORK_ID_BYTES = 32
HASH_BYTES = 32
SIGNATURE_BYTES = 64
QUORUM_MAX = 255
_STATEMENT = struct.Struct(">16s32sQ32s32s")
STATEMENT_BYTES = _STATEMENT.size  # 120
_ENTRY_BYTES = 1 + SIGNATURE_BYTES


def majority(quorum_size: int) -> int:
    """The smallest strict majority of ``quorum_size`` servers."""
    return quorum_size // 2 + 1


@dataclass(frozen=True, slots=True)
class Statement:
    """What a server vouches for when it signs a round."""

    network: bytes
    round: int
    state_root: bytes
    infohash_v2: bytes

    def __post_init__(self) -> None:
        if len(self.network) != NETWORK_ID_BYTES:
            raise MalformedInput(f"network id is {NETWORK_ID_BYTES} bytes")
        if not 0 <= self.round < 2**64:
            raise MalformedInput(f"round {self.round} does not fit 8 bytes")
        if len(self.state_root) != HASH_BYTES or len(self.infohash_v2) != HASH_BYTES:
            raise MalformedInput("state root and infohash v2 are 32 bytes each")

    def to_bytes(self) -> bytes:
        return _STATEMENT.pack(
            STATEMENT_TAG, self.network, self.round, self.state_root, self.infohash_v2
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Statement:
        if len(data) != STATEMENT_BYTES:
            raise MalformedInput(f"a statement is {STATEMENT_BYTES} bytes, got {len(data)}")
        tag, network, round_number, state, infohash = _STATEMENT.unpack(data)
        if tag != STATEMENT_TAG:
            raise MalformedInput("not a scryp round statement")
        return cls(network, round_number, state, infohash)

    def sign(self, key: KeyPair) -> bytes:
        return key.sign(self.to_bytes())


@dataclass(frozen=True, slots=True)
class Certificate:
    """Signatures by server index (position in ``.keys``), in increasing index order."""

    signatures: tuple[tuple[int, bytes], ...]

    def to_bytes(self) -> bytes:
        return bytes([len(self.signatures)]) + b"".join(
            bytes([index]) + signature for index, signature in self.signatures
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Certificate:
        if not data:
            raise MalformedInput("empty certificate")
        count = data[0]
        if len(data) != 1 + count * _ENTRY_BYTES:
            raise MalformedInput(
                f"certificate of {count} signatures must be {1 + count * _ENTRY_BYTES} bytes,"
                f" got {len(data)}"
            )
        entries = tuple(
            (data[at], data[at + 1 : at + _ENTRY_BYTES]) for at in range(1, len(data), _ENTRY_BYTES)
        )
        indices = [index for index, _ in entries]
        if any(b <= a for a, b in itertools.pairwise(indices)):
            raise MalformedInput("certificate server indices must strictly increase")
        return cls(entries)

    @classmethod
    def assemble(cls, by_index: Mapping[int, bytes], quorum_size: int) -> Certificate:
        """The certificate made of the first majority of the given signatures, by index."""
        chosen = sorted(by_index.items())[: majority(quorum_size)]
        if len(chosen) < majority(quorum_size):
            raise ValueError(f"need {majority(quorum_size)} signatures, have {len(chosen)}")
        return cls(tuple(chosen))


def verify_certificate(
    certificate: Certificate, statement: Statement, quorum: Sequence[bytes]
) -> None:
    """Return if a strict majority of ``quorum`` signed ``statement``; raise otherwise.

    MalformedInput for a structurally impossible certificate (too few signatures, an index
    outside the quorum), BadSignature if any signature fails: a certificate with one bad
    signature is refused whole, since an honest server never sends one.
    """
    if not 0 < len(quorum) <= QUORUM_MAX:
        raise ValueError(f"quorum of {len(quorum)} servers")
    need = majority(len(quorum))
    if len(certificate.signatures) < need:
        raise MalformedInput(
            f"certificate has {len(certificate.signatures)} signatures, a majority is {need}"
        )
    message = statement.to_bytes()
    previous = -1
    for index, signature in certificate.signatures:
        if index <= previous:
            raise MalformedInput("certificate server indices must strictly increase")
        previous = index
        if index >= len(quorum):
            raise MalformedInput(f"server index {index} outside a quorum of {len(quorum)}")
        if not verify(quorum[index], message, signature):
            raise BadSignature(f"signature of server {index} does not verify")
