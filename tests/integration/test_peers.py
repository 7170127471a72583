"""Server-to-server links (protocol §9.2) between real aiohttp servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from scryp.crypto import KeyPair
from scryp.errors import HandshakeFailed
from scryp.peers import (
    _AUTH_CONTEXT,
    _MAGIC,
    PEER_PATH,
    PeerHub,
    PeerLimits,
    _Channel,
    _receive_exact,
    _seal_frame,
)

NETWORK = hashlib.sha256(b"peers test network").digest()
KEYS = [KeyPair.from_seed(hashlib.sha256(b"peer %d" % i).digest()) for i in range(4)]
QUORUM = [k.public for k in KEYS[:3]]
STRANGER = KEYS[3]
DEADLINE_S = 10.0


class Node:
    """A hub, its aiohttp server on an ephemeral loopback port, and what it received."""

    def __init__(
        self,
        keypair: KeyPair,
        quorum: list[bytes],
        network: bytes,
        book: dict[int, str],
        limits: PeerLimits | None = None,
    ) -> None:
        self.received: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
        self.hub = PeerHub(
            keypair,
            quorum,
            network,
            on_frame=lambda peer, frame: self.received.put_nowait((peer, frame)),
            address_of=book.get,
            limits=limits,
        )
        self.runner: web.AppRunner | None = None
        self.address = ""

    async def start(self) -> None:
        app = web.Application()
        self.hub.add_routes(app)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        host, port = self.runner.addresses[0][:2]
        self.address = f"{host}:{port}"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@contextlib.asynccontextmanager
async def cluster(
    keys: list[KeyPair], quorum: list[bytes], limits: PeerLimits | None = None
) -> AsyncIterator[list[Node]]:
    book: dict[int, str] = {}
    nodes = [Node(k, quorum, NETWORK, book, limits) for k in keys]
    for index, node in enumerate(nodes):
        await node.start()
        book[quorum.index(keys[index].public)] = node.address
    async with asyncio.TaskGroup() as tasks:
        runs = [tasks.create_task(node.hub.run()) for node in nodes]
        try:
            yield nodes
        finally:
            for run in runs:
                run.cancel()
            for node in nodes:
                await node.stop()


async def receive(node: Node) -> tuple[int, bytes]:
    return await asyncio.wait_for(node.received.get(), DEADLINE_S)


def test_frames_flow_between_every_pair() -> None:
    async def scenario() -> None:
        async with cluster(KEYS[:3], QUORUM) as nodes:
            for source in range(3):
                for target in range(3):
                    if source != target:
                        nodes[source].hub.send(target, b"hello %d->%d" % (source, target))
            for target in range(3):
                got = sorted([await receive(nodes[target]), await receive(nodes[target])])
                expected = sorted(
                    (s, b"hello %d->%d" % (s, target)) for s in range(3) if s != target
                )
                assert got == expected
            # Order is kept on a link, and a large frame goes through whole.
            big = bytes(range(256)) * 4096
            for n in range(5):
                nodes[0].hub.send(1, b"%d" % n)
            nodes[0].hub.send(1, big)
            assert [await receive(nodes[1]) for _ in range(6)] == [
                *[(0, b"%d" % n) for n in range(5)],
                (0, big),
            ]

    asyncio.run(scenario())


async def raw_dial(
    address: str, keypair: KeyPair, expected: bytes, network: bytes, quorum: list[bytes]
) -> tuple[aiohttp.ClientSession, aiohttp.ClientWebSocketResponse, _Channel]:
    """Run the dialer's side of the handshake by hand, as a misbehaving peer would."""
    session = aiohttp.ClientSession()
    ws = await session.ws_connect(f"http://{address}{PEER_PATH}")
    book: dict[int, str] = {}
    dialer = PeerHub(keypair, quorum, network, on_frame=lambda p, f: None, address_of=book.get)
    channel = await dialer._dialer_handshake(ws, quorum.index(expected))
    return session, ws, channel


def test_a_key_outside_the_quorum_is_refused() -> None:
    async def scenario() -> None:
        async with cluster(KEYS[:1], QUORUM) as nodes:
            # The stranger believes it belongs; the acceptor, reading .keys, does not agree.
            session = aiohttp.ClientSession()
            try:
                ws = await session.ws_connect(f"http://{nodes[0].address}{PEER_PATH}")
                stranger = PeerHub(
                    STRANGER,
                    [*QUORUM[:1], STRANGER.public],
                    NETWORK,
                    on_frame=lambda p, f: None,
                    address_of=lambda p: None,
                )
                with pytest.raises(HandshakeFailed):
                    await stranger._dialer_handshake(ws, 0)
            finally:
                await session.close()
            assert nodes[0].hub.refused == 1
            assert nodes[0].hub.connected_in == set()

    asyncio.run(scenario())


