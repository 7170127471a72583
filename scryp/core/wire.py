"""What servers say to each other over a peer link (protocol §9.3), besides Raft itself.

Owns: the one-byte envelope that tags each peer frame, and the byte layout of the frames
that are not Raft messages. Pure.

    0x01 RAFT     a Raft message (scryp.core.raft.codec)
    0x02 FORWARD  payments a follower passes to the leader: n × 140 bytes
    0x03 SHARE    a server's signature of a round: round (8) | state root (32) |
                  infohash v1 (20) | infohash v2 (32) | signature (64) | torrent port (2);
                  the port (unsigned, but the link is authenticated) is where the sender
                  seeds, so a server catching up can dial it without waiting for the DHT
    0x04 ASK      "send me your SHARE of round r": round (8)

Invariant: ``decode_frame(encode_*(x))`` gives back x; anything else raises MalformedInput,
so a peer's bytes never reach the server as anything but one of these values.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from scryp.core.certificate import Statement
from scryp.core.snapshot import ROUND_MAX
from scryp.core.tx import TX_BYTES
from scryp.errors import MalformedInput

FORWARD_TXS_MAX = 4_096


class FrameKind(IntEnum):
    RAFT = 1
    FORWARD = 2
    SHARE = 3
    ASK = 4


@dataclass(frozen=True, slots=True)
class RaftFrame:
    body: bytes


@dataclass(frozen=True, slots=True)
class Forward:
    txs: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Share:
    """Server ``signer``'s vouching for a round; ``signature`` signs the round's Statement."""

    round: int
    state_root: bytes
    infohash: bytes
    infohash_v2: bytes
    signature: bytes
    torrent_port: int = 0

    def statement(self, network: bytes) -> Statement:
        return Statement(network, self.round, self.state_root, self.infohash_v2)

    def _checked(self) -> Share:
        _check_round(self.round)
        return self


@dataclass(frozen=True, slots=True)
class Ask:
    round: int


PeerFrame = RaftFrame | Forward | Share | Ask

_SHARE = struct.Struct(">Q32s20s32s64sH")
_ASK = struct.Struct(">Q")


def _check_round(round_number: int) -> None:
    # A round no server can hold (protocol §8.1: 10 digits) is a peer's bug, not ours.
    if round_number > ROUND_MAX:
        raise MalformedInput(f"round {round_number} is beyond {ROUND_MAX}")


def encode_frame(frame: PeerFrame) -> bytes:
    match frame:
        case RaftFrame(body=body):
            return bytes([FrameKind.RAFT]) + body
        case Forward(txs=txs):
            return bytes([FrameKind.FORWARD]) + b"".join(txs)
        case Share():
            return bytes([FrameKind.SHARE]) + _SHARE.pack(
                frame.round,
                frame.state_root,
                frame.infohash,
                frame.infohash_v2,
                frame.signature,
                frame.torrent_port,
            )
        case Ask(round=round_number):
            return bytes([FrameKind.ASK]) + _ASK.pack(round_number)


def decode_frame(data: bytes) -> PeerFrame:
    if not data:
        raise MalformedInput("an empty peer frame")
    kind, body = data[0], data[1:]
    if kind == FrameKind.RAFT:
        return RaftFrame(body)
    if kind == FrameKind.FORWARD:
        if len(body) % TX_BYTES or len(body) // TX_BYTES > FORWARD_TXS_MAX:
            raise MalformedInput("a forward frame is at most 4096 whole transactions")
        return Forward(tuple(body[i : i + TX_BYTES] for i in range(0, len(body), TX_BYTES)))
    if kind == FrameKind.SHARE:
        if len(body) != _SHARE.size:
            raise MalformedInput(f"a share is {_SHARE.size} bytes, got {len(body)}")
        return Share(*_SHARE.unpack(body))._checked()
    if kind == FrameKind.ASK:
        if len(body) != _ASK.size:
            raise MalformedInput(f"an ask is {_ASK.size} bytes, got {len(body)}")
        (round_number,) = _ASK.unpack(body)
        _check_round(round_number)
        return Ask(round_number)
    raise MalformedInput(f"unknown peer frame kind {kind}")
