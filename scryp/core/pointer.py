"""Pointer records: what each server publishes as its BEP 44 mutable item (protocol §8.3).

Owns: the canonical record (bencoded dict), the BEP 44 signed-bytes layout, verification of an
item fetched from the DHT against the quorum, and the choice of the round to follow. Pure: the
DHT traffic lives in ``scryp.swarm``, which hands raw ``SignedItem``s here.

Invariants:
- ``encode_record`` output is canonical bencode and at most ``RECORD_MAX_BYTES``; a record
  that would not fit is refused before any put (libtorrent drops oversized puts silently).
- ``verify_item`` accepts only items under a key in ``.keys``, with the fixed salt, a valid
  ed25519 signature over the BEP 44 signed bytes, and a record that decodes strictly.
  Everything else is the publisher's fault (RemoteError): the reader logs it and goes on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from scryp.core import bencode
from scryp.core.certificate import Certificate, Statement, majority, verify_certificate
from scryp.crypto import verify
from scryp.errors import BadSignature, MalformedInput, RemoteError

# BEP 44: "v" (the bencoded value) must not exceed 1000 bytes. libtorrent's put_string wraps our
# record in a bencode string, so the record may use 1000 - len(b"996:") = 996 bytes.
VALUE_MAX_BYTES = 1000
RECORD_MAX_BYTES = 996
SALT = b"scryp1"
SALT_MAX_BYTES = 64
RECORD_VERSION = 1
RECENT_MAX = 4
API_MAX_BYTES = 64
INFOHASH_V1_BYTES = 20
HASH_BYTES = 32
PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64

_KEYS = frozenset({b"api", b"cert", b"ih", b"ih2", b"net", b"recent", b"round", b"state", b"v"})


class UnknownKey(BadSignature):
    """An item signed by a key that is not in ``.keys``: valid or not, it vouches for nothing."""


@dataclass(frozen=True, slots=True)
class PointerRecord:
    """One server's claim: "round R has state root S and lives in torrent IH"."""

    network: bytes
    round: int
    state_root: bytes
    infohash: bytes  # v1, 20 bytes: what users type (40 hex) and magnet links carry
    infohash_v2: bytes  # BEP 52, 32 bytes: what the certificate binds
    recent: tuple[bytes, ...] = ()  # v1 infohashes of earlier rounds, newest first
    api: str = ""  # "host:port" of the server's HTTP API, "" if it has none
    certificate: bytes = b""  # Certificate.to_bytes() of a majority, or b"" if not yet

    def __post_init__(self) -> None:
        if len(self.network) != HASH_BYTES:
            raise MalformedInput("network id is 32 bytes")
        if not 0 <= self.round < 2**63:
            raise MalformedInput(f"round {self.round} out of range")
        if len(self.state_root) != HASH_BYTES or len(self.infohash_v2) != HASH_BYTES:
            raise MalformedInput("state root and infohash v2 are 32 bytes")
        if len(self.infohash) != INFOHASH_V1_BYTES:
            raise MalformedInput("infohash v1 is 20 bytes")
        if len(self.recent) > RECENT_MAX or any(len(h) != INFOHASH_V1_BYTES for h in self.recent):
            raise MalformedInput(f"at most {RECENT_MAX} recent 20-byte infohashes")
        api = self.api.encode("ascii", errors="replace")
        if len(api) > API_MAX_BYTES or not all(0x21 <= c < 0x7F for c in api):
            raise MalformedInput("api is at most 64 printable ASCII bytes, no spaces")

    @property
    def statement(self) -> Statement:
        return Statement(self.network, self.round, self.state_root, self.infohash_v2)


@dataclass(frozen=True, slots=True)
class SignedItem:
    """A BEP 44 mutable item as the DHT returned it, not yet trusted."""

    public: bytes
    salt: bytes
    seq: int
    value: bytes  # our record: the byte string carried as "v"
    signature: bytes


def encode_record(record: PointerRecord) -> bytes:
    """The canonical record bytes; ValueError if they exceed RECORD_MAX_BYTES."""
    encoded = bencode.encode(
        {
            b"api": record.api.encode("ascii"),
            b"cert": record.certificate,
            b"ih": record.infohash,
            b"ih2": record.infohash_v2,
            b"net": record.network,
            b"recent": list(record.recent),
            b"round": record.round,
            b"state": record.state_root,
            b"v": RECORD_VERSION,
        }
    )
    if len(encoded) > RECORD_MAX_BYTES:
        raise ValueError(f"pointer record is {len(encoded)} bytes, limit {RECORD_MAX_BYTES}")
    return encoded


