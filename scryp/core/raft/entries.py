"""Log entries and round-snapshot metadata: the data Raft replicates, and its byte layout.

Owns: the closed set of entry payloads (no-op, payment batch, seal), the ``Entry`` record that
places a payload in the log, ``SnapshotMeta`` (a sealed round standing in for a log prefix), and
their canonical encodings (big-endian, fixed-width integers, length-prefixed lists).

Invariants:
- ``decode_entry(encode_entry(e)) == e`` for every valid entry, and decoding consumes every
  byte: trailing bytes, unknown kinds and oversized counts raise ``MalformedInput``.
- An entry is opaque to Raft: payments are 140-byte strings here; the ledger decodes them.
- A ``SnapshotMeta`` always names a seal entry: compaction happens only at round boundaries,
  so "catch up from round r" fully describes the state a lagging server must load (Raft §7).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from scryp.errors import MalformedInput

TX_BYTES = 140  # one payment, protocol §3; Raft only needs its length
STATE_HASH_BYTES = 32
# Hard caps on what any decoded entry may hold, whatever the configuration: a peer's bytes can
# never make us allocate more than this per entry.
ENTRY_PAYMENTS_MAX = 65_536
U64_MAX = 2**64 - 1


class EntryKind(IntEnum):
    """Tag byte of an entry's payload. Values are wire format: never renumber."""

    NOOP = 0  # appended by a new leader at the start of its term (Raft §8)
    PAYMENTS = 1  # a batch of client payments, in the order the leader received them
    SEAL = 2  # closes round ``round``: applying it yields that round's state root


@dataclass(frozen=True, slots=True)
class NoOp:
    """The leader's first entry of its term; commits earlier terms' entries (Raft §5.4.2, §8)."""


@dataclass(frozen=True, slots=True)
class Payments:
    """A batch of 140-byte payments, applied as one ledger batch at the entry's stamp."""

    txs: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Seal:
    """Closes round ``round``; rounds in any log are consecutive (1, 2, 3, ...)."""

    round: int


Payload = NoOp | Payments | Seal


@dataclass(frozen=True, slots=True)
class Entry:
    """One log position: the term it was created in, its index, the leader's stamp, a payload."""

    term: int
    index: int
    stamp_ms: int
    payload: Payload


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    """A sealed round that replaces the log prefix ending at ``index`` (Raft §7).

    ``index``/``term`` are those of the seal entry; ``stamp_ms`` its leader stamp (so a new
    leader knows when the next round is due); ``state_root`` what applying it yielded.
    Round 0 is the genesis, at index 0 and term 0.
    """

    index: int
    term: int
    round: int
    stamp_ms: int
    state_root: bytes


_ENTRY_HEAD = struct.Struct(">QQQB")  # term, index, stamp ms, kind
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_META = struct.Struct(">QQQQ32s")  # index, term, round, stamp ms, state root

ENTRY_HEAD_BYTES = _ENTRY_HEAD.size
SNAPSHOT_META_BYTES = _META.size


def encoded_entry_bytes(entry: Entry) -> int:
    """Size of ``encode_entry(entry)`` without building it (for message-size budgeting)."""
    match entry.payload:
        case NoOp():
            return ENTRY_HEAD_BYTES
        case Seal():
            return ENTRY_HEAD_BYTES + _U64.size
        case Payments(txs=txs):
            return ENTRY_HEAD_BYTES + _U32.size + TX_BYTES * len(txs)


def encode_entry(entry: Entry) -> bytes:
    head = _ENTRY_HEAD.pack(entry.term, entry.index, entry.stamp_ms, _kind(entry.payload))
    match entry.payload:
        case NoOp():
            return head
        case Seal(round=round_number):
            return head + _U64.pack(round_number)
        case Payments(txs=txs):
            return b"".join((head, _U32.pack(len(txs)), *txs))


def decode_entry(data: bytes) -> Entry:
    """Parse exactly one entry; ``MalformedInput`` on any deviation from the layout."""
    if len(data) < ENTRY_HEAD_BYTES:
        raise MalformedInput(f"an entry is at least {ENTRY_HEAD_BYTES} bytes, got {len(data)}")
    term, index, stamp_ms, kind = _ENTRY_HEAD.unpack_from(data, 0)
    body = memoryview(data)[ENTRY_HEAD_BYTES:]
    payload: Payload
    if kind == EntryKind.NOOP:
        _expect_length(body, 0, "no-op entry body")
        payload = NoOp()
    elif kind == EntryKind.SEAL:
        _expect_length(body, _U64.size, "seal entry body")
        payload = Seal(round=_U64.unpack_from(body, 0)[0])
    elif kind == EntryKind.PAYMENTS:
        if len(body) < _U32.size:
            raise MalformedInput("payments entry has no count")
        (count,) = _U32.unpack_from(body, 0)
        if count > ENTRY_PAYMENTS_MAX:
            raise MalformedInput(f"payments entry holds {count} > {ENTRY_PAYMENTS_MAX} payments")
        _expect_length(body, _U32.size + TX_BYTES * count, "payments entry body")
        start = _U32.size
        payload = Payments(
            txs=tuple(
                bytes(body[start + TX_BYTES * i : start + TX_BYTES * (i + 1)]) for i in range(count)
            )
        )
    else:
        raise MalformedInput(f"unknown entry kind {kind}")
    return Entry(term=term, index=index, stamp_ms=stamp_ms, payload=payload)


def encode_snapshot_meta(meta: SnapshotMeta) -> bytes:
    return _META.pack(meta.index, meta.term, meta.round, meta.stamp_ms, meta.state_root)


def decode_snapshot_meta(data: bytes) -> SnapshotMeta:
    _expect_length(memoryview(data), SNAPSHOT_META_BYTES, "snapshot metadata")
    index, term, round_number, stamp_ms, state_root = _META.unpack(data)
    return SnapshotMeta(
        index=index, term=term, round=round_number, stamp_ms=stamp_ms, state_root=state_root
    )


def describe_entry(entry: Entry) -> str:
    """A short, stable, human-readable form for transcripts: ``3/12 seal(4)``."""
    match entry.payload:
        case NoOp():
            what = "noop"
        case Seal(round=round_number):
            what = f"seal({round_number})"
        case Payments(txs=txs):
            what = f"pay({len(txs)})"
    return f"{entry.term}/{entry.index} {what}"


def _kind(payload: Payload) -> EntryKind:
    match payload:
        case NoOp():
            return EntryKind.NOOP
        case Seal():
            return EntryKind.SEAL
        case Payments():
            return EntryKind.PAYMENTS


def _expect_length(body: memoryview, length: int, what: str) -> None:
    if len(body) != length:
        raise MalformedInput(f"{what} is {length} bytes, got {len(body)}")
