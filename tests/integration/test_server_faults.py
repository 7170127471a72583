"""A server survives what the swarm cannot do now (errors.py: ``NotAvailable``, ``TimedOut``).

Method: three real in-process ``ServerNode``s (real libtorrent sessions, real peer links over
aiohttp on 127.0.0.1, a private DHT) certify rounds; server 0's swarm raises ``TimedOut`` on
its first ``seed`` (what a 10 s add-torrent timeout raises), then works. Before the driver,
that exception ended the server's TaskGroup; now the seed is reported and retried.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from scryp.errors import TimedOut
from scryp.server.node import ServerNode
from scryp.swarm import RoundTorrent, Swarm, SwarmConfig

from .inprocess import cluster, wait_for

pytestmark = pytest.mark.slow


class FlakySwarm(Swarm):
    """A real session whose first ``seed`` fails as an add-torrent timeout would."""

    failures_left = 1
    failed = 0

    async def seed(
        self, round_dir: Path, torrent: RoundTorrent | None = None, super_seed: bool = False
    ) -> RoundTorrent:
        if FlakySwarm.failures_left:
            FlakySwarm.failures_left -= 1
            FlakySwarm.failed += 1
            raise TimedOut("add torrent: no answer within 10 s (injected)")
        return await super().seed(round_dir, torrent, super_seed)


class FlakyServer(ServerNode):
    def make_swarm(self, config: SwarmConfig) -> Swarm:
        return FlakySwarm(config)


def test_a_seeding_timeout_is_retried_and_the_server_certifies_later(tmp_path: Path) -> None:
    async def scenario() -> list[asyncio.Task[None]]:
        async with cluster(tmp_path, {0: FlakyServer}, running=3) as (nodes, runs):
            flaky = nodes[0]
            await wait_for(lambda: FlakySwarm.failed == 1, "the injected seeding timeout", runs)
            await wait_for(
                lambda: (flaky.view.status()["certified_round"] or 0) >= 3,
                "server 0 to certify round 3",
                runs,
            )
            # The round whose seeding failed is seeded on the retry, and certified.
            await wait_for(
                lambda: any(i.round == 0 and i.certificate for i in flaky.view.rounds(0, 9)),
                "server 0 to seed and certify round 0 on the retry",
                runs,
            )
            assert not any(run.done() for run in runs), "a server stopped"
        return runs

    for run in asyncio.run(scenario()):
        assert run.cancelled() or run.exception() is None
