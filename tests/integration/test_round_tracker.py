"""Clients fetching the same round meet at the servers' tracker (protocol §8.6.1): real
libtorrent sessions and a real aiohttp server with the API's ``/announce`` handler."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import quote_from_bytes

import pytest
from aiohttp import ClientSession, TCPConnector, web

from scryp.core import snapshot
from scryp.core.buckets import state_root
from scryp.core.tracker import PeerTable
from scryp.server.api import TRACKER, VIEW, announce
from scryp.swarm import Swarm, SwarmConfig

from .conftest import make_balances, write_round

pytestmark = pytest.mark.slow


class Seeds:
    """The part of a server's view the tracker asks: whether the server seeds a torrent."""

    def __init__(self, swarm: Swarm) -> None:
        self.swarm = swarm

    def seeds(self, infohash: bytes) -> bool:
        return self.swarm.has_torrent(infohash)


async def tracker_server(seed: Swarm) -> tuple[web.AppRunner, str, PeerTable]:
    app = web.Application()
    table = app[TRACKER] = PeerTable()
    app[VIEW] = Seeds(seed)  # type: ignore[misc]  # the one method the tracker asks
    app.router.add_get("/announce", announce)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}/announce", table


def test_a_client_finds_another_client_through_the_tracker(tmp_path: Path) -> None:
    """C knows no seed and no DHT node: only the tracker can lead it to B, who fetched the
    round from the seed A and announced itself."""
    balances = make_balances(20_000)
    round_dir = write_round(tmp_path / "seed", 5, balances, b"")
    state = state_root(balances)

    async def body() -> None:
        a, b, c = (Swarm(SwarmConfig()) for _ in range(3))
        runner, url, table = await tracker_server(a)
        try:
            for swarm in (a, b, c):
                await swarm.wait_listening()
            torrent = await a.seed(round_dir)
            # Only torrents the server seeds are tracked (protocol §8.6.1): not an open tracker.
            # No keep-alive: no server-side connection left for the cleanup to race with.
            async with ClientSession(connector=TCPConnector(force_close=True)) as http:
                other = quote_from_bytes(b"x" * 20)
                async with http.get(f"{url}?info_hash={other}&port=7") as refused:
                    assert refused.status == 400
                    assert b"failure reason" in await refused.read()
                mine = quote_from_bytes(torrent.infohash)
                async with http.get(f"{url}?info_hash={mine}&port=7") as answered:
                    assert answered.status == 200
                    assert b"peers" in await answered.read()
            await b.fetch(
                torrent.infohash,
                tmp_path / "b",
                peers=[a.address],
                trackers=[url],
                expect_state_root=state,
                timeout_s=30,
            )
            assert table.count(torrent.infohash) == 2  # B, still seeding, and port 7 above
            got = await c.fetch(
                torrent.infohash,
                tmp_path / "c",
                trackers=[url],
                expect_state_root=state,
                timeout_s=30,
            )
            assert (got.round_dir / snapshot.BALANCES).read_bytes() == balances
        finally:
            for swarm in (a, b, c):
                await swarm.close()
            await runner.cleanup()

    asyncio.run(body())


def test_a_tracker_not_allowed_in_this_mode_is_not_used(tmp_path: Path) -> None:
    """protocol §8.8: a loopback session never announces to an address off 127.0.0.0/8."""
    swarm_config = SwarmConfig()
    assert not swarm_config.allows("10.1.2.3")

    async def body() -> None:
        swarm = Swarm(swarm_config)
        try:
            await swarm.wait_listening()
            assert not swarm._tracker_allowed("http://10.1.2.3:6882/announce")
            assert not swarm._tracker_allowed("udp://127.0.0.1:6882/announce")
            assert swarm._tracker_allowed("http://127.0.0.1:6882/announce")
        finally:
            await swarm.close()

    asyncio.run(body())
