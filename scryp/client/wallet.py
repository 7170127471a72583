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
import signal
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from scryp.client import servers
from scryp.client.commands import (
    BadArguments,
    InsufficientFunds,
    parse_account,
    parse_amount,
    pay_and_wait,
    payment_json,
    synced_json,
)
from scryp.client.network import Network
from scryp.client.session import add_common, data_dir, load_key, network_from, open_client
from scryp.client.sync import Client, read_balance
from scryp.client.wallet_page import PAGE
from scryp.crypto import KeyPair
from scryp.errors import ConfigError, NotAvailable, RemoteError

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
        self.wake = asyncio.Event()
        self.lock = asyncio.Lock()  # one sync at a time

    async def refresh(self) -> None:
        async with self.lock:
            client = self.client
            try:
                synced = await client.sync_latest("auto", None)
                verified = synced.round
                store = client.store(verified)
                held = store.held()
                balance = read_balance(held, self.key.public) if held else None
                payments = [
                    payment_json(self.key.public, p) for p in store.payments(self.key.public)
                ]
                statuses = await servers.statuses(client.apis)
                state = synced_json(synced, self.key.public)
                state["balance"] = balance
                state["payments"] = payments[::-1][:PAYMENTS_SHOWN_MAX]
                state["network_servers"] = [
                    {
                        "api": api,
                        "up": s is not None,
                        "role": s.get("role") if s else None,
                        "round": s.get("round") if s else None,
                        "certified_round": s.get("certified_round") if s else None,
                    }
                    for api, s in zip(client.apis, statuses, strict=True)
                ]
                state["agreeing"] = list(verified.vouching)
                state["error"] = None
                state["updated_ms"] = int(time.time() * 1000)
                self.state = state
            except (RemoteError, NotAvailable) as error:
                self.state = {**self.state, "error": str(error)}

    async def follow(self) -> None:
        while True:
            await self.refresh()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), SYNC_PERIOD_S)
            self.wake.clear()


def make_app(wallet: Wallet) -> web.Application:
    app = web.Application(client_max_size=REQUEST_BYTES_MAX)

    async def page(_: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    async def state(_: web.Request) -> web.Response:
        return web.json_response(wallet.state)

    async def pay(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise BadArguments('expected {"payee": "<64 hex>", "amount": N}')
            payee = parse_account(str(body.get("payee", "")))
            amount = parse_amount(str(body.get("amount", "")))
            if payee == wallet.key.public:
                raise BadArguments("payer and payee are the same account")
            balance = wallet.state.get("balance")
            if isinstance(balance, int) and balance < amount:
                raise InsufficientFunds(
                    f"insufficient funds: {balance} scryp at round {wallet.state.get('round')}"
                )
        except ValueError:
            return web.json_response({"error": "body is not JSON"}, status=400)
        except (BadArguments, InsufficientFunds) as error:
            return web.json_response({"error": str(error)}, status=400)
        try:
            result = await pay_and_wait(
                wallet.client.apis, wallet.key, payee, amount, PAY_TIMEOUT_S
            )
        except RemoteError as error:
            return web.json_response({"error": str(error)}, status=502)
        wallet.wake.set()
        return web.json_response(result)

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
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
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
