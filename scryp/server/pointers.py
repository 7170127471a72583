"""Reading the other servers' DHT pointers: their addresses (protocol §9.6) and a log line
for each pointer, so an operator can copy an infohash into the downloader (§9.12).

Owns: ``PointerWatch``, one task of the server's TaskGroup. It gets every other server's
pointer through the swarm (``Swarm.get_pointers``, which verifies each against ``.keys``) every
``poll_s`` while one is unseen or an address unknown, every ``settled_s`` after. It learns the
API address of each server not given with ``--peer`` and logs each server's pointer (round, v1
infohash in hex, state root) the first time it sees one and again once every ``log_period_s``.

Invariants: only verified records are used; a record of another network teaches nothing; an
address the network mode does not allow (a public one in loopback mode, an unspecified one in
any) is never learnt (protocol §8.8); a refused item is the publisher's fault, logged as a
warning and otherwise ignored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from scryp.core.pointer import PointerRecord, certified
from scryp.hostport import split_hostport
from scryp.netmode import Mode, host_allowed
from scryp.swarm import Swarm

log = logging.getLogger(__name__)

POLL_S = 5.0  # while a pointer is unseen or an address unknown
SETTLED_S = 60.0  # after
LOG_PERIOD_S = 60.0  # each server's pointer is logged at least this often once seen


class PointerWatch:
    def __init__(
        self,
        quorum: Sequence[bytes],
        index: int,
        network: bytes,
        given: Sequence[int],
        *,
        poll_s: float = POLL_S,
        settled_s: float = SETTLED_S,
        log_period_s: float = LOG_PERIOD_S,
        get_timeout_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.quorum = list(quorum)
        self.index = index
        self.network = network
        self.given = frozenset(given)  # servers whose address came with --peer
        self.poll_s = poll_s
        self.settled_s = settled_s
        self.log_period_s = log_period_s
        self.get_timeout_s = get_timeout_s
        self.clock = clock
        self.mode = Mode.LOOPBACK  # the swarm's, from run()
        self._unusable: set[str] = set()
        self.addresses: dict[int, str] = {}  # learnt from pointers (--peer ones are not here)
        self.latest: dict[int, PointerRecord] = {}
        self._logged_s: dict[int, float] = {}

    @property
    def others(self) -> list[int]:
        return [i for i in range(len(self.quorum)) if i != self.index]

    def settled(self) -> bool:
        """Every other server's pointer seen, and every address not given learnt."""
        known = self.given | set(self.addresses)
        return all(i in self.latest and i in known for i in self.others)

    async def run(self, swarm: Swarm) -> None:
        self.mode = swarm.config.network
        if not self.others:
            return  # a quorum of one: nobody else to read
        while True:
            await self.poll(swarm)
            await asyncio.sleep(self.settled_s if self.settled() else self.poll_s)  # a period

    async def poll(self, swarm: Swarm) -> None:
        keys = [self.quorum[i] for i in self.others]
        records, refused = await swarm.get_pointers(keys, timeout_s=self.get_timeout_s)
        for public, error in refused.items():
            log.warning("pointer of %s refused: %s", public.hex()[:16], error)
        now_s = self.clock()
        for index in self.others:
            record = records.get(self.quorum[index])
            if record is not None:
                self.learn(index, record, now_s)
            elif now_s - self._logged_s.get(index, -self.log_period_s) >= self.log_period_s:
                self._logged_s[index] = now_s
                log.info("pointer of server %d: none found in the DHT yet", index)

    def _usable(self, api: str) -> bool:
        try:
            host, _ = split_hostport(api)
        except ValueError:
            return False
        return host_allowed(self.mode, host)

    def learn(self, index: int, record: PointerRecord, now_s: float) -> None:
        if record.network != self.network:
            log.warning("pointer of server %d names another network", index)
            return
        if record.api and index not in self.given:
            if self._usable(record.api):
                self.addresses[index] = record.api
            elif record.api not in self._unusable:  # once per address, not every poll
                self._unusable.add(record.api)
                log.warning(
                    "pointer of server %d: address %s not usable in %s mode",
                    index,
                    record.api,
                    self.mode,
                )
        first = index not in self.latest
        self.latest[index] = record
        if first or now_s - self._logged_s.get(index, now_s) >= self.log_period_s:
            self._logged_s[index] = now_s
            log.info(
                "pointer of server %d: round %d infohash %s state %s%s",
                index,
                record.round,
                record.infohash.hex(),
                record.state_root.hex(),
                " certified" if certified(record, self.quorum) else "",
            )
