"""Canonical byte layout of Raft messages, framed with a length and a checksum.

Owns: ``encode_message``/``decode_message``. Layout (big-endian)::

    frame   = body length (u32) | crc32(body) (u32) | body
    body    = kind (u8) | term (u64) | source (u16) | target (u16) | fields of the kind
    entries = count (u32) | count x (entry length (u32) | entry, see entries.py)

Invariants: ``decode_message(encode_message(m)) == m``; decoding never trusts a length or
count beyond the caps below and consumes every byte, so a peer's bad bytes raise
``MalformedInput`` and never crash or bloat a server. The checksum catches corruption that
the transport missed (TigerBeetle checksums every message for the same reason).
Never pickle: this module is the only way a message becomes bytes.
"""

from __future__ import annotations

import struct
import zlib
from enum import IntEnum

from scryp.core.raft.entries import (
    SNAPSHOT_META_BYTES,
    decode_entry,
    decode_snapshot_meta,
    encode_entry,
    encode_snapshot_meta,
)
from scryp.core.raft.messages import (
    AppendEntries,
    AppendResponse,
    CatchUp,
    Message,
    RequestVote,
    VoteResponse,
)
from scryp.errors import MalformedInput

# Caps on any frame we accept, whatever the configuration (config limits are tighter).
FRAME_BYTES_MAX = 16 * 1024 * 1024
MESSAGE_ENTRIES_MAX = 4_096
SERVER_ID_MAX = 2**16 - 1

_FRAME = struct.Struct(">II")
_HEAD = struct.Struct(">BQHH")
_VOTE = struct.Struct(">QQB")  # last index, last term, pre-vote flag
_GRANT = struct.Struct(">BB")  # granted, pre-vote flag
_APPEND = struct.Struct(">QQQI")  # prev index, prev term, leader commit, entry count
_RESPONSE = struct.Struct(">BQ")
_U32 = struct.Struct(">I")


class MessageKind(IntEnum):
    """Tag byte of a message body. Values are wire format: never renumber."""

    REQUEST_VOTE = 1
    VOTE_RESPONSE = 2
    APPEND_ENTRIES = 3
    APPEND_RESPONSE = 4
    CATCH_UP = 5


def encode_message(message: Message) -> bytes:
    body = _encode_body(message)
    return _FRAME.pack(len(body), zlib.crc32(body)) + body


def decode_message(frame: bytes) -> Message:
    """Parse one frame; ``MalformedInput`` for anything that is not exactly a valid message."""
    if len(frame) < _FRAME.size:
        raise MalformedInput(f"a frame is at least {_FRAME.size} bytes, got {len(frame)}")
    length, checksum = _FRAME.unpack_from(frame, 0)
    if length > FRAME_BYTES_MAX or length != len(frame) - _FRAME.size:
        raise MalformedInput(f"frame says {length} body bytes, has {len(frame) - _FRAME.size}")
    body = bytes(frame[_FRAME.size :])
    if zlib.crc32(body) != checksum:
        raise MalformedInput("frame checksum does not match its body")
    return _decode_body(body)


def _encode_body(message: Message) -> bytes:
    match message:
        case RequestVote():
            head = _head(MessageKind.REQUEST_VOTE, message.term, message.source, message.target)
            return head + _VOTE.pack(
                message.last_log_index, message.last_log_term, int(message.pre_vote)
            )
        case VoteResponse():
            head = _head(MessageKind.VOTE_RESPONSE, message.term, message.source, message.target)
            return head + _GRANT.pack(int(message.granted), int(message.pre_vote))
        case AppendEntries():
            head = _head(MessageKind.APPEND_ENTRIES, message.term, message.source, message.target)
            fixed = _APPEND.pack(
                message.prev_log_index,
                message.prev_log_term,
                message.leader_commit,
                len(message.entries),
            )
            parts = [head, fixed]
            for entry in message.entries:
                encoded = encode_entry(entry)
                parts.append(_U32.pack(len(encoded)))
                parts.append(encoded)
            return b"".join(parts)
        case AppendResponse():
            kind = MessageKind.APPEND_RESPONSE
            head = _head(kind, message.term, message.source, message.target)
            return head + _RESPONSE.pack(int(message.success), message.match_index)
        case CatchUp():
            head = _head(MessageKind.CATCH_UP, message.term, message.source, message.target)
            return head + encode_snapshot_meta(message.snapshot)