def decode_record(data: bytes) -> PointerRecord:
    """The record ``data`` canonically encodes; MalformedInput otherwise."""
    if len(data) > RECORD_MAX_BYTES:
        raise MalformedInput(f"pointer record is {len(data)} bytes, limit {RECORD_MAX_BYTES}")
    fields = bencode.decode(data)
    if not isinstance(fields, dict) or set(fields) != _KEYS:
        raise MalformedInput("pointer record is not a dict with exactly the record keys")
    if fields[b"v"] != RECORD_VERSION:
        raise MalformedInput(f"unknown pointer record version {fields[b'v']!r}")
    recent = fields[b"recent"]
    if not isinstance(recent, list) or not all(isinstance(h, bytes) for h in recent):
        raise MalformedInput("recent must be a list of byte strings")
    round_number = fields[b"round"]
    if not isinstance(round_number, int):
        raise MalformedInput("round must be an integer")
    strings = {}
    for key in (b"api", b"cert", b"ih", b"ih2", b"net", b"state"):
        value = fields[key]
        if not isinstance(value, bytes):
            raise MalformedInput(f"{key.decode()} must be a byte string")
        strings[key] = value
    try:
        api = strings[b"api"].decode("ascii")
    except UnicodeDecodeError:
        raise MalformedInput("api is not ASCII") from None
    return PointerRecord(
        network=strings[b"net"],
        round=round_number,
        state_root=strings[b"state"],
        infohash=strings[b"ih"],
        infohash_v2=strings[b"ih2"],
        recent=tuple(h for h in recent if isinstance(h, bytes)),
        api=api,
        certificate=strings[b"cert"],
    )


def signed_bytes(salt: bytes, seq: int, value: bytes) -> bytes:
    """What a BEP 44 mutable item's signature covers, for a byte-string value.

    ``4:salt<len>:<salt>3:seqi<seq>e1:v<bencoded v>``; the salt part is absent for an empty salt.
    """
    salted = bencode.encode(b"salt") + bencode.encode(salt) if salt else b""
    return salted + b"3:seqi%de1:v" % seq + bencode.encode(value)


def verify_item(item: SignedItem, quorum: Sequence[bytes], salt: bytes = SALT) -> PointerRecord:
    """The record in ``item`` if a quorum server signed it; a RemoteError saying why not."""
    if item.public not in quorum:
        raise UnknownKey(f"key {item.public.hex()[:16]}… is not in .keys")
    if item.salt != salt:
        raise MalformedInput(f"salt {item.salt!r} is not {salt!r}")
    if len(bencode.encode(item.value)) > VALUE_MAX_BYTES:
        raise MalformedInput(f"value over the BEP 44 limit of {VALUE_MAX_BYTES} bytes")
    if not 0 <= item.seq < 2**63:
        raise MalformedInput(f"seq {item.seq} out of range")
    if not verify(item.public, signed_bytes(item.salt, item.seq, item.value), item.signature):
        raise BadSignature(f"BEP 44 signature of {item.public.hex()[:16]}… does not verify")
    return decode_record(item.value)


def certificate_signers(record: PointerRecord, quorum: Sequence[bytes]) -> tuple[int, ...]:
    """The server indices (positions in ``quorum``) that signed ``record``'s certificate, if it
    is a valid majority certificate of ``record``'s own statement (protocol §8.4); () if the
    record has none, or one that does not verify: a bad certificate is the publisher's fault
    and vouches for nothing, so the reader goes on with the other records."""
    if not record.certificate:
        return ()
    try:
        certificate = Certificate.from_bytes(record.certificate)
        verify_certificate(certificate, record.statement, quorum)
    except RemoteError:
        return ()
    return tuple(index for index, _ in certificate.signatures)


def certified(record: PointerRecord, quorum: Sequence[bytes]) -> bool:
    """Whether ``record`` carries a certificate a majority of ``quorum`` signed."""
    return bool(certificate_signers(record, quorum))


def agreed(
    records: Mapping[bytes, PointerRecord], quorum: Sequence[bytes], network: bytes
) -> PointerRecord | None:
    """The highest round of ``network`` that a majority vouches for, or None (protocol §8.5).

    ``records`` maps a server key to its verified record. A round counts as vouched for if a
    strict majority of the quorum's pointers name the same (round, state, infohashes), or if
    any pointer carries a valid majority certificate for it. A lone server (a minority) can
    thus never steer readers to a state the majority did not agree on.
    """
    mine = [r for key, r in records.items() if key in quorum and r.network == network]
    votes = Counter((r.round, r.state_root, r.infohash, r.infohash_v2) for r in mine)
    best: PointerRecord | None = None
    for record in mine:
        claim = (record.round, record.state_root, record.infohash, record.infohash_v2)
        vouched = votes[claim] >= majority(len(quorum)) or certified(record, quorum)
        if vouched and (best is None or record.round > best.round):
            best = record
    return best
