"""The client reports the outcome a majority of servers certified (protocol §10.6): one
server that says otherwise (lying, or wrong) cannot turn a payment that went through into a
refusal for the user, nor the reverse. Three real aiohttp servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import pytest
from aiohttp import web

from scryp.client.servers import PaymentTimeout, wait_certified
from scryp.core.tx import Transaction
from scryp.crypto import KeyPair

PAYER = KeyPair.from_seed(hashlib.sha256(b"majority payer").digest())
TX = Transaction.create(PAYER, bytes(range(32)), 5, 1_700_000_000_000)


def answer(status: str, reason: str | None) -> dict[str, Any]:
    return {"id": TX.tx_id.hex(), "status": status, "reason": reason, "round": 7, "certified": True}


async def serve(body: dict[str, Any] | None) -> tuple[web.AppRunner, str]:
    async def tx(_: web.Request) -> web.Response:
        if body is None:
            return web.json_response({"error": "unknown"}, status=404)
        return web.json_response(body)

    async def transact(_: web.Request) -> web.Response:
        return web.json_response({"error": "duplicate"}, status=400)

    app = web.Application()
    app.router.add_get("/tx/{id}", tx)
    app.router.add_post("/transact", transact)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


async def outcome_of(bodies: list[dict[str, Any] | None], timeout_s: float) -> Any:
    started = [await serve(body) for body in bodies]
    try:
        return await wait_certified([api for _, api in started], TX, timeout_s)
    finally:
        for runner, _ in started:
            await runner.cleanup()


def test_one_server_saying_rejected_does_not_outvote_two_saying_accepted() -> None:
    lie = answer("rejected", "timestamp outside the accepted window")
    outcome = asyncio.run(outcome_of([lie, answer("accepted", None), answer("accepted", None)], 5))
    assert outcome.accepted and outcome.reason is None


def test_one_server_alone_is_not_believed() -> None:
    with pytest.raises(PaymentTimeout):
        asyncio.run(outcome_of([answer("accepted", None), None, None], 1.5))
