"""A steady payment load and the check that no acknowledged payment was lost (issue 9,
partition). Runs on the observer host (``Testbed.observe``).

Owns: the load (one payment of 1 scryp from the faucet to a fresh payee every
``interval_s``, each awaited to its certified outcome by ``operations.send_payment``, which
resends while no server knows it), and the tally: every payee's balance, as each server
reports it, must equal the payments acknowledged to it. Bounded: at most
``duration_s / interval_s`` payments, each with its own deadline.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from scryp.client import operations
from scryp.crypto import KeyPair

PAY_TIMEOUT_S = 60.0
HTTP_TIMEOUT_S = 3.0


@dataclass
class Payment:
    payee: bytes
    sent_at: float
    accepted: bool | None = None  # None: no certified outcome (not acknowledged)
    round: int | None = None
    error: str = ""


@dataclass
class Load:
    apis: list[str]
    payer: KeyPair
    interval_s: float
    payments: list[Payment] = field(default_factory=list)

    def payee(self, number: int) -> bytes:
        return hashlib.sha256(b"lab payee %d" % number).digest()

    async def run(self, duration_s: float) -> None:
        tasks = []
        started = time.monotonic()
        count = int(duration_s / self.interval_s)
        for number in range(count):
            await asyncio.sleep(max(0.0, started + number * self.interval_s - time.monotonic()))
            payment = Payment(self.payee(number), time.monotonic() - started)
            self.payments.append(payment)
            tasks.append(asyncio.create_task(self._pay(payment)))
        await asyncio.gather(*tasks)

    async def _pay(self, payment: Payment) -> None:
        try:
            paid = await operations.send_payment(
                self.apis, self.payer, payment.payee, 1, PAY_TIMEOUT_S
            )
        except Exception as error:  # the network's answer (or none): recorded, not raised
            payment.error = f"{type(error).__name__}: {error}"
            return
        payment.accepted, payment.round = paid.accepted, paid.round

    @property
    def acknowledged(self) -> list[Payment]:
        return [p for p in self.payments if p.accepted]

    async def lost(self) -> dict[str, Any]:
        """Acknowledged payments whose payee's balance, on any server, is not 1."""
        timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S)
        missing: list[str] = []
        unanswered = 0
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for payment in self.acknowledged:
                for api in self.apis:
                    balance = await _balance(session, api, payment.payee)
                    if balance is None:
                        unanswered += 1
                    elif balance != 1:
                        missing.append(f"{payment.payee.hex()[:16]}… on {api}: {balance}")
        return {"lost": missing, "unanswered_queries": unanswered}


async def _balance(session: aiohttp.ClientSession, api: str, account: bytes) -> int | None:
    try:
        async with session.get(f"{api}/query/{account.hex()}") as response:
            if response.status == 404:
                return 0
            if response.status != 200:
                return None
            body = await response.json(content_type=None)
            return int(body["balance"])
    except (aiohttp.ClientError, TimeoutError, ValueError, KeyError):
        return None
