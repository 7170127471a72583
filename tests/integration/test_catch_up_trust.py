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
from dataclasses import replace
from pathlib import Path

import pytest

from scryp.core.certificate import Statement
from scryp.core.tx import Transaction
from scryp.core.wire import PeerFrame, Share, encode_frame
from scryp.server.config import ServerLimits
from scryp.server.node import ServerNode

from .inprocess import FAUCET, KEYS, cluster, wait_for

pytestmark = pytest.mark.slow

BEHIND = 2
LIAR, SLOW = 1, 0
SLOW_S = 1.5
CONFIG = {
    "compaction_lag_s": 6.0,  # longer than a catch-up takes
    "limits": replace(ServerLimits(), catch_up_metadata_s=2.0),
}
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
        kinds = {LIAR: LyingServer, SLOW: SlowServer}
        async with cluster(tmp_path, kinds, BEHIND, **CONFIG) as (nodes, runs):
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
        async with cluster(tmp_path, {}, BEHIND, **CONFIG) as (nodes, runs):
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
