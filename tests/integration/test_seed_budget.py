"""A server's upload budget per round torrent (protocol §8.9.1) in real libtorrent sessions: a
seed that has uploaded its budget of a torrent within the window trickles it, and uploads at
full speed again once the window has passed."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import libtorrent as lt
import pytest

from scryp.core.seedbudget import UNLIMITED, SeedBudget
from scryp.swarm import Swarm, SwarmConfig

from .conftest import make_balances, write_round

pytestmark = pytest.mark.slow

BUDGET = SeedBudget(copies=0.0, floor_bytes=256 << 10, window_s=3.0, trickle_bytes_per_s=50_000)
PERIOD_S = 0.1
DEADLINE_S = 30.0


async def watch_limits(seed: Swarm, infohash: bytes, seen: list[tuple[float, int]]) -> None:
    """Record every change of the seed's upload limit of the torrent (libtorrent raises no
    alert for it, so it is looked at twice a period; "no limit", set as 0, reads back -1)."""
    handle = seed._live().find_torrent(lt.sha1_hash(infohash))
    while True:
        limit = max(UNLIMITED, handle.upload_limit())
        if not seen or seen[-1][1] != limit:
            seen.append((time.monotonic(), limit))
        await asyncio.sleep(PERIOD_S / 2)  # polled: no event to wait on


def test_a_seed_trickles_a_torrent_past_its_budget_then_recovers(tmp_path: Path) -> None:
    round_dir = write_round(tmp_path / "seed", 7, make_balances(100_000), b"")  # 3.6 MB

    async def body() -> list[tuple[float, int]]:
        seen: list[tuple[float, int]] = []
        async with Swarm.start(SwarmConfig()) as seed, Swarm.start(SwarmConfig()) as client:
            torrent = await seed.seed(round_dir)
            await client.fetch(
                torrent.infohash, tmp_path / "client", peers=[seed.address], timeout_s=30
            )
            # The budget starts after the upload: what was uploaded counts as spent now.
            tasks = [
                asyncio.create_task(watch_limits(seed, torrent.infohash, seen)),
                asyncio.create_task(seed.keep_seed_budget(BUDGET, PERIOD_S)),
            ]
            try:
                deadline = time.monotonic() + DEADLINE_S
                while [limit for _, limit in seen] != [UNLIMITED, 50_000, UNLIMITED]:
                    assert time.monotonic() < deadline, seen
                    await asyncio.sleep(PERIOD_S)  # polled: no event to wait on
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        return seen

    seen = asyncio.run(body())
    # 3.6 MB uploaded against a budget of 256 kB: a trickle, until the window has passed.
    (_, _), (trickled, _), (recovered, _) = seen
    assert recovered - trickled >= BUDGET.window_s - 1.0
