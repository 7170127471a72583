"""Catching up through the swarm past a lying server and a slow one (protocol §9.5).

Three real in-process ``ServerNode``s (real libtorrent sessions, real peer links on 127.0.0.1,
a private DHT). Servers 0 and 1 seal and compact rounds while server 2 is down; then server 2
starts far behind and must fetch a round. Server 1 lies: every share it sends server 2 names
a torrent nobody seeds (signed with its real key, so the signature verifies). Server 0 is
honest but answers server 2 1.5 s late. Taking the first answer, server 2 would chase the lie
forever; it must try the lie, fail, and catch up from server 0's torrent.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp import web

from scryp.core.certificate import Statement
from scryp.core.genesis import Genesis
from scryp.core.tx import Transaction
from scryp.core.wire import PeerFrame, Share, encode_frame
from scryp.localnet import free_port
from scryp.server.api import make_app
from scryp.server.config import ServerConfig, ServerLimits
from scryp.server.node import ServerNode

from .conftest import private_dht
from .test_server_faults import FAUCET, KEYS, wait_for

pytestmark = pytest.mark.slow

BEHIND = 2
LIAR, SLOW = 1, 0
SLOW_S = 1.5
JUNK_V1, JUNK_V2 = hashlib.sha1(b"junk").digest(), hashlib.sha256(b"junk").digest()


class LyingServer(ServerNode):
    """Sends server 2 shares naming a junk torrent, validly signed."""

    def send_frame(self, peer: int, frame: PeerFrame) -> None:
        if peer == BEHIND and isinstance(frame, Share):
            statement = Statement(self.network, frame.round, frame.state_hash, JUNK_V2)
            frame = replace(
                frame, infohash=JUNK_V1, infohash_v2=JUNK_V2, signature=statement.sign(self.key)
            )
        super().send_frame(peer, frame)


class SlowServer(ServerNode):
    """Answers server 2 late."""

    def send_frame(self, peer: int, frame: PeerFrame) -> None:
        if peer == BEHIND and isinstance(frame, Share):
            loop = asyncio.get_running_loop()
            loop.call_later(SLOW_S, self.hub.send, peer, encode_frame(frame))
            return
        super().send_frame(peer, frame)


@asynccontextmanager
async def cluster(
    tmp_path: Path, kinds: dict[int, type[ServerNode]]
) -> AsyncIterator[tuple[list[ServerNode], list[asyncio.Task[None]]]]:
    """Three in-process servers; all but server 2 running (start it with ``start_behind``)."""
    genesis = Genesis.single(FAUCET.public)
    quorum = [key.public for key in KEYS]
    api_ports = [free_port() for _ in KEYS]
    peers = {i: f"127.0.0.1:{port}" for i, port in enumerate(api_ports)}
    limits = replace(ServerLimits(), catch_up_metadata_s=2.0)
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
                compaction_lag_s=6.0,  # longer than a catch-up takes
                limits=limits,
            )
            nodes.append(kinds.get(i, ServerNode)(config, key, quorum, genesis))
        runners = []
        for node in nodes:
            runner = web.AppRunner(make_app(node), access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", node.config.server_port).start()
            runners.append(runner)
        runs = [asyncio.create_task(node.run()) for node in nodes[:BEHIND]]
        try:
            yield nodes, runs
        finally:
            for run in runs:
                run.cancel()
            await asyncio.gather(*runs, return_exceptions=True)
            for runner in runners:
                await runner.cleanup()


async def start_behind(nodes: list[ServerNode], runs: list[asyncio.Task[None]]) -> ServerNode:
    """Once servers 0 and 1 compacted past round 2, start server 2: it must catch up."""
    ahead = nodes[0]
    await wait_for(
        lambda: ahead.view.status()["compacted_round"] >= 2,
        "servers 0 and 1 to compact past round 2",
        runs,
    )
    runs.append(asyncio.create_task(nodes[BEHIND].run()))
    behind = nodes[BEHIND]
    newest = ahead.view.status()["certified_round"] or 0
    await wait_for(
        lambda: (behind.view.status()["certified_round"] or 0) >= newest + 2,
        "server 2 to catch up and certify with the others",
        runs,
    )
    return behind


def test_a_lying_first_answer_does_not_stop_a_catch_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="scryp.server.node")

    async def scenario() -> None:
        async with cluster(tmp_path, {LIAR: LyingServer, SLOW: SlowServer}) as (nodes, runs):
            await start_behind(nodes, runs)
        messages = [r.getMessage() for r in caplog.records]
        assert any(f"from torrent {JUNK_V1.hex()}" in m for m in messages), "the lie was tried"
        assert any("caught up" in m for m in messages)

    asyncio.run(scenario())


def test_a_server_that_caught_up_knows_what_the_skipped_rounds_accepted(tmp_path: Path) -> None:
    """GET /tx after a catch-up (protocol §6.5): a payment certified while the server was
    down is "accepted" there too, learned from the skipped rounds' transactions and checked
    by replaying them to the state Raft named."""

    async def scenario() -> None:
        async with cluster(tmp_path, {}) as (nodes, runs):
            ahead = nodes[0]
            await wait_for(lambda: ahead.driver is not None, "server 0 to start", runs)
            tx = Transaction.create(FAUCET, KEYS[2].public, 5, int(time.time() * 1000))
            await wait_for(lambda: ahead.view.submit([tx.encode()]) is None, "a leader", runs)
            await wait_for(lambda: ahead.view.tx(tx.tx_id) is not None, "the payment", runs)
            behind = await start_behind(nodes, runs)
            await wait_for(
                lambda: behind.view.tx(tx.tx_id) is not None, "server 2 to know the payment", runs
            )
            found = behind.view.tx(tx.tx_id)
            assert found is not None and found.status.outcome.accepted

    asyncio.run(scenario())
