"""A payment whose forward to the leader is lost is sent again until applied (protocol §9.3).

Three real in-process ``ServerNode``s (real libtorrent sessions, real peer links on 127.0.0.1,
a private DHT). Every server drops the first forward it sends, as a full link queue, a frame
older than 2 s or a deposed leader would. A payment posted to a follower must still be applied
(found by the BlockChat experiment: payments taken with 202 were never applied nor refused).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from scryp.core.tx import Transaction
from scryp.core.wire import Forward, PeerFrame
from scryp.server.node import ServerNode

from .inprocess import FAUCET, KEYS, cluster, wait_for

pytestmark = pytest.mark.slow


class LosesFirstForward(ServerNode):
    lost = 0

    def send_frame(self, peer: int, frame: PeerFrame) -> None:
        if isinstance(frame, Forward) and not self.lost:
            self.lost += 1
            return
        super().send_frame(peer, frame)


def test_a_lost_forward_is_sent_again_and_applied(tmp_path: Path) -> None:
    async def scenario() -> None:
        kinds: dict[int, type[ServerNode]] = {i: LosesFirstForward for i in range(3)}
        async with cluster(tmp_path, kinds, 3) as (nodes, runs):
            await wait_for(lambda: nodes[0].view.status()["leader"] in (0, 1, 2), "a leader", runs)
            leader = nodes[0].view.status()["leader"]
            follower = nodes[(leader + 1) % 3]
            assert isinstance(follower, LosesFirstForward)
            tx = Transaction.create(FAUCET, KEYS[1].public, 9, int(time.time() * 1000))
            assert follower.view.submit([tx.encode()]) is None
            await wait_for(lambda: follower.lost == 1, "the forward to be lost", runs)
            await wait_for(lambda: follower.view.tx(tx.tx_id) is not None, "the payment", runs)
            found = follower.view.tx(tx.tx_id)
            assert found is not None and found.status.outcome.accepted

    asyncio.run(scenario())
