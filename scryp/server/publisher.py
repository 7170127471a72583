"""Keeping a server's BEP 44 pointer alive in the DHT (protocol §8.3).

Owns: ``Publisher``, which puts the newest pointer record at once and again every
``republish_s`` through the session's put (``Swarm.put_pointer``), and, for each new record
(``offer``), stores it straight on the DHT nodes the session knows (``Swarm.put_direct``,
protocol §8.3.4) while libtorrent's own put walks the DHT in ``run``; it never touches
libtorrent itself. Invariant: a pointer is republished at least hourly, since DHT nodes may
forget items after two hours.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from scryp.core.pointer import SALT
from scryp.crypto import KeyPair
from scryp.errors import NotAvailable, invariant
from scryp.swarm import PutResult, Swarm

log = logging.getLogger(__name__)


class Publisher:
    """Keeps one BEP 44 pointer alive: puts it at once, and again every ``republish_s``.

    DHT nodes forget items after about two hours (protocol §8.3), so ``run`` republishes at
    least hourly. Run it as a task of the owner's TaskGroup; cancel it to stop.
    """

    REPUBLISH_MAX_S = 3600.0

    def __init__(
        self,
        swarm: Swarm,
        key: KeyPair,
        republish_s: float = 1800.0,
        salt: bytes = SALT,
        on_put: Callable[[PutResult], None] | None = None,
    ) -> None:
        if not 0 < republish_s <= self.REPUBLISH_MAX_S:
            raise ValueError(f"republish_s must be in (0, {self.REPUBLISH_MAX_S:.0f}]")
        self.swarm = swarm
        self.key = key
        self.republish_s = republish_s
        self.salt = salt
        self.value: bytes | None = None
        self.puts = 0
        self.put_failures = 0  # puts that timed out or reached no DHT node (/metrics)
        self.last: PutResult | None = None
        self.on_put = on_put
        self.direct_puts = 0  # records some known node took at once (protocol §8.3.4)
        self.last_direct_took = 0  # known nodes that took the newest record
        self._changed = asyncio.Event()
        self._walk_wanted = False  # offer() leaves libtorrent's put to run()

    async def publish(self, value: bytes) -> PutResult:
        """Put ``value`` now (ValueError if over 1000 bytes) and keep republishing it."""
        self.value = value
        self._changed.set()
        return await self._put()

    async def offer(self, value: bytes) -> int:
        """Store ``value`` on the known DHT nodes now (how many took it) and have ``run`` put
        it through libtorrent's walk next, so that a slow walk (15 s when a node ignores
        BEP 44) never holds up the next record: ``run`` always puts the newest one."""
        self.value = value
        self._walk_wanted = True
        self._changed.set()
        took = await self.swarm.put_direct(self.key, value, self.salt)
        if took:
            self.direct_puts += 1
        self.last_direct_took = took
        return took

    async def _put(self) -> PutResult:
        invariant(self.value is not None, "put before anything was published")
        assert self.value is not None
        try:
            result = await self.swarm.put_pointer(self.key, self.value, self.salt)
        except NotAvailable:
            self.put_failures += 1
            raise
        self.puts += 1
        self.last = result
        if self.on_put is not None:
            self.on_put(result)
        if result.num_success == 0:
            self.put_failures += 1
            log.warning("pointer put reached no DHT node; retrying in %.0f s", self.republish_s)
        return result

    async def run(self) -> None:
        while True:
            if not self._walk_wanted:
                self._changed.clear()
                try:
                    # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
                    # cancellation that lands as a publish wakes it, and this task would then
                    # hold its TaskGroup open for republish_s (seen: a server that would not
                    # stop).
                    async with asyncio.timeout(self.republish_s):
                        await self._changed.wait()
                except TimeoutError:
                    self._walk_wanted = self.value is not None
            if self._walk_wanted:
                self._walk_wanted = False
                try:
                    await self._put()
                except NotAvailable as error:  # a put timed out, or the swarm is closing
                    task = asyncio.current_task()
                    if task is not None and task.cancelling():
                        raise asyncio.CancelledError from error  # stopping: not a failed put
                    # With the newest record already on known nodes (§8.3.4), a slow walk (a
                    # node ignoring BEP 44 holds it 15 s) is routine, not a problem.
                    level = logging.INFO if self.last_direct_took else logging.WARNING
                    log.log(level, "pointer put: %s", error)
