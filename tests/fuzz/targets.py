"""Fuzz targets: every decoder of bytes that come from a peer, a client or the disk.

Each target takes arbitrary bytes and either decodes them or raises the error the protocol
names for bad input (protocol §1.2: ``RemoteError`` for a peer's or client's bytes;
``ConfigError`` for a corrupt local file). Anything else (IndexError, struct.error, a
RecursionError, a hang) is our bug. Where an encoder exists, what decodes must re-encode to
the same bytes: every signed or hashed form is canonical (protocol §1.1), so no two byte
strings mean the same thing.

The targets are plain functions, run three ways: on a seed corpus plus seeded mutations in
the unit tier (``tests/unit/test_fuzz_targets.py``), by the coverage-guided fuzzer atheris for a
short run in the integration tier, and for long runs by ``tools/fuzz`` (docs/RELIABILITY.md).
"""

from __future__ import annotations

import hashlib
import struct
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path

from scryp.core import bencode, snapshot
from scryp.core.balances import check_balances_file, decode_balances, encode_balances
from scryp.core.certificate import Certificate, Statement
from scryp.core.changes import apply_changes, decode_changes, encode_changes
from scryp.core.genesis import Genesis
from scryp.core.ledger import Ledger, decode_window
from scryp.core.pointer import PointerRecord, decode_record, encode_record
from scryp.core.raft.codec import decode_message, encode_message
from scryp.core.raft.entries import (
    Entry,
    NoOp,
    Payments,
    Seal,
    SnapshotMeta,
    decode_entry,
    decode_snapshot_meta,
    encode_entry,
    encode_snapshot_meta,
)
from scryp.core.raft.messages import AppendEntries, AppendResponse, Message, RequestVote
from scryp.core.tx import Transaction
from scryp.core.wire import Ask, Forward, PeerFrame, RaftFrame, Share, decode_frame, encode_frame
from scryp.crypto import KeyPair
from scryp.errors import ConfigError, RemoteError
from scryp.raftstore import RaftStore, RecordKind, _frame, _read_frame
from scryp.server.rounds import RAFT_META, RoundStore

Target = Callable[[bytes], bool]  # True if the input decoded (and re-encoded the same)


class NotCanonical(AssertionError):
    """Bytes that decoded but re-encode differently: two encodings of one value."""


def _same(encoded: bytes, data: bytes, what: str) -> None:
    if encoded != data:
        raise NotCanonical(f"{what}: {data.hex()[:80]} re-encodes as {encoded.hex()[:80]}")


def transaction(data: bytes) -> bool:
    try:
        tx = Transaction.decode(data)
    except RemoteError:
        return False
    _same(tx.encode(), data, "transaction")
    return True


def balances(data: bytes) -> bool:
    try:
        records = decode_balances(data)
    except RemoteError:
        return False
    _same(encode_balances(records), data, "balances file")
    return True


def genesis(data: bytes) -> bool:
    try:
        decoded = Genesis.decode(data)
    except RemoteError:
        return False
    _same(decoded.balances_file, data, "genesis")
    return True


_GENESIS_BALANCES = Genesis.single(bytes(range(32))).balances_file


def window(data: bytes) -> bool:
    try:
        decode_window(data)
        ledger = Ledger.from_checkpoint(_GENESIS_BALANCES, data)
    except RemoteError:
        return False
    _same(ledger.encode_window(), data, "window")
    return True


def changes(data: bytes) -> bool:
    """A round's ``changes`` file from a peer (protocol §4.4.4): decoded canonically or
    refused, and applied to a balances file it gives a canonical one."""
    try:
        records = decode_changes(data)
        applied = apply_changes(_GENESIS_BALANCES, data)
    except RemoteError:
        return False
    _same(encode_changes(records), data, "changes")
    check_balances_file(applied)  # MalformedInput here is a bug: not the input's fault
    return True


def bencoded(data: bytes) -> bool:
    try:
        value = bencode.decode(data)
    except RemoteError:
        return False
    _same(bencode.encode(value), data, "bencode")
    return True


def pointer_record(data: bytes) -> bool:
    try:
        record = decode_record(data)
    except RemoteError:
        return False
    _same(encode_record(record), data, "pointer record")
    return True


