"""Following the quorum into the archive, round after round (protocol §10.8).

Each step reads the servers' pointers (verified against ``.keys``; the highest
majority-certified round, ``scryp.client.verify.choose_certified``), lists the rounds it lacks
from the servers' ``GET /rounds`` (their API addresses come from the verified pointers), and
for each one in order, once its certificate verifies against ``.keys``
(``scryp.core.listing.certified_round``), fetches its ``transactions`` from the swarm under
the certified v2 infohash. It keeps seeding what it fetched, and writes the entry only then.

**Checkpoints** are servers' checkpoint rounds (their torrents hold ``balances``, protocol
§4.4.4, §4.4.8): round 0, then the first one at least K rounds (``checkpoint_every``) after
the archive's last checkpoint, or after a gap. Such a round is fetched whole, and is a
checkpoint only if its torrent (certified: the listing's ``"checkpoint"`` only saves fetching
rounds that say they are not) holds ``balances``, which must give the certified state root.

Invariant: the archive holds no round it could not check against a majority certificate. A
round the servers no longer list (the archive was down longer than they keep rounds) is a
**gap**: logged as an error, and the next servers' checkpoint is archived as a checkpoint so a
replay can start again there; the archive never fills a gap with unchecked data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scryp.archive.store import Archived, ArchiveStore
from scryp.client import servers
from scryp.client.network import pointer_apis
from scryp.client.verify import choose_certified
from scryp.core import snapshot
from scryp.core.buckets import state_root
from scryp.core.listing import ListedRound, certified_round
from scryp.core.tx import TX_BYTES
from scryp.errors import MalformedInput, NotAvailable, RemoteError
from scryp.swarm import FetchFailed, Swarm

log = logging.getLogger("scryp.archive")

FETCHES_PARALLEL_MAX = 8


@dataclass(frozen=True, slots=True)
class ArchiveConfig:
    quorum: tuple[bytes, ...]
    # Rounds at least between the archive's checkpoints, which are servers' checkpoint rounds
    # (round 0, the genesis, always): best a multiple of theirs (protocol §4.4.8).
    checkpoint_every: int = 100
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

    async def resume(self) -> None:
        """Seed again every round on disk (after a restart)."""
        self.held = await asyncio.to_thread(self.store.load)
        for archived in self.held.values():
            await self.swarm.seed_files(archived.info_dict, self.store.rounds, archived.files)
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
        named = pointer_apis(records.values(), self.swarm.config.network)
        apis = list(dict.fromkeys([*self.config.servers, *named]))
        first = max(self.held, default=-1) + 1
        if first > chosen.round:
            return 0
        listing = await servers.round_listing(apis, first, chosen.round)
        peers = await _torrent_peers(apis)
        wanted = self._wanted(listing, first, chosen.round, network)
        added = 0
        for start in range(0, len(wanted), FETCHES_PARALLEL_MAX):
            chunk = wanted[start : start + FETCHES_PARALLEL_MAX]
            results = await asyncio.gather(
                *(self._fetch(listed, whole, peers) for listed, whole in chunk),
                return_exceptions=True,
            )
            for (listed, _), result in zip(chunk, results, strict=True):
                if isinstance(result, (RemoteError, NotAvailable)):
                    log.warning("round %d not archived yet: %s", listed.round, result)
                    return added
                if isinstance(result, BaseException):
                    raise result
                count, checkpoint = result
                entry = {**listed.as_json(), "transactions": count, "checkpoint": checkpoint}
                entry["network"] = network.hex()
                info = self.swarm.info_dict(listed.infohash)
                self.held[listed.round] = await asyncio.to_thread(
                    self.store.add, listed.round, entry, info
                )
                added += 1
        if added:
            log.info("archived rounds up to %d", max(self.held))
        return added

    def _wanted(
        self, listing: dict[int, dict[str, Any]], first: int, last: int, network: bytes
    ) -> list[tuple[ListedRound, bool]]:
        """The certified rounds first..last listed, in order up to the first that is not,
        each with whether to fetch it whole (a checkpoint is due and it may be one)."""
        newest = max((n for n, a in self.held.items() if a.checkpoint), default=None)
        wanted: list[tuple[ListedRound, bool]] = []
        for number in range(first, last + 1):
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
            due = (
                newest is None
                or number - newest >= self.config.checkpoint_every
                or any(end > newest for _, end in self.gaps)
            )
            # The listing's word is not certified: "false" only spares a fetch of the whole.
            whole = due and (number == 0 or entry.get("checkpoint") is not False)
            if whole and (number == 0 or entry.get("checkpoint") is True):
                newest = number
            wanted.append((listed, whole))
        return wanted

    async def _fetch(
        self, listed: ListedRound, whole: bool, peers: Sequence[tuple[str, int]]
    ) -> tuple[int, bool]:
        """Fetch (and keep seeding) a round's ``transactions``, or all its files if
        ``whole``, under its certified v2 infohash: the number of transactions it holds, and
        whether it is a checkpoint (fetched whole, its torrent holds ``balances``, checked
        against the certified state root)."""
        result = await self.swarm.fetch(
            listed.infohash,
            self.store.rounds,
            timeout_s=self.config.fetch_timeout_s,
            files=None if whole else [snapshot.TRANSACTIONS],
            peers=peers,
            expect_name=snapshot.round_dir_name(listed.round),
            expect_infohash_v2=listed.infohash_v2,
        )
        checkpoint = whole and any(p.name == snapshot.BALANCES for p in result.files)
        balances = result.round_dir / snapshot.BALANCES
        if checkpoint and await asyncio.to_thread(_state_root, balances) != listed.state_root:
            await self.swarm.remove(listed.infohash)
            raise FetchFailed(f"round {listed.round}: balances do not give the certified root")
        size = (result.round_dir / snapshot.TRANSACTIONS).stat().st_size
        return size // TX_BYTES, checkpoint

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.step()
            except (RemoteError, NotAvailable) as error:
                log.warning("archive step: %s", error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.config.poll_s)


def _state_root(path: Path) -> bytes | None:
    """The state root of a balances file, or None if it cannot be cut into buckets."""
    try:
        return state_root(path.read_bytes())
    except MalformedInput:
        return None


async def _torrent_peers(apis: Sequence[str]) -> list[tuple[str, int]]:
    """The servers' BitTorrent ports, from their ``/status``, to dial besides the DHT."""
    found = []
    for api, status in zip(apis, await servers.statuses(apis), strict=True):
        port = status.get("torrent_port") if status else None
        if isinstance(port, int):
            found.append((api.removeprefix("http://").rpartition(":")[0], port))
    return found
