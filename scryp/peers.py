"""Authenticated, encrypted server-to-server links over WebSocket (protocol §9.2).

Each server accepts links on ``/peer`` of its server port and dials every other server in
``.keys``. A link starts with a handshake in which both sides prove they hold a key in the
quorum and agree on fresh X25519 session keys; every later frame is sealed with
XSalsa20-Poly1305 under a per-direction counter nonce, so a frame cannot be forged, altered,
replayed or reordered without the link closing. Anyone outside ``.keys`` is refused.

Handshake (all fixed-size binary WebSocket messages):
1. acceptor → dialer  HELLO  ``magic | network (32) | acceptor key (32) | nonce_a (32) |
   ephemeral_a (32)``
2. dialer → acceptor  AUTH   ``dialer key (32) | nonce_d (32) | ephemeral_d (32) |
   sig_d (64)``, sig_d over ``"scryp peer auth 1" | transcript``
3. acceptor → dialer  ACCEPT ``sig_a (64)`` over ``"scryp peer accept 1" | transcript``
where transcript = network | acceptor key | dialer key | nonce_a | nonce_d | ephemeral_a |
ephemeral_d. Both signatures cover both fresh nonces, so neither can be replayed.

A frame travels as one or more WebSocket messages of at most ``message_bytes_max``, each
sealed on its own, with a one-byte flag (more / last) in front of its part of the frame. So
nobody can make a server hold more than one small message before proving who they are (a
WebSocket message is refused from its header when it is too long), and an authenticated peer
at most one frame of ``frame_bytes_max`` being reassembled. At most ``handshakes_pending_max``
handshakes run at once; further upgrades are refused with 503 (protocol §9.2).

Frames sent by the dialer go dialer → acceptor; each server sends only on links it dialed and
receives on links it accepted, so there is exactly one link per direction and no tie-breaking.
Outgoing queues are bounded in size and age; when one is full the oldest frame is dropped, and
a frame that waited too long for a link is not sent: Raft tolerates lost messages and a stale
heartbeat is worth less than a fresh one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import nacl.bindings
import nacl.exceptions
import nacl.public
import nacl.secret
from aiohttp import web

from scryp.crypto import KeyPair, verify
from scryp.errors import HandshakeFailed

log = logging.getLogger(__name__)

PEER_PATH = "/peer"
_MAGIC = b"scryp-peer-1"
_AUTH_CONTEXT = b"scryp peer auth 1"
_ACCEPT_CONTEXT = b"scryp peer accept 1"
_HELLO_BYTES = len(_MAGIC) + 32 * 4
_AUTH_BYTES = 32 * 3 + 64
_NONCE_BYTES = nacl.secret.SecretBox.NONCE_SIZE
_DIALER_TO_ACCEPTOR = b"\x00"
_ACCEPTOR_TO_DIALER = b"\x01"
_MORE, _LAST = 0, 1  # the flag in front of each sealed part of a frame
# Room for the MAC (16) and the flag (1), with slack: aiohttp refuses a message of its max size.
_SEAL_OVERHEAD_BYTES = 64


@dataclass(frozen=True, slots=True)
class PeerLimits:
    frame_bytes_max: int = 16 * 1024 * 1024
    # One WebSocket message, before and after the handshake: what an unauthenticated
    # connection can make us buffer (a frame is split into messages of this size).
    message_bytes_max: int = 64 * 1024
    handshakes_pending_max: int = 16
    # Authenticated inbound links a peer may hold at once: its link and one reconnect made
    # before the old link's death is seen. Each may buffer a frame; more are refused.
    links_in_per_peer_max: int = 2
    queue_frames_max: int = 1024
    # A frame that waited longer than this for a link is dropped: after an outage the peer
    # wants what is current (a stale heartbeat or append only delays it), Raft resends.
    frame_age_max_s: float = 2.0
    handshake_timeout_s: float = 5.0
    connect_timeout_s: float = 3.0
    heartbeat_s: float = 5.0
    reconnect_delay_min_s: float = 0.05
    reconnect_delay_max_s: float = 2.0


class _Channel:
    """One direction's sealing: a session key and a frame counter in the nonce."""

    def __init__(self, key: bytes, direction: bytes) -> None:
        self._box = nacl.secret.SecretBox(key)
        self._direction = direction
        self._counter = 0

    def _nonce(self) -> bytes:
        nonce = self._direction + self._counter.to_bytes(_NONCE_BYTES - 1, "big")
        self._counter += 1
        return nonce

    def seal(self, frame: bytes) -> bytes:
        return bytes(self._box.encrypt(frame, self._nonce()).ciphertext)

    def open(self, sealed: bytes) -> bytes:
        """The frame, or HandshakeFailed if it was forged, altered, replayed or reordered."""
        try:
            return bytes(self._box.decrypt(sealed, self._nonce()))
        except nacl.exceptions.CryptoError:
            raise HandshakeFailed("a frame failed authentication") from None


