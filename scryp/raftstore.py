"""Durable Raft state on disk: one write-ahead log file (docs/storage.md).

Owns ``DIR/wal``: a sequence of frames ``length (4) | crc32 (4) | kind (1) | body``, where a
record is a snapshot metadata (the sealed round standing for the log prefix), a log entry
(protocol §7 encoding) or a hard state (term, vote, commit). One ``Ready`` is appended as
[snapshot] [entries...] [hard state] and fsynced once, before any message is sent.

Why this is crash-safe: a crash can only cut the file short (a torn tail), never reorder it,
so a surviving hard state implies every entry written before it survived, and a surviving
entry implies the snapshot before it survived. On load, a torn last frame is cut off; a bad
frame with more data after it is corruption, not a crash, and fails loudly.

Replay rules (the same as the core's in-memory log): a snapshot drops the entries it covers,
and every entry if the entry at its index has another term; an entry whose index is already
present replaces that entry and everything after it (Raft §5.3). When a snapshot is saved the
file is rewritten (atomically, §2.5) as [snapshot] [entries after it] [hard state], so it
stays as small as one round's entries.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from scryp.core.raft.entries import (
    Entry,
    SnapshotMeta,
    decode_entry,
    decode_snapshot_meta,
    encode_entry,
    encode_snapshot_meta,
)
from scryp.core.raft.ready import HardState
from scryp.errors import ConfigError, MalformedInput
from scryp.keyfile import atomic_write

log = logging.getLogger(__name__)

_FRAME_HEAD = struct.Struct(">IIB")  # length of body, crc32 of kind + body, kind
_HARD_STATE = struct.Struct(">QqQ")  # term, voted_for (-1: none), committed
_NO_VOTE = -1
RECORD_BYTES_MAX = 64 * 1024 * 1024  # a frame claiming more is corruption


class RecordKind(IntEnum):
    SNAPSHOT = 1
    ENTRY = 2
    HARD_STATE = 3


_KINDS = frozenset(int(kind) for kind in RecordKind)


@dataclass(frozen=True, slots=True)
class Persisted:
    """What a server restarts from."""

    hard_state: HardState
    snapshot: SnapshotMeta
    entries: list[Entry]


class RaftStore:
    """The write-ahead log of one server, in ``directory``."""

    def __init__(self, directory: Path, genesis_root: bytes) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / "wal"
        self._hard_state = HardState(term=0, voted_for=None, committed=0)
        self._snapshot = SnapshotMeta(index=0, term=0, round=0, stamp_ms=0, state_root=genesis_root)
        self._entries: list[Entry] = []  # after the snapshot, consecutive indices

    def load(self) -> Persisted:
        """Replay the file, cutting a torn tail; a fresh directory gives round 0 (genesis)."""
        if not self.path.exists():
            atomic_write(self.path, b"")
        data = self.path.read_bytes()
        offset = 0
        while offset < len(data):
            record = _read_frame(data, offset)
            if record is None:
                log.warning(
                    "%s: cutting a torn tail at byte %d of %d", self.path, offset, len(data)
                )
                with open(self.path, "r+b") as file:
                    file.truncate(offset)
                    os.fsync(file.fileno())
                break
            kind, body, offset = record
            try:
                self._replay(kind, body)
            except MalformedInput as error:
                raise ConfigError(f"{self.path}: undecodable record: {error}") from None
        return Persisted(self._hard_state, self._snapshot, list(self._entries))

    def save(
        self,
        hard_state: HardState | None,
        snapshot: SnapshotMeta | None,
        entries: tuple[Entry, ...] | list[Entry],
    ) -> None:
        """Persist one ``Ready``'s durable part with a single fsync (see the header)."""
        if snapshot is not None:
            self._apply_snapshot(snapshot)
        for entry in entries:
            self._apply_entry(entry)
        if hard_state is not None:
            self._hard_state = hard_state
        if snapshot is not None:
            # Rewrite so the file holds one round's worth of entries, not the whole history.
            atomic_write(self.path, self._encode_all())
            return
        frames = [_frame(RecordKind.ENTRY, encode_entry(e)) for e in entries]
        if hard_state is not None:
            frames.append(_frame(RecordKind.HARD_STATE, _encode_hard_state(hard_state)))
        if not frames:
            return
        with open(self.path, "ab") as file:
            file.write(b"".join(frames))
            file.flush()
            os.fsync(file.fileno())

    def _encode_all(self) -> bytes:
        frames = [_frame(RecordKind.SNAPSHOT, encode_snapshot_meta(self._snapshot))]
        frames += [_frame(RecordKind.ENTRY, encode_entry(e)) for e in self._entries]
        frames.append(_frame(RecordKind.HARD_STATE, _encode_hard_state(self._hard_state)))
        return b"".join(frames)

    def _replay(self, kind: int, body: bytes) -> None:
        if kind == RecordKind.SNAPSHOT:
            self._apply_snapshot(decode_snapshot_meta(body))
        elif kind == RecordKind.ENTRY:
            self._apply_entry(decode_entry(body))
        elif kind == RecordKind.HARD_STATE:
            self._hard_state = _decode_hard_state(body)
        else:
            raise MalformedInput(f"unknown record kind {kind}")

    def _apply_snapshot(self, snapshot: SnapshotMeta) -> None:
        at = snapshot.index - self._snapshot.index - 1
        keeps_suffix = 0 <= at < len(self._entries) and self._entries[at].term == snapshot.term
        self._entries = self._entries[at + 1 :] if keeps_suffix else []
        self._snapshot = snapshot

    def _apply_entry(self, entry: Entry) -> None:
        position = entry.index - self._snapshot.index - 1
        if position < 0:
            return  # already covered by the snapshot
        if position > len(self._entries):
            raise ConfigError(
                f"{self.path}: entry {entry.index} leaves a gap after "
                f"{self._snapshot.index + len(self._entries)}"
            )
        del self._entries[position:]  # a conflicting suffix is replaced (Raft §5.3)
        self._entries.append(entry)


