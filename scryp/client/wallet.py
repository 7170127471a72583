"""The wallet page: ``python -m scryp.client ui [--port P]`` (protocol §10.7).

An aiohttp server on 127.0.0.1 serving one HTML+JS page (``wallet_page.PAGE``, no external
fetches) and the JSON endpoints behind it:
- ``GET /api/wallet``: the verified balance with its round and signers, the account's
  payments from the synced rounds, the network's state, the last sync and any error;
- ``POST /api/pay`` ``{"payee", "amount"}``: checks, signs, submits, waits until a certified
  round decides it, and answers with the outcome.
A background task follows the certified round (every ``SYNC_PERIOD_S``, and at once after a
payment): a full sync the first time, incremental after, so the history grows round by round.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from scryp.client import operations
from scryp.client.network import Network
from scryp.client.operations import BadArguments, InsufficientFunds, VerifiedBalance
from scryp.client.session import add_common, data_dir, load_key, network_from, open_client
from scryp.client.sync import Client
from scryp.client.wallet_page import PAGE
from scryp.crypto import KeyPair
from scryp.errors import ConfigError, NotAvailable, RemoteError
from scryp.stopping import stop_event

SYNC_PERIOD_S = 1.0
PAYMENTS_SHOWN_MAX = 500
PAY_TIMEOUT_S = 60.0
REQUEST_BYTES_MAX = 4096


class Wallet:
    """The page's state, kept fresh by ``follow``."""

    def __init__(self, client: Client, key: KeyPair) -> None:
        self.client = client
        self.key = key
        self.state: dict[str, Any] = {"account": key.account_id, "balance": None}
        self.funds: VerifiedBalance | None = None  # the key's balance at the last sync
        self.wake = asyncio.Event()
        self.lock = asyncio.Lock()  # one sync at a time: they share the data directory

    async def refresh(self) -> None:
        async with self.lock:
            try:
                history = await operations.history(self.client, self.key.public)
                servers = await operations.server_states(self.client.apis)
            except (RemoteError, NotAvailable) as error:
                self.state = {**self.state, "error": str(error)}
                return
            state = history.as_json(newest_first=True, limit=PAYMENTS_SHOWN_MAX)
            state["network_servers"] = [s.as_json() for s in servers]
            state["agreeing"] = list(history.at.verified.vouching)
            state["error"] = None
            state["updated_ms"] = int(time.time() * 1000)
            self.funds = history.at
            self.state = state

    async def follow(self) -> None:
        while True:
            await self.refresh()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), SYNC_PERIOD_S)
            self.wake.clear()

    async def pay(self, payee: bytes, amount: int) -> operations.PayResult:
        """``operations.pay`` with the balance of the last sync when it covers the payment;
        else a fresh one (a sync, so under the lock) before refusing."""
        operations.check_payee(self.key.public, payee)
        funds = self.funds
        if funds is None or (funds.balance or 0) < amount:
            async with self.lock:
                funds = await operations.spendable(self.client, self.key.public, amount)
        return await operations.pay(
            self.client, self.key, payee, amount, PAY_TIMEOUT_S, funds=funds
        )


def make_app(wallet: Wallet) -> web.Application:
    app = web.Application(client_max_size=REQUEST_BYTES_MAX)

    async def page(_: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    async def state(_: web.Request) -> web.Response:
        return web.json_response(wallet.state)

    async def pay(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "body is not JSON"}, status=400)
        try:
            if not isinstance(body, dict):
                raise BadArguments('expected {"payee": "<64 hex>", "amount": N}')
            payee = operations.parse_account(str(body.get("payee", "")))
            amount = operations.parse_amount(str(body.get("amount", "")))
            result = await wallet.pay(payee, amount)
        except (BadArguments, InsufficientFunds) as error:
            return web.json_response({"error": str(error)}, status=400)
        except (RemoteError, NotAvailable) as error:
            return web.json_response({"error": str(error)}, status=502)
        wallet.wake.set()
        return web.json_response(result.as_json())

    app.router.add_get("/", page)
    app.router.add_get("/api/wallet", state)
    app.router.add_post("/api/pay", pay)
    return app


async def serve(network: Network, data: Path, key: KeyPair, port: int) -> None:
    async with open_client(network, data) as client:
        wallet = Wallet(client, key)
        runner = web.AppRunner(make_app(wallet), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        bound = runner.addresses[0][1]
        print(f"wallet on http://127.0.0.1:{bound}/", flush=True)
        stop = stop_event()
        try:
            async with asyncio.TaskGroup() as group:
                follower = group.create_task(wallet.follow())
                await stop.wait()
                follower.cancel()
        finally:
            await runner.cleanup()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m scryp.client ui")
    add_common(parser)
    parser.add_argument("--key", type=Path, metavar="SEEDFILE", help="the account's seed")
    parser.add_argument("--port", type=int, default=8765, help="0: any free port")
    args = parser.parse_args(argv)
    try:
        network = network_from(args)
        key = load_key(args)
    except ConfigError as error:
        print(f"scryp: {error}", file=sys.stderr)
        return 2
    asyncio.run(serve(network, data_dir(args), key, args.port))
    return 0