def test_another_network_or_the_wrong_server_is_refused_by_the_dialer() -> None:
    async def scenario() -> None:
        async with cluster(KEYS[:1], QUORUM) as nodes:
            other_network = hashlib.sha256(b"another network").digest()
            for network, expected, message in [
                (other_network, QUORUM[0], "another network"),
                (NETWORK, QUORUM[2], "reached another key"),
            ]:
                session = aiohttp.ClientSession()
                try:
                    ws = await session.ws_connect(f"http://{nodes[0].address}{PEER_PATH}")
                    dialer = PeerHub(
                        KEYS[1],
                        QUORUM,
                        network,
                        on_frame=lambda p, f: None,
                        address_of=lambda p: None,
                    )
                    with pytest.raises(HandshakeFailed, match=message):
                        await dialer._dialer_handshake(ws, QUORUM.index(expected))
                finally:
                    await session.close()

    asyncio.run(scenario())


def test_forged_replayed_or_garbled_frames_close_the_link() -> None:
    async def scenario() -> None:
        async with cluster(KEYS[:1], QUORUM) as nodes:
            for attack in ("garbage", "replay", "text"):
                session, ws, channel = await raw_dial(
                    nodes[0].address, KEYS[1], QUORUM[0], NETWORK, QUORUM
                )
                try:
                    (sealed,) = _seal_frame(channel, b"a genuine frame", 1024)
                    await ws.send_bytes(sealed)
                    assert await receive(nodes[0]) == (1, b"a genuine frame")
                    if attack == "garbage":
                        await ws.send_bytes(b"\x00" * 40)
                    elif attack == "replay":
                        await ws.send_bytes(sealed)
                    else:
                        await ws.send_str("hello")
                    closing = await asyncio.wait_for(ws.receive(), DEADLINE_S)
                    assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
                finally:
                    await session.close()
                assert nodes[0].received.empty(), attack

    asyncio.run(scenario())


def test_a_truncated_handshake_is_refused() -> None:
    async def scenario() -> None:
        async with cluster(KEYS[:1], QUORUM) as nodes:
            async with aiohttp.ClientSession() as session:
                ws = await session.ws_connect(f"http://{nodes[0].address}{PEER_PATH}")
                await _receive_exact(ws, len(b"scryp-peer-1") + 128)
                await ws.send_bytes(b"short")
                closing = await asyncio.wait_for(ws.receive(), DEADLINE_S)
                assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            assert nodes[0].hub.refused == 1

    asyncio.run(scenario())


def test_send_drops_the_oldest_frame_when_a_queue_is_full() -> None:
    async def scenario() -> None:
        hub = PeerHub(
            KEYS[0], QUORUM, NETWORK, on_frame=lambda p, f: None, address_of=lambda p: None
        )
        for n in range(hub.limits.queue_frames_max + 3):
            hub.send(1, b"%d" % n)
        queue = hub._queues[1]
        assert queue.qsize() == hub.limits.queue_frames_max
        assert queue.get_nowait()[1] == b"3"
        with pytest.raises(ValueError, match="frame_bytes_max"):
            hub.send(1, bytes(hub.limits.frame_bytes_max + 1))

    asyncio.run(scenario())


def test_an_impostor_who_knows_a_servers_public_key_is_refused() -> None:
    """The acceptor checks the dialer's signature (protocol §9.2): claiming server 1's key
    without its secret gets nowhere. Fails if that check is removed."""

    async def scenario() -> None:
        async with cluster(KEYS[:1], QUORUM) as nodes:
            async with aiohttp.ClientSession() as session:
                ws = await session.ws_connect(f"http://{nodes[0].address}{PEER_PATH}")
                hello = await _receive_exact(ws, len(_MAGIC) + 128)
                body = hello[len(_MAGIC) :]
                network, acceptor, nonce_a, ephemeral_a = (
                    body[i : i + 32] for i in (0, 32, 64, 96)
                )
                nonce_d, ephemeral_d = os.urandom(32), os.urandom(32)
                transcript = network + acceptor + QUORUM[1] + nonce_a + nonce_d
                transcript += ephemeral_a + ephemeral_d
                forged = STRANGER.sign(_AUTH_CONTEXT + transcript)
                await ws.send_bytes(QUORUM[1] + nonce_d + ephemeral_d + forged)
                closing = await asyncio.wait_for(ws.receive(), DEADLINE_S)
                assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            assert nodes[0].hub.refused == 1
            assert nodes[0].hub.connected_in == set()

    asyncio.run(scenario())


