"""A server survives what the swarm cannot do now (errors.py: ``NotAvailable``, ``TimedOut``).

Method: three real in-process ``ServerNode``s (real libtorrent sessions, real peer links over
aiohttp on 127.0.0.1, a private DHT) certify rounds; server 0's swarm raises ``TimedOut`` on
its first ``seed`` (what a 10 s add-torrent timeout raises), then works. Before the driver,
that exception ended the server's TaskGroup; now the seed is reported and retried.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
from aiohttp import web

from scryp.core.genesis import Genesis
from scryp.crypto import KeyPair
from scryp.errors import TimedOut
from scryp.localnet import free_port
from scryp.server.api import make_app
from scryp.server.config import ServerConfig
from scryp.server.node import ServerNode
from scryp.swarm import RoundTorrent, Swarm, SwarmConfig

from .conftest import private_dht

pytestmark = pytest.mark.slow

DEADLINE_S = 60.0
KEYS = [KeyPair.from_seed(hashlib.sha256(f"faults-{i}".encode()).digest()) for i in range(3)]
FAUCET = KeyPair.from_seed(hashlib.sha256(b"faults-faucet").digest())


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


async def wait_for(
    condition: Callable[[], bool], what: str, runs: list[asyncio.Task[None]]
) -> None:
    """Wait on a condition with a deadline (polled: it reads other tasks' state); fail at
    once if a server stops meanwhile."""
    deadline = asyncio.get_running_loop().time() + DEADLINE_S
    while not condition():
        stopped = [run for run in runs if run.done()]
        if stopped:
            raise AssertionError(f"a server stopped: {stopped[0].exception()!r}")
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def test_a_seeding_timeout_is_retried_and_the_server_certifies_later(tmp_path: Path) -> None:
    async def scenario() -> None:
        genesis = Genesis.single(FAUCET.public)
        quorum = [key.public for key in KEYS]
        api_ports = [free_port() for _ in KEYS]
        peers = {i: f"127.0.0.1:{port}" for i, port in enumerate(api_ports)}
        async with private_dht(1) as (boot,):
            nodes = []
            for i, key in enumerate(KEYS):
                config = ServerConfig(
                    key_file=tmp_path / "unused",
                    quorum_file=tmp_path / "unused",
                    genesis_file=tmp_path / "unused",
                    data_dir=tmp_path / f"server-{i}",
                    torrent_port=free_port(),
                    server_port=api_ports[i],
                    bootstrap=(boot.address,),
                    peers={j: a for j, a in peers.items() if j != i},
                    round_interval_s=0.3,
                )
                kind = FlakyServer if i == 0 else ServerNode
                nodes.append(kind(config, key, quorum, genesis))
            runners = []
            for node in nodes:
                runner = web.AppRunner(make_app(node), access_log=None)
                await runner.setup()
                await web.TCPSite(runner, "127.0.0.1", node.config.server_port).start()
                runners.append(runner)
            runs = [asyncio.create_task(node.run()) for node in nodes]
            try:
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
            finally:
                for run in runs:
                    run.cancel()
                await asyncio.gather(*runs, return_exceptions=True)
                for runner in runners:
                    await runner.cleanup()
            for run in runs:
                assert run.cancelled() or run.exception() is None

    asyncio.run(scenario())
