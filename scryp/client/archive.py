"""History from the genesis: the rounds before a client's first sync, from an archive
(protocol §10.8).

A client's store holds the ``transactions`` of the rounds it synced, from its first sync F on
(§10.5). For rounds 0..F-1 it asks an archive (``--archive URL``, or ``testnet.json``), which
is not trusted:
1. the archive's listing of rounds 0..F-1 (``GET /rounds``), every entry's certificate checked
   against ``.keys`` for the network the client follows (``scryp.core.listing``); a round not
   listed is a gap, and the fill fails;
2. round 0's ``balances`` (the genesis; round 0 is always a checkpoint round, protocol
   §4.4.4) fetched from the swarm, giving round 0's
   certified state root (§4.4.3) and hashing (SHA-256) to the network id (§5.2); each later
   round's ``transactions`` fetched under its certified v2 infohash (rounds listed as empty
   are not fetched);
3. every round replayed in order (``scryp.core.replay.replay_to``), the result required to
   give **that round's** certified state root, so a round falsely listed as empty, a
   missing or extra payment, is caught at the round where it happens.
Only when all of that holds are the files written into the store, so a refused archive leaves
the history as it was (starting at F) and says why.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scryp.client import servers
from scryp.client.store import Store
from scryp.core import snapshot
from scryp.core.listing import ListedRound, certified_round
from scryp.core.replay import replay_to
from scryp.core.tx import decode_many
from scryp.errors import MalformedInput, NotAvailable, RemoteError

if TYPE_CHECKING:  # like scryp.client.operations, nothing here imports libtorrent
    from scryp.client.sync import Client

FETCHES_PARALLEL_MAX = 8
FETCH_TIMEOUT_S = 30.0
ROUND_TXS_MAX = 1 << 20
ARCHIVE_WAIT_S = 30.0  # the archive polls the servers: it may lag the client's first sync
POLL_S = 0.5


class ArchiveRefused(RemoteError):
    """What an archive served does not check against the certificates (its fault)."""


@dataclass(frozen=True, slots=True)
class Filled:
    rounds: int  # rounds added to the store (0: it already started at the genesis)
    bytes_downloaded: int


def first_round(store: Store) -> int | None:
    """The first round whose ``transactions`` the store holds, or None if it holds none."""
    if not store.rounds.is_dir():
        return None
    numbers = [
        number
        for path in store.rounds.iterdir()
        if (number := snapshot.parse_round_dir_name(path.name)) is not None
        and (path / snapshot.TRANSACTIONS).is_file()
    ]
    return min(numbers, default=None)


async def fill_from_genesis(client: Client, store: Store, network: bytes) -> Filled:
    """Add to ``store`` the verified ``transactions`` of every round before its first one."""
    first = first_round(store)
    if first is None or first == 0:
        return Filled(0, 0)
    listing = await _listing(client.network.archives, first - 1)
    listed = [_checked(listing, n, network, client.network.quorum) for n in range(first)]
    scratch = store.root / "archive-scratch"
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        files, downloaded = await _fetched(client, listed, scratch, network)
        state = files[0]
        for entry in listed[1:]:
            txs = decode_many(files.get(entry.round, b""), ROUND_TXS_MAX)
            try:
                state = await asyncio.to_thread(replay_to, state, txs, entry.state_root)
            except MalformedInput as error:
                raise ArchiveRefused(f"archive round {entry.round} refused: {error}") from None
        for number in range(first):  # only now, every round checked: into the store
            target = store.round_dir(number) / snapshot.TRANSACTIONS
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(files.get(number, b"") if number else b"")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return Filled(first, downloaded)


async def _listing(archives: Sequence[str], last: int) -> dict[int, dict[str, Any]]:
    """The archives' listing of rounds 0..last, waiting (bounded) for one to reach ``last``."""
    if not archives:
        raise NotAvailable("no archive known (give --archive URL, or a testnet with one)")
    deadline = asyncio.get_running_loop().time() + ARCHIVE_WAIT_S
    while True:
        listing = await servers.round_listing(archives, 0, last)
        if last in listing or asyncio.get_running_loop().time() > deadline:
            return listing
        await asyncio.sleep(POLL_S)  # the archive cannot signal us: poll to a deadline


def _checked(
    listing: dict[int, dict[str, Any]], number: int, network: bytes, quorum: Sequence[bytes]
) -> ListedRound:
    entry = listing.get(number)
    if entry is None:
        raise NotAvailable(f"no archive lists round {number}: history before it is unknown")
    try:
        return certified_round(entry, network, quorum)
    except RemoteError as error:  # malformed, or a certificate that does not verify
        raise ArchiveRefused(f"archive round {number} refused: {error}") from None


async def _fetched(
    client: Client, listed: Sequence[ListedRound], scratch: Path, network: bytes
) -> tuple[dict[int, bytes], int]:
    """Round 0's ``balances`` (checked: its root is certified, its SHA-256 is the network
    id) under key 0, and every
    non-empty round's ``transactions`` (under its certified v2 infohash); bytes downloaded."""
    peers = client.network.archive_peers + client.network.torrent_peers
    limit = asyncio.Semaphore(FETCHES_PARALLEL_MAX)

    async def fetch(entry: ListedRound) -> tuple[int, bytes, int]:
        whole = entry.round == 0
        async with limit:
            await client.swarm.remove(entry.infohash)
            try:
                result = await client.swarm.fetch(
                    entry.infohash,
                    scratch,
                    timeout_s=FETCH_TIMEOUT_S,
                    # Round 0 is a checkpoint round (§4.4.4): its balances alone, not its
                    # changes (as large) nor window.
                    files=[snapshot.BALANCES if whole else snapshot.TRANSACTIONS],
                    peers=peers,
                    expect_name=snapshot.round_dir_name(entry.round),
                    expect_infohash_v2=entry.infohash_v2,
                    expect_state_root=entry.state_root if whole else None,
                )
            except RemoteError as error:  # FetchFailed: not the certified torrent
                raise ArchiveRefused(f"archive round {entry.round} refused: {error}") from None
            name = snapshot.BALANCES if whole else snapshot.TRANSACTIONS
            data = (result.round_dir / name).read_bytes()
            await client.swarm.remove(entry.infohash)
            return entry.round, data, result.payload_bytes_downloaded

    wanted = [e for e in listed if e.round == 0 or e.transactions != 0]
    fetched = await asyncio.gather(*(fetch(e) for e in wanted))
    files = {number: data for number, data, _ in fetched}
    # Fetch checked round 0's certified root; the network id is its SHA-256 besides (§5.2).
    if hashlib.sha256(files[0]).digest() != network:
        raise ArchiveRefused("round 0 does not hash to the network id")
    return files, sum(n for _, _, n in fetched)
