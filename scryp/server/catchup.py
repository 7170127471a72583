"""Which torrent to catch up from: the servers' answers naming a round (protocol §9.5).

A server far behind asks every peer for its share of the round the leader named; each
verified share names the round's torrent (v1 and v2 infohashes) and where the peer seeds it.
A share is signed, but a server can sign a lie: another state (refused here: the leader's
metadata names the state), or the right state with a torrent that does not hold it, or that
holds the right balances beside a forged ``window`` (the state root covers only the balances,
so no fetch could notice; the restored server would then decide duplicates differently from
the others). So a torrent is trusted only when a majority of the quorum name it (their shares
are a certificate's worth of signed statements) or the leader that asked for the catch-up
names it (Raft trusts the leader's log already). The most named is tried first; if a fetch
fails the next trusted one is. One lying server that is not the leader cannot steer a
catch-up; a slow one delays it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from scryp.core.wire import Share

log = logging.getLogger(__name__)

Torrent = tuple[bytes, bytes]  # (v1, v2) infohash


@dataclass(slots=True)
class Candidates:
    """Verified shares of one round, as they arrive."""

    round: int
    state_root: bytes  # what the leader's metadata names: the only state we accept
    leader: int | None  # the server whose CatchUp started this: trusted alone
    majority: int  # of the quorum: that many naming one torrent certify it
    named: dict[Torrent, list[tuple[int, Share]]] = field(default_factory=dict)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, peer: int, share: Share) -> None:
        if share.round != self.round:
            return
        if share.state_root != self.state_root:
            log.warning(
                "server %d names round %d with state %s, the leader %s: ignored",
                peer,
                share.round,
                share.state_root.hex()[:16],
                self.state_root.hex()[:16],
            )
            return
        if any(sender == peer for named in self.named.values() for sender, _ in named):
            return  # one torrent per server: a liar naming many gets one try, not many
        self.named.setdefault((share.infohash, share.infohash_v2), []).append((peer, share))
        self.arrived.set()

    def trusted(self, tried: set[Torrent]) -> list[tuple[Torrent, list[tuple[int, Share]]]]:
        """The torrents not tried yet that a majority or the leader name, most named first."""
        return sorted(
            (
                (torrent, named)
                for torrent, named in self.named.items()
                if torrent not in tried
                and (
                    len(named) >= self.majority or any(sender == self.leader for sender, _ in named)
                )
            ),
            key=lambda item: -len(item[1]),
        )

    async def next_trusted(
        self, tried: set[Torrent], timeout_s: float
    ) -> tuple[Torrent, list[tuple[int, Share]]] | None:
        """The best trusted torrent not tried yet, waiting up to ``timeout_s`` for answers
        that make one trusted; None at the deadline."""
        try:
            async with asyncio.timeout(timeout_s):
                while not (trusted := self.trusted(tried)):
                    self.arrived.clear()
                    await self.arrived.wait()
        except TimeoutError:
            return None
        return trusted[0]

    async def first(self, timeout_s: float) -> bool:
        """Wait until some server names a torrent of the right state; False at the deadline."""
        try:
            async with asyncio.timeout(timeout_s):
                while not self.named:
                    self.arrived.clear()
                    await self.arrived.wait()
        except TimeoutError:
            return False
        return True

    async def more(self, grace_s: float, quorum_size: int) -> None:
        """Give the other servers ``grace_s`` to answer too (ends early once all have)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        while sum(len(s) for s in self.named.values()) < quorum_size - 1:
            left_s = deadline - loop.time()
            if left_s <= 0:
                return
            self.arrived.clear()
            try:
                async with asyncio.timeout(left_s):  # not wait_for: see server.publisher
                    await self.arrived.wait()
            except TimeoutError:
                return