def _frame(kind: RecordKind, body: bytes) -> bytes:
    return _FRAME_HEAD.pack(len(body), zlib.crc32(bytes([kind]) + body), kind) + body


def _read_frame(data: bytes, offset: int) -> tuple[int, bytes, int] | None:
    """(kind, body, next offset) of the frame at ``offset``; None for a torn tail."""
    if offset + _FRAME_HEAD.size > len(data):
        return None
    length, crc, kind = _FRAME_HEAD.unpack_from(data, offset)
    start = offset + _FRAME_HEAD.size
    end = start + length
    if length > RECORD_BYTES_MAX:
        raise ConfigError(f"raft wal: frame at byte {offset} claims {length} bytes")
    if end > len(data):
        # Only the last frame can be incomplete. A length corrupted in the middle of the log
        # looks the same, but then whole, valid frames follow it: cutting there would drop
        # durable state (a vote, say) without a word.
        if _valid_frame_after(data, start):
            raise ConfigError(
                f"raft wal: frame at byte {offset} claims {length} bytes past the end"
            )
        return None
    body = data[start:end]
    if zlib.crc32(bytes([kind]) + body) != crc:
        if end == len(data):
            return None  # the last frame was being written when we crashed
        raise ConfigError(f"raft wal: checksum mismatch at byte {offset}, and data follows")
    return kind, body, end


def _valid_frame_after(data: bytes, start: int) -> bool:
    """Whether, from some position after ``start``, whole frames with valid checksums run to
    exactly the end of the file: the rest of a log whose length field was damaged. In a torn
    tail they cannot (the file ends inside a frame), even if a payment's bytes (which clients
    choose) happen to look like a frame."""
    return any(_frames_to_the_end(data, at) for at in range(start, len(data)))


def _frames_to_the_end(data: bytes, at: int) -> bool:
    head = _FRAME_HEAD.size
    while at < len(data):
        if at + head > len(data):
            return False
        length, crc, kind = _FRAME_HEAD.unpack_from(data, at)
        end = at + head + length
        if kind not in _KINDS or end > len(data):
            return False
        if zlib.crc32(bytes([kind]) + data[at + head : end]) != crc:
            return False
        at = end
    return True


def _encode_hard_state(state: HardState) -> bytes:
    vote = _NO_VOTE if state.voted_for is None else state.voted_for
    return _HARD_STATE.pack(state.term, vote, state.committed)


def _decode_hard_state(body: bytes) -> HardState:
    if len(body) != _HARD_STATE.size:
        raise MalformedInput(f"a hard state is {_HARD_STATE.size} bytes, got {len(body)}")
    term, vote, committed = _HARD_STATE.unpack(body)
    return HardState(term=term, voted_for=None if vote == _NO_VOTE else vote, committed=committed)