def _head(kind: MessageKind, term: int, source: int, target: int) -> bytes:
    return _HEAD.pack(kind, term, source, target)


def _decode_body(body: bytes) -> Message:
    if len(body) < _HEAD.size:
        raise MalformedInput(f"a message body is at least {_HEAD.size} bytes, got {len(body)}")
    kind, term, source, target = _HEAD.unpack_from(body, 0)
    rest = body[_HEAD.size :]
    if kind == MessageKind.REQUEST_VOTE:
        _expect(rest, _VOTE.size, "vote request")
        last_index, last_term, pre_vote = _VOTE.unpack(rest)
        return RequestVote(term, source, target, last_index, last_term, _flag(pre_vote))
    if kind == MessageKind.VOTE_RESPONSE:
        _expect(rest, _GRANT.size, "vote response")
        granted, pre_vote = _GRANT.unpack(rest)
        return VoteResponse(term, source, target, _flag(granted), _flag(pre_vote))
    if kind == MessageKind.APPEND_ENTRIES:
        return _decode_append(term, source, target, rest)
    if kind == MessageKind.APPEND_RESPONSE:
        _expect(rest, _RESPONSE.size, "append response")
        success, match_index = _RESPONSE.unpack(rest)
        return AppendResponse(term, source, target, _flag(success), match_index)
    if kind == MessageKind.CATCH_UP:
        _expect(rest, SNAPSHOT_META_BYTES, "catch-up")
        snapshot = decode_snapshot_meta(rest)
        if snapshot.term > term:
            raise MalformedInput("catch-up names a round sealed in a later term than its own")
        return CatchUp(term, source, target, snapshot)
    raise MalformedInput(f"unknown message kind {kind}")


def _decode_append(term: int, source: int, target: int, rest: bytes) -> AppendEntries:
    if len(rest) < _APPEND.size:
        raise MalformedInput("append-entries message is truncated")
    prev_index, prev_term, commit, count = _APPEND.unpack_from(rest, 0)
    if count > MESSAGE_ENTRIES_MAX:
        raise MalformedInput(f"append-entries holds {count} > {MESSAGE_ENTRIES_MAX} entries")
    offset = _APPEND.size
    entries = []
    for _ in range(count):
        if offset + _U32.size > len(rest):
            raise MalformedInput("append-entries entry length is truncated")
        (length,) = _U32.unpack_from(rest, offset)
        offset += _U32.size
        if offset + length > len(rest):
            raise MalformedInput("append-entries entry is truncated")
        entries.append(decode_entry(rest[offset : offset + length]))
        offset += length
    if offset != len(rest):
        raise MalformedInput(f"append-entries has {len(rest) - offset} trailing bytes")
    # Entries of one message are consecutive and follow prev_log_index: anything else is a
    # peer bug, and accepting it would break the log's index arithmetic.
    # Terms never decrease along a log and never exceed the leader's term (Raft §5.3).
    previous_term = prev_term
    for position, entry in enumerate(entries):
        if entry.index != prev_index + 1 + position:
            raise MalformedInput("append-entries entries are not consecutive after prev index")
        if not previous_term <= entry.term <= term:
            raise MalformedInput("append-entries entry terms are out of order")
        previous_term = entry.term
    return AppendEntries(term, source, target, prev_index, prev_term, tuple(entries), commit)


def _flag(value: int) -> bool:
    if value not in (0, 1):
        raise MalformedInput(f"a flag byte is 0 or 1, got {value}")
    return value == 1


def _expect(rest: bytes, length: int, what: str) -> None:
    if len(rest) != length:
        raise MalformedInput(f"{what} body is {length} bytes, got {len(rest)}")
