"""Which torrent to catch up from: the servers' answers naming a round (protocol §9.5).

A server far behind asks every peer for its share of the round the leader named; each
verified share names the round's torrent (v1 and v2 infohashes) and where the peer seeds it.
A share is signed, but a server can sign a lie: another state (refused here: the leader's
metadata names the state), or the right state with a torrent that does not hold it (caught by
the fetch, which checks the v2 infohash and the state hash). So the first answer is not
trusted blindly: answers are gathered for a moment, the torrent most servers name is tried
first, and if a fetch fails the next is tried. One lying or slow server can delay a catch-up,
not stop it.
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
    state_hash: bytes  # what the leader's metadata names: the only state we accept
    named: dict[Torrent, list[tuple[int, Share]]] = field(default_factory=dict)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, peer: int, share: Share) -> None:
        if share.round != self.round:
            return
        if share.state_hash != self.state_hash:
            log.warning(
                "server %d names round %d with state %s, the leader %s: ignored",
                peer,
                share.round,
                share.state_hash.hex()[:16],
                self.state_hash.hex()[:16],
            )
            return
        if any(sender == peer for named in self.named.values() for sender, _ in named):
            return  # one torrent per server: a liar naming many gets one try, not many
        self.named.setdefault((share.infohash, share.infohash_v2), []).append((peer, share))
        self.arrived.set()

    def ranked(self, tried: set[Torrent]) -> list[tuple[Torrent, list[tuple[int, Share]]]]:
        """The torrents not tried yet, the one most servers name first (then the earliest)."""
        waiting = [(t, s) for t, s in self.named.items() if t not in tried]
        return sorted(waiting, key=lambda item: -len(item[1]))

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
