"""After a catch-up, learn which payments the skipped rounds accepted (protocol §6.5, §9.5).

A server that caught up from round R never applied rounds L+1..R (L: the newest round it
sealed itself), so it cannot say what became of their payments. Their ``transactions`` files
list the payments they accepted, in order, and the other servers still seed them (a minute of
rounds, protocol §8.9). So: list the rounds from a peer's API, fetch each round's
``transactions`` from the swarm, and **replay** them onto round L's balances (which this server
wrote and checked itself): only if the result hashes to round R's state hash (which Raft named)
are the payments taken as accepted. A peer that lists a wrong torrent, or a round the swarm no
longer has, leaves those outcomes unknown (GET /tx answers 404), never wrong. Refusals in the
skipped rounds stay unknown here: the files hold only acceptances.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from scryp.core import snapshot
from scryp.core.listing import certified_round
from scryp.core.raft import SnapshotMeta
from scryp.core.replay import replay_to
from scryp.core.tx import Transaction, decode_many
from scryp.errors import NotAvailable
from scryp.server.rounds import RoundStore
from scryp.swarm import Swarm

HTTP_TIMEOUT_S = 5.0
ROUND_TXS_MAX = 1 << 20
ROUNDS_MAX = 100  # one listing (GET /rounds): a longer absence leaves the rest unknown


@dataclass(frozen=True, slots=True)
class Accepted:
    tx_id: bytes
    timestamp_ms: int
    round: int


class Backfill:
    def __init__(
        self,
        swarm: Swarm,
        rounds: RoundStore,
        work_dir: Path,
        apis: Callable[[], list[str]],
        trust: tuple[bytes, Sequence[bytes]],
    ) -> None:
        self.network, self.quorum = trust  # what a listed round's certificate must verify for
        self.swarm = swarm
        self.rounds = rounds
        self.work_dir = work_dir
        self.apis = apis  # "host:port" of the other servers' APIs known now

    async def accepted(
        self, since: SnapshotMeta, to: SnapshotMeta, timeout_s: float
    ) -> list[Accepted]:
        """The payments rounds ``since.round``+1 .. ``to.round`` accepted, checked by replay."""
        if self.rounds.get(since.round) is None:
            raise NotAvailable(f"round {since.round} is no longer on disk")
        first, last = since.round + 1, to.round
        if last - first + 1 > ROUNDS_MAX:
            raise NotAvailable(f"{last - first + 1} rounds skipped: too many to fill in")
        listing, torrent_peers = await self._listing(first, last)
        by_round: list[tuple[int, list[Transaction]]] = []
        try:
            for number in range(first, last):
                txs = await self._fetched(number, listing, torrent_peers, timeout_s)
                by_round.append((number, txs))
        finally:
            shutil.rmtree(self.work_dir, ignore_errors=True)
        # Reading, decoding and checking signatures of up to 100 rounds: off the event loop.
        local = await asyncio.to_thread(self.rounds.read, last, snapshot.TRANSACTIONS)
        by_round.append((last, await asyncio.to_thread(decode_many, local, ROUND_TXS_MAX)))
        old = await asyncio.to_thread(self.rounds.read, since.round, snapshot.BALANCES)
        txs = [tx for _, round_txs in by_round for tx in round_txs]
        await asyncio.to_thread(replay_to, old, txs, to.state_hash)
        return [Accepted(tx.tx_id, tx.timestamp_ms, n) for n, txs in by_round for tx in txs]

    async def _listing(
        self, first: int, last: int
    ) -> tuple[dict[int, dict[str, Any]], list[tuple[str, int]]]:
        """Some peer's listing of rounds first..last-1, and where the peers seed."""
        timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S)
        peers: list[tuple[str, int]] = []
        found: dict[int, dict[str, Any]] = {}
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for api in self.apis():
                try:
                    async with session.get(f"http://{api}/rounds?from={first}") as response:
                        body = await response.json()
                    async with session.get(f"http://{api}/status") as response:
                        status = await response.json()
                    port = status.get("torrent_port") if isinstance(status, dict) else None
                except (aiohttp.ClientError, TimeoutError, ValueError):
                    continue
                if isinstance(port, int):
                    peers.append((api.rpartition(":")[0], port))
                listed = _rounds_of(body)
                if all(n in listed for n in range(first, last)) and not found:
                    found = listed
        if not found and last > first:
            raise NotAvailable(f"no peer lists rounds {first}..{last - 1}")
        return found, peers

    async def _fetched(
        self,
        number: int,
        listing: dict[int, dict[str, Any]],
        peers: Sequence[tuple[str, int]],
        timeout_s: float,
    ) -> list[Transaction]:
        if listing[number].get("transactions") == 0:
            return []  # if that was a lie, the replay does not reach the state hash
        listed = certified_round(listing[number], self.network, self.quorum)
        result = await self.swarm.fetch(
            listed.infohash,
            self.work_dir,
            timeout_s=timeout_s,
            files=[snapshot.TRANSACTIONS],
            peers=peers,
            expect_name=snapshot.round_dir_name(number),
            # As the majority certificate states it: the transactions fetched are the ones
            # the servers certified, not a peer's say-so (a file that swaps a refused payment
            # for an accepted one of the same effect would replay fine).
            expect_infohash_v2=listed.infohash_v2,
        )
        try:
            data = (result.round_dir / snapshot.TRANSACTIONS).read_bytes()
        finally:
            await self.swarm.remove(listed.infohash)
        return decode_many(data, ROUND_TXS_MAX)


def _rounds_of(body: Any) -> dict[int, dict[str, Any]]:
    listed = body.get("rounds") if isinstance(body, dict) else None
    if not isinstance(listed, list):
        return {}
    return {
        entry["round"]: entry
        for entry in listed
        if isinstance(entry, dict) and isinstance(entry.get("round"), int)
    }
