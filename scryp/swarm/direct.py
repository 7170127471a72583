"""Direct DHT stores: our pointer put, and a round announced, straight to DHT nodes we already
know, next to libtorrent's own traversal (protocol §8.3.4).

Why: libtorrent's put and announce first walk the DHT to find the closest nodes, and the walk
ends only when every node it asked has answered or timed out. In a private DHT of few nodes
every node is among the closest, so one node that ignores BEP 44 (aria2, measured in the lab's
strangers scenario) holds every put and announce for libtorrent's 15 s request timeout:
pointers lagged the certified round by 12 rounds (25 at worst) and a round's peers could be
found 15.5 s after its certification. The nodes we know (the bootstrap nodes and the other
servers' DHT nodes) answer in milliseconds, so we also store there directly.

Owns: one UDP socket on the session's own address for the session's life, KRPC
transactions with a deadline per node, and counting the nodes that took the store. A node
that does not answer, or answers with an error or garbage, is skipped (its fault or its
absence; logged at debug). The socket also answers queries as a node that stores nothing:
libtorrent puts a node that sent it an ``announce_peer`` into its routing table, ro flag or
not, and a socket that went silent would hold up every later lookup for 15 s (the loopback
test network's first try: a new session's bootstrap timed out).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Sequence
from typing import cast

from scryp.core import krpc
from scryp.crypto import KeyPair
from scryp.errors import MalformedInput

log = logging.getLogger(__name__)

Node = tuple[str, int]
REQUEST_TIMEOUT_S = 0.5
NODES_MAX = 16


class _Client(asyncio.DatagramProtocol):
    def __init__(self, node_id: bytes) -> None:
        self.waiting: dict[tuple[bytes, Node], asyncio.Future[krpc.Reply]] = {}
        self.node_id = node_id
        self.token = os.urandom(8)
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector loop's UDP transport is not a subclass of DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        answer = krpc.answer(data, self.node_id, self.token)
        if answer is not None:
            if self.transport is not None:
                self.transport.sendto(answer, addr)
            return
        try:
            reply = krpc.read_reply(data)
        except MalformedInput as error:
            log.debug("direct DHT store: %s from %s", error, addr)
            return
        future = self.waiting.pop((reply.tid, (str(addr[0]), int(addr[1]))), None)
        if future is not None and not future.done():
            future.set_result(reply)


class DirectStore:
    """Queries to known nodes from one UDP socket on ``host``, open until ``close``."""

    def __init__(self, host: str, timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self.host = host
        self.timeout_s = timeout_s
        self.node_id = os.urandom(krpc.NODE_ID_BYTES)
        self._endpoint: tuple[asyncio.DatagramTransport, _Client] | None = None
        self._opening = asyncio.Lock()

    async def _open(self) -> tuple[asyncio.DatagramTransport, _Client]:
        async with self._opening:
            if self._endpoint is None:
                loop = asyncio.get_running_loop()
                self._endpoint = await loop.create_datagram_endpoint(
                    lambda: _Client(self.node_id), local_addr=(self.host, 0)
                )
            return self._endpoint

    def close(self) -> None:
        if self._endpoint is not None:
            self._endpoint[0].close()
            self._endpoint = None

    async def _ask_all(
        self, nodes: Sequence[Node], make: Callable[[bytes, Node], bytes | None]
    ) -> dict[Node, krpc.Reply]:
        """Send ``make(tid, node)`` to every node at once; the replies within the deadline."""
        loop = asyncio.get_running_loop()
        transport, client = await self._open()
        asked: dict[Node, asyncio.Future[krpc.Reply]] = {}
        try:
            for node in list(dict.fromkeys(nodes))[:NODES_MAX]:
                tid = os.urandom(2)
                message = make(tid, node)
                if message is None:
                    continue
                future: asyncio.Future[krpc.Reply] = loop.create_future()
                client.waiting[(tid, node)] = future
                asked[node] = future
                transport.sendto(message, node)
            if asked:
                await asyncio.wait(asked.values(), timeout=self.timeout_s)
            return {n: f.result() for n, f in asked.items() if f.done() and not f.cancelled()}
        finally:
            for key in [k for k, f in client.waiting.items() if f in asked.values()]:
                del client.waiting[key]

    async def put(self, nodes: Sequence[Node], key: KeyPair, value: bytes, salt: bytes) -> int:
        """Store ``value`` as ``key``'s BEP 44 item on ``nodes``; how many took it.

        seq = 1 + the highest seq any of them holds, so the store replaces what they have
        (libtorrent's own put, which may still be walking, then finds this seq and goes on
        from it)."""
        item_target = krpc.target(key.public, salt)
        got = await self._ask_all(
            nodes, lambda tid, _: krpc.get_query(tid, self.node_id, item_target)
        )
        tokens = {node: r.token for node, r in got.items() if r.token is not None}
        if not tokens:
            return 0
        seq = 1 + max((r.seq for r in got.values() if r.seq is not None), default=0)
        signature = key.sign(krpc.signed_buffer(salt, seq, value))
        stored = await self._ask_all(
            list(tokens),
            lambda tid, node: krpc.put_query(
                tid,
                self.node_id,
                token=tokens[node],
                public=key.public,
                salt=salt,
                seq=seq,
                signature=signature,
                value=value,
            ),
        )
        return len(stored)

    async def announce(self, nodes: Sequence[Node], infohash: bytes, port: int) -> int:
        """Announce that ``host:port`` has ``infohash`` (BEP 5) to ``nodes``; how many took it."""
        got = await self._ask_all(
            nodes, lambda tid, _: krpc.get_peers_query(tid, self.node_id, infohash)
        )
        tokens = {node: r.token for node, r in got.items() if r.token is not None}
        announced = await self._ask_all(
            list(tokens),
            lambda tid, node: krpc.announce_query(tid, self.node_id, infohash, port, tokens[node]),
        )
        return len(announced)