def _session_key(own: nacl.public.PrivateKey, other: bytes, transcript: bytes) -> bytes:
    shared = nacl.bindings.crypto_scalarmult(bytes(own), other)
    # Hash the shared secret with the whole transcript so the key is bound to this session.
    return nacl.bindings.crypto_generichash_blake2b_salt_personal(
        shared + transcript, digest_size=32
    )


FrameHandler = Callable[[int, bytes], None]
AddressBook = Callable[[int], str | None]


class PeerHub:
    """Links to every other server of the quorum; ``send`` out, ``on_frame`` in."""

    def __init__(
        self,
        keypair: KeyPair,
        quorum: list[bytes],
        network_id: bytes,
        *,
        on_frame: FrameHandler,
        address_of: AddressBook,
        limits: PeerLimits | None = None,
    ) -> None:
        if keypair.public not in quorum:
            raise ValueError("this server's key is not in the quorum")
        self.keypair = keypair
        self.quorum = quorum
        self.index = quorum.index(keypair.public)
        self.network_id = network_id
        self.limits = limits or PeerLimits()
        self._on_frame = on_frame
        self._address_of = address_of
        self._queues: dict[int, asyncio.Queue[tuple[float, bytes]]] = {
            i: asyncio.Queue(self.limits.queue_frames_max)
            for i in range(len(quorum))
            if i != self.index
        }
        self.connected_out: set[int] = set()
        # A peer may have two inbound links for a moment (a reconnect before the old link's
        # close is seen): count them, so the old one closing does not hide the new one.
        self._links_in: Counter[int] = Counter()
        self._handshakes_pending = 0
        self.refused = 0

    @property
    def connected_in(self) -> set[int]:
        """Servers with at least one authenticated inbound link."""
        return {peer for peer, links in self._links_in.items() if links > 0}

    # -- sending -------------------------------------------------------------------------

    def send(self, peer: int, frame: bytes) -> None:
        """Queue a frame for a peer; never blocks, drops the oldest frame when full."""
        if len(frame) > self.limits.frame_bytes_max:
            raise ValueError(f"frame of {len(frame)} bytes exceeds frame_bytes_max")
        queue = self._queues[peer]
        if queue.full():
            queue.get_nowait()
        queue.put_nowait((time.monotonic(), frame))

    async def run(self) -> None:
        """Dial every peer and keep the links up until cancelled."""
        async with aiohttp.ClientSession() as session, asyncio.TaskGroup() as tasks:
            for peer in self._queues:
                tasks.create_task(self._dial_forever(session, peer))

    async def _dial_forever(self, session: aiohttp.ClientSession, peer: int) -> None:
        delay = self.limits.reconnect_delay_min_s
        while True:
            address = self._address_of(peer)
            if address is not None:
                try:
                    await self._dial_once(session, peer, address)
                    delay = self.limits.reconnect_delay_min_s
                except (aiohttp.ClientError, OSError, TimeoutError, HandshakeFailed) as error:
                    log.debug("link to server %d (%s): %s", peer, address, error)
                finally:
                    self.connected_out.discard(peer)
            await asyncio.sleep(delay)  # back-off between attempts, not a wait for an event
            delay = min(delay * 2, self.limits.reconnect_delay_max_s)

    async def _dial_once(self, session: aiohttp.ClientSession, peer: int, address: str) -> None:
        limits = self.limits
        async with session.ws_connect(
            f"http://{address}{PEER_PATH}",
            max_msg_size=limits.message_bytes_max + _SEAL_OVERHEAD_BYTES,
            heartbeat=limits.heartbeat_s,
            timeout=aiohttp.ClientWSTimeout(ws_close=limits.connect_timeout_s),
        ) as ws:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can lose a cancellation.
            async with asyncio.timeout(limits.handshake_timeout_s):
                channel = await self._dialer_handshake(ws, peer)
            self.connected_out.add(peer)
            log.info("linked to server %d at %s", peer, address)
            queue = self._queues[peer]
            closed = asyncio.ensure_future(ws.receive())  # completes when the link closes
            try:
                while True:
                    getter = asyncio.ensure_future(queue.get())
                    done, _ = await asyncio.wait(
                        {getter, closed}, return_when=asyncio.FIRST_COMPLETED
                    )
                    if closed in done:
                        getter.cancel()
                        return
                    queued_s, frame = getter.result()
                    if time.monotonic() - queued_s <= limits.frame_age_max_s:
                        for message in _seal_frame(channel, frame, limits.message_bytes_max):
                            await ws.send_bytes(message)
            finally:
                closed.cancel()

    async def _dialer_handshake(self, ws: aiohttp.ClientWebSocketResponse, peer: int) -> _Channel:
        hello = await _receive_exact(ws, _HELLO_BYTES)
        if not hello.startswith(_MAGIC):
            raise HandshakeFailed("not a scryp peer")
        body = hello[len(_MAGIC) :]
        network, acceptor, nonce_a, ephemeral_a = (body[i : i + 32] for i in range(0, 128, 32))
        if network != self.network_id:
            raise HandshakeFailed("the peer serves another network")
        if acceptor != self.quorum[peer]:
            raise HandshakeFailed(f"expected server {peer}, reached another key")
        nonce_d = os.urandom(32)
        ephemeral = nacl.public.PrivateKey.generate()
        ephemeral_d = bytes(ephemeral.public_key)
        transcript = b"".join(
            (network, acceptor, self.keypair.public, nonce_a, nonce_d, ephemeral_a, ephemeral_d)
        )
        signature = self.keypair.sign(_AUTH_CONTEXT + transcript)
        await ws.send_bytes(self.keypair.public + nonce_d + ephemeral_d + signature)
        accept = await _receive_exact(ws, 64)
        if not verify(acceptor, _ACCEPT_CONTEXT + transcript, accept):
            raise HandshakeFailed("the acceptor's signature does not verify")
        return _Channel(_session_key(ephemeral, ephemeral_a, transcript), _DIALER_TO_ACCEPTOR)

    # -- receiving -----------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get(PEER_PATH, self._accept)

    async def _accept(self, request: web.Request) -> web.StreamResponse:
        limits = self.limits
        if self._handshakes_pending >= limits.handshakes_pending_max:
            self.refused += 1
            return web.Response(status=503, text="too many peer handshakes; retry shortly")
        ws = web.WebSocketResponse(
            max_msg_size=limits.message_bytes_max + _SEAL_OVERHEAD_BYTES,
            heartbeat=limits.heartbeat_s,
        )
        peer: int | None = None
        pending = True
        self._handshakes_pending += 1
        try:
            await ws.prepare(request)
            async with asyncio.timeout(limits.handshake_timeout_s):  # not wait_for: above
                linked, channel = await self._acceptor_handshake(ws)
            self._handshakes_pending -= 1
            pending = False
            if self._links_in[linked] >= limits.links_in_per_peer_max:
                raise HandshakeFailed(f"server {linked} holds {self._links_in[linked]} links")
            peer = linked
            self._links_in[linked] += 1
            await self._receive_frames(ws, linked, channel)
        except (HandshakeFailed, TimeoutError) as error:
            self.refused += 1
            log.warning("peer link from %s refused: %s", request.remote, error or "timeout")
        finally:
            if pending:
                self._handshakes_pending -= 1
            if peer is not None:
                self._links_in[peer] -= 1
            if ws.prepared:  # a plain GET (no upgrade) never got that far
                await ws.close()
        return ws

    async def _receive_frames(
        self, ws: web.WebSocketResponse, peer: int, channel: _Channel
    ) -> None:
        """Reassemble sealed parts into frames (at most ``frame_bytes_max``) and hand them on."""
        frame = bytearray()
        async for message in ws:
            if message.type is not aiohttp.WSMsgType.BINARY:
                raise HandshakeFailed(f"unexpected {message.type.name} message")
            part = channel.open(message.data)
            if not part or part[0] not in (_MORE, _LAST):
                raise HandshakeFailed("a frame part without its flag")
            frame += memoryview(part)[1:]
            if len(frame) > self.limits.frame_bytes_max:
                raise HandshakeFailed(f"a frame over {self.limits.frame_bytes_max} bytes")
            if part[0] == _LAST:
                self._on_frame(peer, bytes(frame))
                frame.clear()

    async def _acceptor_handshake(self, ws: web.WebSocketResponse) -> tuple[int, _Channel]:
        nonce_a = os.urandom(32)
        ephemeral = nacl.public.PrivateKey.generate()
        ephemeral_a = bytes(ephemeral.public_key)
        await ws.send_bytes(_MAGIC + self.network_id + self.keypair.public + nonce_a + ephemeral_a)
        auth = await _receive_exact(ws, _AUTH_BYTES)
        dialer, nonce_d, ephemeral_d, signature = auth[:32], auth[32:64], auth[64:96], auth[96:]
        if dialer not in self.quorum or dialer == self.keypair.public:
            raise HandshakeFailed(f"key {dialer.hex()[:16]}... is not another server in .keys")
        transcript = b"".join(
            (
                self.network_id,
                self.keypair.public,
                dialer,
                nonce_a,
                nonce_d,
                ephemeral_a,
                ephemeral_d,
            )
        )
        if not verify(dialer, _AUTH_CONTEXT + transcript, signature):
            raise HandshakeFailed("the dialer's signature does not verify")
        await ws.send_bytes(self.keypair.sign(_ACCEPT_CONTEXT + transcript))
        key = _session_key(ephemeral, ephemeral_d, transcript)
        return self.quorum.index(dialer), _Channel(key, _DIALER_TO_ACCEPTOR)


def _seal_frame(channel: _Channel, frame: bytes, part_bytes_max: int) -> list[bytes]:
    """A frame as sealed messages: parts of at most ``part_bytes_max``, the last flagged."""
    parts = [frame[at : at + part_bytes_max] for at in range(0, len(frame), part_bytes_max)]
    parts = parts or [b""]
    return [
        channel.seal(bytes([_LAST if i == len(parts) - 1 else _MORE]) + part)
        for i, part in enumerate(parts)
    ]


async def _receive_exact(
    ws: aiohttp.ClientWebSocketResponse | web.WebSocketResponse, length: int
) -> bytes:
    message = await ws.receive()
    if message.type is not aiohttp.WSMsgType.BINARY or len(message.data) != length:
        raise HandshakeFailed(f"expected a {length}-byte handshake message")
    data: bytes = message.data
    return data
