"""A payment is not held up by a server that does not answer (protocol §10.6): the next
server is tried after ``SUBMIT_STAGGER_S``, long before the dead one's HTTP timeout, which
would have used up the payment's timestamp window (§6.2). Real aiohttp servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import hashlib

from aiohttp import web

from scryp.client.servers import HTTP_TIMEOUT_S, SUBMIT_STAGGER_S, PaymentRefused, submit
from scryp.core.tx import Transaction
from scryp.crypto import KeyPair

PAYER = KeyPair.from_seed(hashlib.sha256(b"submit payer").digest())
TX = Transaction.create(PAYER, bytes(range(32)), 5, 1_700_000_000_000)


async def serve(status: int | None, seen: list[bytes]) -> tuple[web.AppRunner, str]:
    """A server answering POST /transact with ``status``, or never (None)."""

    async def transact(request: web.Request) -> web.Response:
        seen.append(await request.read())
        if status is None:
            await asyncio.Event().wait()  # a server that took the connection and hangs
        body = {"accepted": 1} if status == 202 else {"results": [{"reason": "no"}]}
        return web.json_response(body, status=status or 500)

    app = web.Application()
    app.router.add_post("/transact", transact)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


async def submit_to(statuses: list[int | None]) -> tuple[str, list[list[bytes]], list[str]]:
    seen: list[list[bytes]] = [[] for _ in statuses]
    started = [await serve(status, into) for status, into in zip(statuses, seen, strict=True)]
    apis = [api for _, api in started]
    try:
        # Well before the hanging server's own timeout: waiting that out is the bug.
        deadline_s = HTTP_TIMEOUT_S - 4 * SUBMIT_STAGGER_S
        taken = await asyncio.wait_for(submit(apis, TX), deadline_s)
    finally:
        for runner, _ in started:
            await runner.cleanup()
    return taken, seen, apis


def test_a_hanging_first_server_does_not_hold_up_the_payment() -> None:
    taken, seen, apis = asyncio.run(submit_to([None, 202, 202]))
    assert taken == apis[1]
    assert seen[0] == [TX.encode()] and seen[1] == [TX.encode()]
    assert seen[2] == []  # the second answered: the third was never asked


def test_a_refusal_is_reported_not_retried_elsewhere() -> None:
    try:
        asyncio.run(submit_to([400, 202]))
    except PaymentRefused as error:
        assert "no" in str(error)
    else:
        raise AssertionError("a server's refusal must reach the user")


def test_not_now_from_every_server_is_asked_again() -> None:
    """An election leaves no leader for a moment: servers say 503, then take the payment."""

    async def run() -> str:
        asked: list[int] = []

        async def transact(request: web.Request) -> web.Response:
            await request.read()
            asked.append(1)
            if len(asked) <= 2:
                return web.json_response({"error": "no leader at the moment"}, status=503)
            return web.json_response({"accepted": 1}, status=202)

        app = web.Application()
        app.router.add_post("/transact", transact)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        try:
            return await submit([f"http://{host}:{port}"], TX)
        finally:
            await runner.cleanup()

    assert asyncio.run(run()).startswith("http://127.0.0.1:")
