"""Following the quorum into the archive, round after round (protocol §10.8).

Each step reads the servers' pointers (verified against ``.keys``; the highest
majority-certified round, ``scryp.client.verify.choose_certified``), lists the rounds it lacks
from the servers' ``GET /rounds`` (their API addresses come from the verified pointers), and
for each one in order, once its certificate verifies against ``.keys``
(``scryp.core.listing.certified_round``), fetches its ``transactions`` from the swarm under
the certified v2 infohash (checkpoints: every file, and ``balances`` must hash to the
certified state). It keeps seeding what it fetched, and writes the entry only then.

Invariant: the archive holds no round it could not check against a majority certificate. A
round the servers no longer list (the archive was down longer than they keep rounds) is a
**gap**: logged as an error, and the next round is archived as a checkpoint so a replay can
start again there; the archive never fills a gap with unchecked data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from scryp.archive.store import Archived, ArchiveStore
from scryp.client import servers
from scryp.client.network import api_allowed, api_url
from scryp.client.verify import choose_certified
from scryp.core import snapshot
from scryp.core.listing import ListedRound, certified_round
from scryp.core.tx import TX_BYTES
from scryp.errors import NotAvailable, RemoteError
from scryp.swarm import Swarm

log = logging.getLogger("scryp.archive")

FETCHES_PARALLEL_MAX = 8


@dataclass(frozen=True, slots=True)
class ArchiveConfig:
    quorum: tuple[bytes, ...]
    checkpoint_every: int = 100  # rounds; round 0 (the genesis) is always one
    network: bytes | None = None  # None: the network the certified pointers name
    servers: tuple[str, ...] = ()  # API URLs asked besides those the pointers name
    poll_s: float = 1.0
    fetch_timeout_s: float = 30.0


class Archive:
    def __init__(self, swarm: Swarm, store: ArchiveStore, config: ArchiveConfig) -> None:
        self.swarm = swarm
        self.store = store
        self.config = config
        self.held: dict[int, Archived] = {}
        self.network = config.network
        self.gaps: list[tuple[int, int]] = []  # rounds first..last the archive could not get

    def files_of(self, archived: Archived) -> tuple[str, ...]:
        return snapshot.ROUND_FILES if archived.checkpoint else (snapshot.TRANSACTIONS,)

    async def resume(self) -> None:
        """Seed again every round on disk (after a restart)."""
        self.held = await asyncio.to_thread(self.store.load)
        for archived in self.held.values():
            await self.swarm.seed_files(
                archived.info_dict, self.store.rounds, self.files_of(archived)
            )
            if self.network is None:
                self.network = bytes.fromhex(str(archived.entry["network"]))
        log.info("archive: seeding %d rounds from disk", len(self.held))

    async def step(self) -> int:
        """One poll: archive every certified round not held yet; how many were added."""
        records, refused = await self.swarm.get_pointers(self.config.quorum)
        for public, error in refused.items():
            log.warning("refused pointer of %s: %s", public.hex()[:16], error)
        chosen = choose_certified(records, self.config.quorum, self.network)
        if chosen is None:
            return 0
        network = self.network = chosen.record.network
        apis = list(self.config.servers)
        for record in records.values():
            try:
                url = api_url(record.api) if record.api else ""
            except ValueError:
                continue
            if url and api_allowed(url, self.swarm.config.network):
                apis.append(url)
        apis = list(dict.fromkeys(apis))
        first = max(self.held, default=-1) + 1
        if first > chosen.round:
            return 0
        listing = await servers.round_listing(apis, first, chosen.round)
        peers = await _torrent_peers(apis)
        wanted: list[tuple[ListedRound, bool]] = []
        for number in range(first, chosen.round + 1):
            entry = listing.get(number)
            if entry is None:
                continue
            try:
                listed = certified_round(entry, network, self.config.quorum)
            except RemoteError as error:
                log.warning("round %d: listing refused: %s", number, error)
                break  # not certified yet (or a lie): ask again next poll
            previous = wanted[-1][0].round if wanted else first - 1
            if number != previous + 1:
                self.gaps.append((previous + 1, number - 1))
                log.error("archive gap: rounds %d..%d no longer listed", previous + 1, number - 1)
            gap = number != previous + 1
            wanted.append((listed, gap or number % self.config.checkpoint_every == 0))
        added = 0
        for start in range(0, len(wanted), FETCHES_PARALLEL_MAX):
            chunk = wanted[start : start + FETCHES_PARALLEL_MAX]
            results = await asyncio.gather(
                *(self._fetch(listed, checkpoint, peers) for listed, checkpoint in chunk),
                return_exceptions=True,
            )
            for (listed, checkpoint), result in zip(chunk, results, strict=True):
                if isinstance(result, (RemoteError, NotAvailable)):
                    log.warning("round %d not archived yet: %s", listed.round, result)
                    return added
                if isinstance(result, BaseException):
                    raise result
                entry = {**listed.as_json(), "transactions": result, "checkpoint": checkpoint}
                entry["network"] = network.hex()
                info = self.swarm.info_dict(listed.infohash)
                self.held[listed.round] = await asyncio.to_thread(
                    self.store.add, listed.round, entry, info
                )
                added += 1
        if added:
            log.info("archived rounds up to %d", max(self.held))
        return added

    async def _fetch(
        self, listed: ListedRound, checkpoint: bool, peers: Sequence[tuple[str, int]]
    ) -> int:
        """Fetch (and keep seeding) a round's files under its certified v2 infohash; the
        number of transactions it holds."""
        result = await self.swarm.fetch(
            listed.infohash,
            self.store.rounds,
            timeout_s=self.config.fetch_timeout_s,
            files=None if checkpoint else [snapshot.TRANSACTIONS],
            peers=peers,
            expect_name=snapshot.round_dir_name(listed.round),
            expect_infohash_v2=listed.infohash_v2,
            expect_state_root=listed.state_root if checkpoint else None,
        )
        size = (result.round_dir / snapshot.TRANSACTIONS).stat().st_size
        return size // TX_BYTES

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.step()
            except (RemoteError, NotAvailable) as error:
                log.warning("archive step: %s", error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.config.poll_s)


async def _torrent_peers(apis: Sequence[str]) -> list[tuple[str, int]]:
    """The servers' BitTorrent ports, from their ``/status``, to dial besides the DHT."""
    found = []
    for api, status in zip(apis, await servers.statuses(apis), strict=True):
        port = status.get("torrent_port") if status else None
        if isinstance(port, int):
            found.append((api.removeprefix("http://").rpartition(":")[0], port))
    return found
