"""GET /changes?since=C&round=R on a real server process (protocol §10.4.1): the body, applied
to checkpoint C's balances, gives the certified state root of round R; every malformed or
out-of-bounds request is a 400 or 404 with a reason and the server carries on; and a client's
full sync of a round late in the interval uses it: one torrent (the checkpoint's
``balances``), not one per round since.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path

import aiohttp
import pytest

from scryp.client.network import load_testnet
from scryp.client.session import open_client
from scryp.core import snapshot
from scryp.core.buckets import state_root
from scryp.core.changes import ROUNDS_HEADER, apply_changes, decode_changes
from scryp.core.tx import Transaction
from scryp.crypto import KeyPair
from scryp.localnet import LocalNetwork
from tests.support.fetches import count_fetches

pytestmark = pytest.mark.slow

ALICE = KeyPair.from_seed(hashlib.sha256(b"changes range alice").digest())
DEADLINE_S = 60.0
# Long enough that the payments below and the round synced fall in the first interval (0.3 s
# rounds: a checkpoint every 30 s), so the range is long and not empty.
EVERY = 100


async def get_bytes(api: str, path: str) -> tuple[int, bytes, str | None]:
    """(status, body, the Scryp-Rounds header) of a GET."""
    timeout = aiohttp.ClientTimeout(total=10.0)
    async with aiohttp.ClientSession(timeout=timeout) as session, session.get(api + path) as r:
        return r.status, await r.read(), r.headers.get(ROUNDS_HEADER)


async def pay_and_wait(net: LocalNetwork, amount: int, expected: int) -> None:
    """One payment to Alice, certified (so payments fall in rounds of their own)."""
    faucet = net.faucet
    assert faucet is not None

    async def paid() -> bool:  # 503 until a leader is elected
        tx = Transaction.create(faucet, ALICE.public, amount, int(time.time() * 1000))
        return (await net.post(0, "/transact", tx.encode()))[0] == 202

    await net.wait_until(paid, DEADLINE_S, "the payment taken")

    async def certified() -> bool:
        code, body = await net.get(0, f"/query/{ALICE.account_id}")
        return code == 200 and body["balance"] == expected

    await net.wait_until(certified, DEADLINE_S, "the payment certified")


async def check_bad_requests(net: LocalNetwork, api: str, certified: int) -> None:
    for query, status in [
        ("", 400),
        ("?since=0", 400),
        ("?round=3", 400),
        ("?since=x&round=3", 400),
        ("?since=0&round=-1", 400),
        ("?since=3&round=3", 400),  # not after since
        ("?since=5&round=2", 400),
        (f"?since=0&round={EVERY + 1}", 400),  # more rounds than a server answers at once
        (f"?since={certified}&round={certified + 5}", 404),  # not certified here
    ]:
        code, body = await net.get(0, "/changes" + query)
        assert code == status and body["error"], (query, code, body)


def test_a_range_of_changes_gives_the_certified_root(tmp_path: Path) -> None:
    async def scenario() -> None:
        net = LocalNetwork(
            tmp_path / "net",
            servers=1,
            round_interval_s=0.3,
            server_args=["--checkpoint-every", str(EVERY)],
        )
        await net.start()
        try:
            for amount, total in ((1_000, 1_000), (234, 1_234), (5, 1_239)):
                await pay_and_wait(net, amount, total)
            code, record = await net.get(0, "/record")
            assert code == 200
            last = record["round"]
            assert 0 < last < EVERY, "the rounds passed a checkpoint: make EVERY longer"
            api = net.server_processes[0].api
            code, body, header = await get_bytes(api, f"/changes?since=0&round={last}")
            assert (code, header) == (200, f"1-{last}")
            assert len(decode_changes(body)) >= 2  # the faucet and Alice at least
            rounds = net.root / "data" / "server-0" / "rounds"
            genesis = (rounds / snapshot.round_dir_name(0) / snapshot.BALANCES).read_bytes()
            assert state_root(apply_changes(genesis, body)).hex() == record["state_root"]
            await check_bad_requests(net, api, last)
            await _full_sync_by_range(net, tmp_path / "client", last)
            assert (await net.get(0, "/status"))[0] == 200  # no crash on any of it
        finally:
            await net.stop()

    asyncio.run(scenario())


async def _full_sync_by_range(net: LocalNetwork, data: Path, last: int) -> None:
    """A client's full sync of a round after the checkpoint asks GET /changes and fetches
    one torrent only: the checkpoint's ``balances`` (protocol §10.4.1)."""
    async with open_client(load_testnet(net.root), data) as client:
        verified = await client.latest(min_round=last)
        assert verified.round % EVERY
        fetched = count_fetches(client)
        synced = await client.sync(verified, "full", ALICE.public)
    assert (synced.mode, synced.balance) == ("full", 1_239)
    assert fetched == [[snapshot.BALANCES]], fetched