def certificate(data: bytes) -> bool:
    try:
        decoded = Certificate.from_bytes(data)
    except RemoteError:
        return False
    _same(decoded.to_bytes(), data, "certificate")
    return True


def statement(data: bytes) -> bool:
    try:
        decoded = Statement.from_bytes(data)
    except RemoteError:
        return False
    _same(decoded.to_bytes(), data, "statement")
    return True


def raft_message(data: bytes) -> bool:
    try:
        message = decode_message(data)
    except RemoteError:
        return False
    _same(encode_message(message), data, "raft message")
    return True


def raft_entry(data: bytes) -> bool:
    try:
        entry = decode_entry(data)
    except RemoteError:
        return False
    _same(encode_entry(entry), data, "raft entry")
    return True


def snapshot_meta(data: bytes) -> bool:
    try:
        meta = decode_snapshot_meta(data)
    except RemoteError:
        return False
    _same(encode_snapshot_meta(meta), data, "snapshot meta")
    return True


def peer_frame(data: bytes) -> bool:
    try:
        frame = decode_frame(data)
    except RemoteError:
        return False
    _same(encode_frame(frame), data, "peer frame")
    return True


def wal_frames(data: bytes) -> bool:
    """The frame reader alone, on raw bytes: a record, a torn tail (None) or ConfigError."""
    offset = 0
    while offset < len(data):
        try:
            record = _read_frame(data, offset)
        except ConfigError:
            return False
        if record is None:
            return False
        _, _, end = record
        if end <= offset:
            raise AssertionError(f"the frame reader did not advance at byte {offset}")
        offset = end
    return True


def wal_replay(data: bytes) -> bool:
    """A write-ahead log made of well-checksummed frames whose kinds and bodies are the
    input's (so the fuzzer reaches the record decoders and the replay rules, past the CRC):
    the store loads it or refuses it with ConfigError, never anything else."""
    frames = []
    at = 0
    while at + 2 <= len(data):
        kind, length = data[at], data[at + 1]
        body = data[at + 2 : at + 2 + length]
        frames.append(_frame_any(kind, body))
        at += 2 + length
    with tempfile.TemporaryDirectory(prefix="scryp-fuzz-wal-") as directory:
        (Path(directory) / "wal").write_bytes(b"".join(frames) + data[at:])
        try:
            RaftStore(Path(directory), bytes(32)).load()
        except ConfigError:
            return False
    return True


def _frame_any(kind: int, body: bytes) -> bytes:
    # Like raftstore._frame, but for any kind byte, known or not.
    return struct.pack(">IIB", len(body), zlib.crc32(bytes([kind]) + body), kind) + body


def round_directory(data: bytes) -> bool:
    """A round directory as a restarting server reads it (``RoundStore.get``, then the
    ledger from its balances and window files): loaded, or refused with MalformedInput.
    Input: raft-meta length (1) | raft-meta | balances length (2) | balances | window."""
    if len(data) < 3:
        return False
    meta_end = 1 + data[0]
    balances_end = meta_end + 2 + int.from_bytes(data[meta_end : meta_end + 2], "big")
    files = {
        RAFT_META: data[1:meta_end],
        snapshot.BALANCES: data[meta_end + 2 : balances_end],
        snapshot.WINDOW: data[balances_end:],
        snapshot.CHANGES: b"",
        snapshot.TRANSACTIONS: b"",
    }
    with tempfile.TemporaryDirectory(prefix="scryp-fuzz-round-") as directory:
        store = RoundStore(Path(directory))
        store.path(1).mkdir()
        for name, content in files.items():
            (store.path(1) / name).write_bytes(content)
        stored = store.get(1)
        if stored is None:
            return False
        try:
            Ledger.from_checkpoint(store.read(1, snapshot.BALANCES), store.read(1, snapshot.WINDOW))
        except RemoteError:
            return False
    return True


TARGETS: dict[str, Target] = {
    "transaction": transaction,
    "balances": balances,
    "genesis": genesis,
    "window": window,
    "changes": changes,
    "bencode": bencoded,
    "pointer_record": pointer_record,
    "certificate": certificate,
    "statement": statement,
    "raft_message": raft_message,
    "raft_entry": raft_entry,
    "snapshot_meta": snapshot_meta,
    "peer_frame": peer_frame,
    "wal_frames": wal_frames,
    "wal_replay": wal_replay,
    "round_directory": round_directory,
}