def test_a_fake_acceptor_with_a_servers_public_key_is_refused_by_the_dialer() -> None:
    """The dialer checks the acceptor's signature (protocol §9.2): a listener that presents
    server 0's public key without its secret is not linked to. Fails without that check."""

    async def fake_acceptor(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_bytes(_MAGIC + NETWORK + QUORUM[0] + os.urandom(32) + os.urandom(32))
        await ws.receive()
        await ws.send_bytes(STRANGER.sign(b"anything at all"))
        await ws.receive()
        return ws

    async def scenario() -> None:
        app = web.Application()
        app.router.add_get(PEER_PATH, fake_acceptor)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        try:
            async with aiohttp.ClientSession() as session:
                ws = await session.ws_connect(f"http://{host}:{port}{PEER_PATH}")
                dialer = PeerHub(
                    KEYS[1], QUORUM, NETWORK, on_frame=lambda p, f: None, address_of=lambda p: None
                )
                with pytest.raises(HandshakeFailed, match="acceptor's signature"):
                    await dialer._dialer_handshake(ws, 0)
                await ws.close()
        finally:
            await runner.cleanup()

    asyncio.run(scenario())


def test_an_oversized_message_before_the_handshake_is_refused_unread() -> None:
    """Memory before authentication is bounded by message_bytes_max: a 16 MiB first message
    closes the link (aiohttp refuses it from its header) and nothing is linked."""

    async def scenario() -> None:
        async with cluster(KEYS[:1], QUORUM) as nodes:
            async with aiohttp.ClientSession() as session:
                ws = await session.ws_connect(f"http://{nodes[0].address}{PEER_PATH}")
                await _receive_exact(ws, len(_MAGIC) + 128)
                with contextlib.suppress(aiohttp.ClientError, ConnectionError):
                    await ws.send_bytes(bytes(16 * 1024 * 1024))
                closing = await asyncio.wait_for(ws.receive(), DEADLINE_S)
                assert closing.type in (
                    aiohttp.WSMsgType.CLOSE,
                    aiohttp.WSMsgType.CLOSED,
                    aiohttp.WSMsgType.ERROR,
                )
            assert nodes[0].hub.refused == 1

    asyncio.run(scenario())


def test_a_frame_over_the_limit_closes_the_link_and_is_not_delivered() -> None:
    limits = PeerLimits(frame_bytes_max=4096, message_bytes_max=1024)

    async def scenario() -> None:
        async with cluster(KEYS[:1], QUORUM, limits) as nodes:
            session, ws, channel = await raw_dial(
                nodes[0].address, KEYS[1], QUORUM[0], NETWORK, QUORUM
            )
            try:
                for message in _seal_frame(channel, bytes(3000), 1024):
                    await ws.send_bytes(message)
                assert await receive(nodes[0]) == (1, bytes(3000))  # three parts, one frame
                for message in _seal_frame(channel, bytes(5000), 1024):
                    await ws.send_bytes(message)
                closing = await asyncio.wait_for(ws.receive(), DEADLINE_S)
                assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            finally:
                await session.close()
            assert nodes[0].received.empty()

    asyncio.run(scenario())


def test_pending_handshakes_are_bounded() -> None:
    limits = PeerLimits(handshakes_pending_max=2, handshake_timeout_s=30.0)

    async def scenario() -> None:
        async with cluster(KEYS[:1], QUORUM, limits) as nodes, aiohttp.ClientSession() as session:
            url = f"http://{nodes[0].address}{PEER_PATH}"
            idle = [await session.ws_connect(url) for _ in range(2)]  # never authenticate
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(url)
            assert refused.value.status == 503
            for ws in idle:
                await ws.close()

    asyncio.run(scenario())


def test_an_old_inbound_link_closing_does_not_hide_the_new_one() -> None:
    """Regression: a peer that reconnected before its old link's close was seen was dropped
    from ``connected_in`` when the old link closed, though the new link was up."""

    async def scenario() -> None:
        async with cluster(KEYS[:1], QUORUM) as nodes:
            hub = nodes[0].hub
            old = await raw_dial(nodes[0].address, KEYS[1], QUORUM[0], NETWORK, QUORUM)
            new = await raw_dial(nodes[0].address, KEYS[1], QUORUM[0], NETWORK, QUORUM)
            await old[0].close()
            deadline = asyncio.get_running_loop().time() + DEADLINE_S
            while hub._links_in[1] != 1:  # the old link's close reaches the hub
                assert asyncio.get_running_loop().time() < deadline, "old link never closed"
                await asyncio.sleep(0.01)
            assert hub.connected_in == {1}
            await new[0].close()

    asyncio.run(scenario())


def test_a_peer_holds_at_most_links_in_per_peer_max_inbound_links() -> None:
    """A quorum member's key (or a thief of it) cannot open links without bound, each of which
    may buffer a 16 MiB frame: beyond two at once, the next is refused after its handshake."""
    limits = PeerLimits(links_in_per_peer_max=2)

    async def scenario() -> None:
        async with cluster(KEYS[:1], QUORUM, limits) as nodes:
            hub = nodes[0].hub
            links = [
                await raw_dial(nodes[0].address, KEYS[1], QUORUM[0], NETWORK, QUORUM)
                for _ in range(3)
            ]
            try:
                closing = await asyncio.wait_for(links[2][1].receive(), DEADLINE_S)
                assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
                assert hub.refused == 1 and hub._links_in[1] == 2
                assert hub._handshakes_pending == 0
                (sealed,) = _seal_frame(links[1][2], b"still linked", 1024)
                await links[1][1].send_bytes(sealed)
                assert await receive(nodes[0]) == (1, b"still linked")
            finally:
                for session, _, _ in links:
                    await session.close()

    asyncio.run(scenario())
