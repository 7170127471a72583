"""The few Mainline DHT (KRPC, BEP 5 and BEP 44) messages of a direct store: ``get`` then
``put`` of our pointer, ``get_peers`` then ``announce_peer`` of a round, sent to nodes we
already know (protocol §8.3.4). Pure: no sockets, clock or randomness (transaction and node
ids are passed in).

Owns: encoding those four queries, the BEP 44 signed buffer, reading a response into
``Reply`` with limits, and the answers of a node that stores nothing (``answer``).
Invariants: every query carries ``ro`` = 1 (BEP 43); a response is accepted only as a
bencoded dict with ``y`` = "r" and a dict ``r``, anything else (an error, a malformed
datagram) is ``MalformedInput``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from scryp.core import bencode
from scryp.errors import MalformedInput

NODE_ID_BYTES = 20
DATAGRAM_BYTES_MAX = 1500  # a KRPC message fits one UDP datagram of an Ethernet MTU
TOKEN_BYTES_MAX = 64


def target(public: bytes, salt: bytes) -> bytes:
    """BEP 44: a mutable item's DHT target is SHA-1(public key ‖ salt)."""
    return hashlib.sha1(public + salt).digest()


def signed_buffer(salt: bytes, seq: int, value: bytes) -> bytes:
    """BEP 44: what the item's ed25519 signature covers (``value`` is the raw value; it is
    stored bencoded, as a byte string)."""
    head = b"4:salt" + bencode.encode(salt) if salt else b""
    return head + b"3:seqi%de1:v" % seq + bencode.encode(value)


def _query(tid: bytes, method: bytes, args: dict[bytes, bencode.Value]) -> bytes:
    return bencode.encode({b"t": tid, b"y": b"q", b"q": method, b"a": args, b"ro": 1})


def get_query(tid: bytes, node_id: bytes, item_target: bytes) -> bytes:
    return _query(tid, b"get", {b"id": node_id, b"target": item_target})


def put_query(
    tid: bytes,
    node_id: bytes,
    *,
    token: bytes,
    public: bytes,
    salt: bytes,
    seq: int,
    signature: bytes,
    value: bytes,
) -> bytes:
    args: dict[bytes, bencode.Value] = {
        b"id": node_id,
        b"token": token,
        b"k": public,
        b"seq": seq,
        b"sig": signature,
        b"v": value,
    }
    if salt:
        args[b"salt"] = salt
    return _query(tid, b"put", args)


def get_peers_query(tid: bytes, node_id: bytes, infohash: bytes) -> bytes:
    return _query(tid, b"get_peers", {b"id": node_id, b"info_hash": infohash})


def announce_query(tid: bytes, node_id: bytes, infohash: bytes, port: int, token: bytes) -> bytes:
    return _query(
        tid,
        b"announce_peer",
        {
            b"id": node_id,
            b"info_hash": infohash,
            b"port": port,
            b"token": token,
            b"implied_port": 0,
        },
    )


def answer(datagram: bytes, node_id: bytes, token: bytes) -> bytes | None:
    """What a node that stores nothing answers to a query: for ``ping``, ``find_node``,
    ``get_peers`` and ``get`` a valid reply with no nodes and no values (plus a token where
    one is due), for ``announce_peer`` and ``put`` a plain acknowledgement; None for anything
    that is not a query (no answer). A node that answers at once never holds up a lookup."""
    if len(datagram) > DATAGRAM_BYTES_MAX:
        return None
    try:
        message = bencode.decode(datagram)
    except MalformedInput:
        return None
    if not isinstance(message, dict) or message.get(b"y") != b"q":
        return None
    tid = message.get(b"t")
    if not isinstance(tid, bytes):
        return None
    body: dict[bytes, bencode.Value] = {b"id": node_id}
    if message.get(b"q") in (b"find_node", b"get_peers", b"get"):
        body[b"nodes"] = b""
    if message.get(b"q") in (b"get_peers", b"get"):
        body[b"token"] = token
    return bencode.encode({b"t": tid, b"y": b"r", b"r": body})


@dataclass(frozen=True, slots=True)
class Reply:
    tid: bytes
    token: bytes | None
    seq: int | None  # the seq of the item the node holds (a get's answer), if any


def read_reply(datagram: bytes) -> Reply:
    """A node's response; MalformedInput for an error reply or anything malformed."""
    if len(datagram) > DATAGRAM_BYTES_MAX:
        raise MalformedInput(f"KRPC datagram of {len(datagram)} bytes")
    message = bencode.decode(datagram)  # MalformedInput if it is not bencode
    if not isinstance(message, dict) or not isinstance(message.get(b"t"), bytes):
        raise MalformedInput("KRPC datagram is not a message")
    if message.get(b"y") != b"r":
        raise MalformedInput(f"KRPC error reply: {message.get(b'e')!r}"[:200])
    body = message.get(b"r")
    if not isinstance(body, dict):
        raise MalformedInput("KRPC reply without r")
    token = body.get(b"token")
    seq = body.get(b"seq")
    tid = message[b"t"]
    assert isinstance(tid, bytes)
    return Reply(
        tid,
        token if isinstance(token, bytes) and len(token) <= TOKEN_BYTES_MAX else None,
        seq if isinstance(seq, int) and not isinstance(seq, bool) else None,
    )
