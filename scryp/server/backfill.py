"""After a catch-up, learn which payments the skipped rounds accepted (protocol §6.5, §9.5).

A server that caught up from round R never applied rounds L+1..R (L: the newest round it
sealed itself), so it cannot say what became of their payments. Their ``transactions`` files
list the payments they accepted, in order, and the other servers still seed them (a minute of
rounds, protocol §8.9). So: list the rounds from a peer's API, fetch each round's
``transactions`` from the swarm, and **replay** them onto round L's balances (which this server
wrote and checked itself): only if the result gives round R's state root (which Raft named)
are the payments taken as accepted. A peer that lists a wrong torrent, or a round the swarm no
longer has, leaves those outcomes unknown (GET /tx answers 404), never wrong. Refusals in the
skipped rounds stay unknown here: the files hold only acceptances.

**Durable** (docs/storage.md §5): before fetching anything, the backfill writes what it owes
into its work directory, ``DATA/backfill-R/``: ``owed`` (the two rounds' Raft metadata) and
round L's ``balances`` (a copy: L is pruned from the rounds on disk within seconds of a
catch-up). A server killed mid-backfill finds the directory on its next start and resumes
(``owed_backfills``); the directory goes once the backfill ends, filled in or not.
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
from scryp.core.raft.entries import SNAPSHOT_META_BYTES, decode_snapshot_meta, encode_snapshot_meta
from scryp.core.replay import replay_to
from scryp.core.tx import Transaction, decode_many
from scryp.errors import MalformedInput, NotAvailable
from scryp.keyfile import atomic_write
from scryp.server import state_at
from scryp.server.rounds import RoundStore
from scryp.swarm import Swarm

HTTP_TIMEOUT_S = 5.0
ROUND_TXS_MAX = 1 << 20
ROUNDS_MAX = 100  # one listing (GET /rounds): a longer absence leaves the rest unknown
OWED = "owed"  # in the work directory: since's and to's Raft metadata
SINCE_BALANCES = "since-balances"
WORK_PREFIX = "backfill-"


def owed_backfills(data_dir: Path) -> list[tuple[SnapshotMeta, SnapshotMeta]]:
    """The backfills a previous run of this server started and did not end (blocking).
    A work directory without a whole ``owed`` file never started: it is removed."""
    owed = []
    for work_dir in sorted(data_dir.glob(f"{WORK_PREFIX}*")):
        try:
            data = (work_dir / OWED).read_bytes()
            since = decode_snapshot_meta(data[:SNAPSHOT_META_BYTES])
            to = decode_snapshot_meta(data[SNAPSHOT_META_BYTES:])
            if not (work_dir / SINCE_BALANCES).is_file():
                raise MalformedInput("no balances")
        except (OSError, MalformedInput):
            shutil.rmtree(work_dir, ignore_errors=True)
            continue
        owed.append((since, to))
    return owed


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
        *,
        checkpoint_every: int,
    ) -> None:
        self.checkpoint_every = checkpoint_every
        self.network, self.quorum = trust  # what a listed round's certificate must verify for
        self.swarm = swarm
        self.rounds = rounds
        self.work_dir = work_dir
        self.apis = apis  # "host:port" of the other servers' APIs known now

    async def accepted(
        self, since: SnapshotMeta, to: SnapshotMeta, timeout_s: float
    ) -> list[Accepted]:
        """The payments rounds ``since.round``+1 .. ``to.round`` accepted, checked by replay.
        Ends the backfill, filled in or not (its work directory is removed), unless the
        server stops meanwhile."""
        try:
            found = await self._accepted(since, to, timeout_s)
        except asyncio.CancelledError:
            raise  # the server is stopping: its next start resumes this backfill
        except BaseException:
            await asyncio.to_thread(shutil.rmtree, self.work_dir, True)
            raise
        await asyncio.to_thread(shutil.rmtree, self.work_dir, True)
        return found

    def owe(self, since: SnapshotMeta, to: SnapshotMeta) -> None:
        """Write down durably what this backfill owes (blocking), unless a run before a
        restart did; round ``since`` must still be on disk the first time."""
        if (self.work_dir / OWED).is_file():
            return
        if self.rounds.get(since.round) is None:
            raise NotAvailable(f"round {since.round} is no longer on disk")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        balances = state_at.flat_at(self.rounds, since.round, self.checkpoint_every)
        atomic_write(self.work_dir / SINCE_BALANCES, balances)
        atomic_write(self.work_dir / OWED, encode_snapshot_meta(since) + encode_snapshot_meta(to))

    async def _accepted(
        self, since: SnapshotMeta, to: SnapshotMeta, timeout_s: float
    ) -> list[Accepted]:
        first, last = since.round + 1, to.round
        if last - first + 1 > ROUNDS_MAX:
            raise NotAvailable(f"{last - first + 1} rounds skipped: too many to fill in")
        await asyncio.to_thread(self.owe, since, to)
        listing, torrent_peers = await self._listing(first, last)
        by_round: list[tuple[int, list[Transaction]]] = []
        for number in range(first, last):
            txs = await self._fetched(number, listing, torrent_peers, timeout_s)
            by_round.append((number, txs))
        # Reading, decoding and checking signatures of up to 100 rounds: off the event loop.
        if self.rounds.get(last) is None:
            raise NotAvailable(f"round {last} is no longer on disk")
        local = await asyncio.to_thread(self.rounds.read, last, snapshot.TRANSACTIONS)
        by_round.append((last, await asyncio.to_thread(decode_many, local, ROUND_TXS_MAX)))
        old = await asyncio.to_thread((self.work_dir / SINCE_BALANCES).read_bytes)
        txs = [tx for _, round_txs in by_round for tx in round_txs]
        await asyncio.to_thread(replay_to, old, txs, to.state_root)
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
            return []  # if that was a lie, the replay does not reach the state root
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
