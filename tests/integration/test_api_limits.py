"""The server API against inputs that cost more than they should (protocol §9.9): each gets a
4xx with a reason or a closed connection, never a 500, a stall or a flood of tracebacks.

The real aiohttp app (``build_app``: the server's routes and middleware) on 127.0.0.1, with a
small view standing in for the node behind it; the limits are made small so each runs fast.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import socket
import struct
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.registry import CollectorRegistry

from scryp import logthrottle
from scryp.core.ledger import Reason
from scryp.core.tx import Transaction
from scryp.crypto import KeyPair
from scryp.peers import PEER_PATH
from scryp.server.api import LINGERING_S, build_app
from scryp.server.config import ServerLimits
from scryp.server.verify import precheck_parallel

PAYER = KeyPair.from_seed(hashlib.sha256(b"limits payer").digest())


class View:
    """What the API reads of a node, for these tests: a leader that takes every payment."""

    def __init__(self, limits: ServerLimits) -> None:
        self.limits = limits
        self.window_ms = 5_000
        self.network = bytes(32)
        self.submitted: list[bytes] = []
        self.metrics_registry = CollectorRegistry()
        self.refusals: list[Reason] = []

    def refused(self, reason: Reason) -> None:
        self.refusals.append(reason)

    async def precheck(self, txs: list[Transaction]) -> list[Reason | None]:
        return await precheck_parallel(txs)

    def submit(self, txs: list[bytes]) -> str | None:
        self.submitted += txs
        return None

    def remembers(self, tx_id: bytes) -> bool:
        return False


@asynccontextmanager
async def api(limits: ServerLimits) -> AsyncIterator[tuple[str, View, list[str]]]:
    view = View(limits)
    upgrades: list[str] = []

    async def peer(request: web.Request) -> web.Response:
        upgrades.append(request.remote or "?")
        return web.Response(text="peer")

    app = build_app(view, limits, lambda a: a.router.add_get(PEER_PATH, peer))  # type: ignore[arg-type]
    runner = web.AppRunner(app, access_log=None, lingering_time=LINGERING_S)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}", view, upgrades
    finally:
        await runner.cleanup()


async def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + "/transact", data=body, headers=headers) as response,
    ):
        return response.status, await response.json(content_type=None)


def test_deeply_nested_json_is_a_400() -> None:
    async def scenario() -> None:
        async with api(ServerLimits()) as (url, _, _):
            body = b'{"transactions": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
            code, reply = await post(url, body, {"Content-Type": "application/json"})
            assert code == 400 and "nested" in reply["error"]

    asyncio.run(scenario())


def test_a_gzip_body_that_does_not_decompress_is_a_400() -> None:
    async def scenario() -> None:
        async with api(ServerLimits()) as (url, _, _):
            garbage = b"\x1f\x8b\x08\x00garbage" * 10  # a gzip header, then nonsense
            headers = {"Content-Type": "text/plain", "Content-Encoding": "gzip"}
            code, reply = await post(url, garbage, headers)
            assert code == 400 and "unreadable body" in reply["error"]

    asyncio.run(scenario())


def test_a_body_sent_a_byte_at_a_time_is_cut_off() -> None:
    limits = replace(ServerLimits(), request_s_max=0.5)

    async def scenario() -> None:
        async with api(limits) as (url, _, _):
            host, port = url.removeprefix("http://").split(":")
            reader, writer = await asyncio.open_connection(host, int(port))
            head = "POST /transact HTTP/1.1\r\nHost: x\r\nContent-Length: 280\r\n"
            writer.write((head + "Content-Type: text/plain\r\n\r\n").encode())
            started = asyncio.get_running_loop().time()
            answer = b""
            for _ in range(20):  # bounded: at most 20 bytes, one each 0.1 s
                writer.write(b"a")
                await writer.drain()
                with_deadline = asyncio.wait_for(reader.read(200), 0.1)
                try:
                    answer = await with_deadline
                except TimeoutError:
                    continue
                break
            writer.close()
            assert answer.startswith(b"HTTP/1.1 408"), answer
            assert asyncio.get_running_loop().time() - started < 1.5

    asyncio.run(scenario())


def test_a_client_is_budgeted_in_signatures_not_requests() -> None:
    limits = replace(ServerLimits(), signatures_per_s=10.0, signature_burst=100)
    forged = bytearray(Transaction.create(PAYER, bytes(range(32)), 1, 0).encode())
    forged[-1] ^= 1

    async def scenario() -> None:
        async with api(limits) as (url, _, _):
            body = bytes(forged) * 80
            headers = {"Content-Type": "application/octet-stream"}
            first, _ = await post(url, body, headers)
            second, reply = await post(url, body, headers)
            assert first == 400  # checked: 80 bad signatures, all refused
            assert second == 429 and "signatures" in reply["error"]

    asyncio.run(scenario())


def test_peer_links_are_not_starved_by_a_clients_requests() -> None:
    limits = replace(ServerLimits(), requests_per_s=1.0, request_burst=3)

    async def scenario() -> None:
        async with api(limits) as (url, _, upgrades), aiohttp.ClientSession() as session:
            codes = []
            for _ in range(5):
                async with session.get(url + "/status") as response:
                    codes.append(response.status)
            assert codes[-1] == 429  # the client's budget is spent...
            async with session.get(url + PEER_PATH) as response:
                assert response.status == 200  # ...and a peer link still gets through
            assert upgrades

    asyncio.run(scenario())


def test_malformed_http_is_logged_once_per_client_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    throttle = logthrottle.install()

    async def scenario() -> None:
        async with api(ServerLimits()) as (url, _, _):
            host, port = url.removeprefix("http://").split(":")
            for _ in range(30):  # bounded
                reader, writer = await asyncio.open_connection(host, int(port))
                writer.write(
                    b"POST /transact HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"zz\r\nabc\r\n0\r\n\r\n"
                )
                await writer.drain()
                assert (await reader.read(100)).split(b" ")[1] == b"400"
                writer.close()

    with caplog.at_level(logging.DEBUG, logger="aiohttp.server"):
        suppressed_before = throttle.suppressed
        asyncio.run(scenario())
    lines = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert lines[0].levelno == logging.WARNING and lines[0].exc_info is None
    assert "malformed HTTP from 127.0.0.1" in lines[0].getMessage()
    assert throttle.suppressed - suppressed_before == 29
    json.dumps(lines[0].getMessage())  # one printable line


def test_a_client_that_leaves_mid_body_is_logged_once_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Found by the bank test: clients that gave up on a paused server (their requests timed
    out) left one ERROR and a traceback each on the server once it resumed."""
    logthrottle.install()

    async def scenario() -> None:
        async with api(ServerLimits()) as (url, view, _):
            host, port = url.removeprefix("http://").split(":")
            for _ in range(10):  # bounded
                _, writer = await asyncio.open_connection(host, int(port))
                head = "POST /transact HTTP/1.1\r\nHost: x\r\nContent-Length: 280\r\n\r\n"
                writer.write(head.encode() + b"ab")
                await writer.drain()
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()  # a reset, as from a client that gave up
            # The API still serves: a well-formed payment afterwards is taken.
            tx = Transaction.create(PAYER, bytes(range(32)), 1, int(time.time() * 1000)).encode()
            code, _ = await post(url, tx, {"Content-Type": "application/octet-stream"})
            assert code == 202 and view.submitted == [tx]

    with caplog.at_level(logging.DEBUG, logger="aiohttp.server"):
        asyncio.run(scenario())
    errors = [r for r in caplog.records if r.name == "aiohttp.server" and r.exc_info]
    assert errors == [], [r.getMessage() for r in errors]
    lines = [r.getMessage() for r in caplog.records if r.name == "aiohttp.server"]
    assert len(lines) <= 1 and all("connection lost mid-request" in m for m in lines), lines
