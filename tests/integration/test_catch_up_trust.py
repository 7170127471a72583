"""Catching up through the swarm past a lying server and a slow one (protocol §9.5).

Three real in-process ``ServerNode``s (real libtorrent sessions, real peer links on 127.0.0.1,
a private DHT). Servers 0 and 1 seal and compact rounds while server 2 is down; then server 2
starts far behind and must fetch a round. The one of them that is not the leader lies: every
share it sends server 2 names a torrent nobody seeds (signed with its real key, so the
signature verifies). The leader is honest but answers server 2 1.5 s late. Taking the first
answer, server 2 would chase the lie forever; trying every answer in turn, it would fetch the
lie first. A lone server that is not the leader is not trusted (§9.5): server 2 must never
fetch the lie, and catch up from the leader's torrent.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
import time
from dataclasses import replace
from pathlib import Path

import pytest

from scryp.core import snapshot
from scryp.core.certificate import Statement
from scryp.core.genesis import Genesis
from scryp.core.raft import SnapshotMeta
from scryp.core.tx import Transaction
from scryp.core.wire import PeerFrame, Share, encode_frame
from scryp.server.backfill import Backfill, owed_backfills
from scryp.server.config import ServerLimits
from scryp.server.node import ServerNode

from .inprocess import FAUCET, KEYS, cluster, wait_for

pytestmark = pytest.mark.slow

BEHIND = 2
SLOW_S = 1.5
CONFIG = {
    "compaction_lag_s": 6.0,  # longer than a catch-up takes
    "limits": replace(ServerLimits(), catch_up_metadata_s=2.0),
}
JUNK_V1, JUNK_V2 = hashlib.sha1(b"junk").digest(), hashlib.sha256(b"junk").digest()


class MisbehavingServer(ServerNode):
    """Lies to server 2 (shares naming a junk torrent, validly signed) or answers it late,
    as the test decides once it knows which server leads."""

    behaviour: str | None = None

    def send_frame(self, peer: int, frame: PeerFrame) -> None:
        if peer == BEHIND and isinstance(frame, Share) and self.behaviour == "lie":
            statement = Statement(self.network, frame.round, frame.state_root, JUNK_V2)
            frame = replace(
                frame, infohash=JUNK_V1, infohash_v2=JUNK_V2, signature=statement.sign(self.key)
            )
        if peer == BEHIND and isinstance(frame, Share) and self.behaviour == "slow":
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


async def paid_while_behind(ahead: ServerNode, runs: list[asyncio.Task[None]]) -> Transaction:
    """A payment the running servers decided while server 2 is down."""
    await wait_for(lambda: ahead.driver is not None, "server 0 to start", runs)
    tx = Transaction.create(FAUCET, KEYS[2].public, 5, int(time.time() * 1000))
    await wait_for(lambda: ahead.view.submit([tx.encode()]) is None, "a leader", runs)
    await wait_for(lambda: ahead.view.tx(tx.tx_id) is not None, "the payment", runs)
    return tx


def test_a_lying_first_answer_does_not_stop_a_catch_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="scryp.server.node")

    async def scenario() -> None:
        kinds: dict[int, type[ServerNode]] = {0: MisbehavingServer, 1: MisbehavingServer}
        async with cluster(tmp_path, kinds, BEHIND, **CONFIG) as (nodes, runs):
            await wait_for(lambda: nodes[0].view.status()["leader"] in (0, 1), "a leader", runs)
            leader = nodes[0].view.status()["leader"]
            for i in (0, 1):
                node = nodes[i]
                assert isinstance(node, MisbehavingServer)
                node.behaviour = "slow" if i == leader else "lie"
            await start_behind(nodes, runs)
        messages = [r.getMessage() for r in caplog.records]
        assert not any(JUNK_V1.hex() in m for m in messages), "a lone liar's torrent was fetched"
        assert any("caught up" in m for m in messages)

    asyncio.run(scenario())


def test_a_server_that_caught_up_knows_what_the_skipped_rounds_accepted(tmp_path: Path) -> None:
    """GET /tx after a catch-up (protocol §6.5): a payment certified while the server was
    down is "accepted" there too, learned from the skipped rounds' transactions and checked
    by replaying them to the state Raft named."""

    async def scenario() -> None:
        async with cluster(tmp_path, {}, BEHIND, **CONFIG) as (nodes, runs):
            tx = await paid_while_behind(nodes[0], runs)
            behind = await start_behind(nodes, runs)
            await wait_for(
                lambda: behind.view.tx(tx.tx_id) is not None, "server 2 to know the payment", runs
            )
            found = behind.view.tx(tx.tx_id)
            assert found is not None and found.status.outcome.accepted

    asyncio.run(scenario())


class CrashesMidBackfill(ServerNode):
    """Writes down the backfill it owes, then "dies" before fetching anything."""

    def start_backfill(self, since: SnapshotMeta, to: SnapshotMeta) -> None:
        assert self.swarm is not None
        work_dir = self.config.data_dir / f"backfill-{to.round}"
        Backfill(
            self.swarm,
            self.rounds,
            work_dir,
            list,
            (self.network, self.quorum),
            checkpoint_every=self.config.checkpoint_every,
        ).owe(since, to)


def test_a_backfill_cut_short_by_a_crash_resumes_on_the_next_start(tmp_path: Path) -> None:
    """Found by the bank test (run 7): a server killed seconds after a catch-up never filled
    in what the skipped rounds accepted. It writes down what it owes, with a copy of its own
    round's balances (pruned from its rounds meanwhile), and its next start resumes."""

    async def scenario() -> None:
        kinds: dict[int, type[ServerNode]] = {BEHIND: CrashesMidBackfill}
        async with cluster(tmp_path, kinds, BEHIND, **CONFIG) as (nodes, runs):
            tx = await paid_while_behind(nodes[0], runs)
            behind = await start_behind(nodes, runs)
            data_dir = behind.config.data_dir
            ((since, _),) = owed_backfills(data_dir)
            assert behind.view.tx(tx.tx_id) is None  # it owes, it does not know
            stopping = runs.pop()
            stopping.cancel()
            await asyncio.gather(stopping, return_exceptions=True)
            # Round L pruned meanwhile (a minute of rounds later, in production): the resumed
            # backfill must replay onto its own copy of L's balances.
            shutil.rmtree(behind.rounds.directory / snapshot.round_dir_name(since.round))
            genesis = Genesis.single(FAUCET.public)  # a node lets its genesis go once booted
            restarted = ServerNode(behind.config, KEYS[BEHIND], behind.quorum, genesis)
            runs.append(asyncio.create_task(restarted.run()))
            await wait_for(
                lambda: restarted.view.tx(tx.tx_id) is not None, "the backfill to resume", runs
            )
            found = restarted.view.tx(tx.tx_id)
            assert found is not None and found.status.outcome.accepted
            await wait_for(lambda: not owed_backfills(data_dir), "the backfill to end", runs)

    asyncio.run(scenario())