# -- seed corpus: one or more valid encodings per target --------------------------------------


def _round_input(meta: SnapshotMeta, balances: bytes, window: bytes) -> bytes:
    meta_1 = SnapshotMeta(meta.index, meta.term, 1, meta.stamp_ms, meta.state_root)
    encoded = encode_snapshot_meta(meta_1)
    return bytes([len(encoded)]) + encoded + len(balances).to_bytes(2, "big") + balances + window


def _record(kind: RecordKind, body: bytes) -> bytes:
    """One record in ``wal_replay``'s input form: kind (1) | length (1) | body."""
    return bytes([kind, len(body)]) + body


def _key(name: str) -> KeyPair:
    return KeyPair.from_seed(hashlib.sha256(f"fuzz-{name}".encode()).digest())


def seeds() -> dict[str, list[bytes]]:
    """Valid inputs for every target, so mutations start from deep inside each format."""
    payer, payee = _key("payer"), _key("payee")
    tx = Transaction.create(payer, payee.public, 7, 1_700_000_000_000)
    genesis_ = Genesis.from_allocations({payer.public: 2**32 - 2, payee.public: 1})
    genesis_file = genesis_.balances_file
    ledger = Ledger.from_genesis(genesis_)
    ledger.apply([tx], 1_700_000_000_000)
    meta = SnapshotMeta(index=9, term=2, round=3, stamp_ms=1_700_000_000_500, state_root=b"h" * 32)
    entries = [
        Entry(term=2, index=10, stamp_ms=1, payload=NoOp()),
        Entry(term=2, index=11, stamp_ms=2, payload=Payments((tx.encode(),))),
        Entry(term=2, index=12, stamp_ms=3, payload=Seal(4)),
    ]
    network = hashlib.sha256(genesis_file).digest()
    servers = [_key(f"server-{i}") for i in range(3)]
    statement_ = Statement(network, 4, b"s" * 32, b"v" * 32)
    signatures = {i: statement_.sign(servers[i]) for i in (0, 2)}
    cert = Certificate.assemble(signatures, 3)
    record = PointerRecord(
        network=network,
        round=4,
        state_root=b"s" * 32,
        infohash=b"i" * 20,
        infohash_v2=b"v" * 32,
        recent=(b"r" * 20,),
        api="127.0.0.1:6882",
        certificate=cert.to_bytes(),
    )
    messages: list[Message] = [
        RequestVote(3, 0, 1, 12, 2, False),
        AppendEntries(3, 0, 2, 9, 2, tuple(entries), 11),
        AppendResponse(3, 1, 0, True, 12),
    ]
    share = Share(4, b"s" * 32, b"i" * 20, b"v" * 32, signatures[0], torrent_port=6881)
    frames: list[PeerFrame] = [
        RaftFrame(encode_message(messages[1])),
        Forward((tx.encode(),)),
        share,
        Ask(4),
    ]
    wal = _frame(RecordKind.SNAPSHOT, encode_snapshot_meta(meta)) + b"".join(
        _frame(RecordKind.ENTRY, encode_entry(e)) for e in entries
    )
    return {
        "transaction": [tx.encode()],
        "balances": [genesis_file, b""],
        "genesis": [genesis_file],
        "window": [ledger.encode_window()],
        "changes": [ledger.take_changes(), b""],
        "bencode": [encode_record(record), b"d1:ai-3e1:bl0:ee"],
        "pointer_record": [encode_record(record)],
        "certificate": [cert.to_bytes()],
        "statement": [statement_.to_bytes()],
        "raft_message": [encode_message(m) for m in messages],
        "raft_entry": [encode_entry(e) for e in entries],
        "snapshot_meta": [encode_snapshot_meta(meta)],
        "peer_frame": [encode_frame(f) for f in frames],
        "wal_frames": [wal],
        "round_directory": [_round_input(meta, genesis_file, ledger.encode_window())],
        "wal_replay": [
            _record(RecordKind.SNAPSHOT, encode_snapshot_meta(meta))
            + b"".join(_record(RecordKind.ENTRY, encode_entry(e)) for e in entries)
            + _record(RecordKind.HARD_STATE, struct.pack(">QqQ", 2, 1, 11))
        ],
    }
