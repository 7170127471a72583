"""Verified balances: find the certified round, then sync it light, incremental or full
(protocol §10.2–§10.4).

- **light**: the pieces of ``balances`` that the search probes (``search.find_balance``), each
  checked by libtorrent against the piece hashes of the torrent whose v2 infohash the
  certificate signs;
- **incremental**: from a held verified round r, only the ``transactions`` files of rounds
  r+1..R, every signature checked, replayed, and the result required to give the certified
  state root of R;
- **full**: the whole snapshot (reusing the held round's unchanged pieces), its v2 infohash
  and state root (protocol §4.4.3) checked; at a round that is not a checkpoint, the newest
  checkpoint's ``balances`` and the net ``changes`` since, from one server's
  ``GET /changes`` (§10.4.1) or else from each round's torrent, the result's state root
  checked either way.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal, TypeVar

from scryp.client import lightproof, listed, servers
from scryp.client.apply import apply_to_file
from scryp.client.network import Network, pointer_apis
from scryp.client.search import find_balance
from scryp.client.store import Held, Store, read_balance
from scryp.client.verify import VerifiedRound, choose_certified
from scryp.core import snapshot
from scryp.core.balances import check_balances_file
from scryp.core.replay import replay_to
from scryp.core.tx import Transaction, decode_many
from scryp.errors import NotAvailable, RemoteError
from scryp.keyfile import atomic_write, link_durably
from scryp.swarm import FetchFailed, Swarm

_T = TypeVar("_T")
Mode = Literal["light", "incremental", "full", "cached"]
MODES = ("auto", "light", "incremental", "full")
FETCH_TIMEOUT_S = 30.0
# A whole state (a checkpoint's balances) is fetched for as long as pieces keep coming, up to
# this; it fails once nothing has come for FETCH_TIMEOUT_S. 30 s in all was ~12 MB/s at 10M
# accounts (360 MB): over a 100 Mbit/s link one full sync in three timed out (BENCHMARKS.md).
# 240 s leaves a 300 s command room for the pointers; at 10M it asks for ~1.5 MB/s.
STATE_FETCH_TIMEOUT_S = 240.0
SYNC_ATTEMPTS_MAX = 3
INCREMENTAL_ROUNDS_MAX = 1000  # further behind than this, a full sync is cheaper
ROUND_TXS_MAX = 1 << 20
# Torrents fetched at once (a full sync's changes files, an incremental sync's transactions).
# Measured at 10M accounts over a 100 Mbit/s cap (docs/BENCHMARKS.md, client sync at 10M):
# from a seed with servers' one unchoke slot (§8.9), 59 changes files came ~2 a second with
# 4 to 16 at once, but 1 a second with all at once, and those queued longest timed out; from
# a seed with libtorrent's 8 slots all at once took 4 s, 8 at a time 9 s (a new torrent's
# first connection waits for libtorrent's next connect round, about once a second).
FETCHES_PARALLEL_MAX = 8
LATEST_TIMEOUT_S = 60.0
PROOF_WAIT_S = 1.0  # a light sync waits this long for a proof before it fetches pieces
POINTER_POLL_S = 0.5
# A fresh DHT node's first reads often find few items (its routing table is still filling:
# found by the lab, 6-8 of 10 fresh clients read 0 pointers): fewer pointers than a majority
# is "not available yet", asked again for this long (protocol §10.2).
FEW_POINTERS_WAIT_S = 10.0


class NoMajority(RemoteError):
    """No pointer in the DHT carries a valid majority certificate for this quorum."""

    def __init__(self, message: str, pointers: int = 0) -> None:
        super().__init__(message)
        self.pointers = pointers  # how many verified pointers were found


class SyncFailed(RemoteError):
    """The sync asked for could not be done (nothing held to build on, rounds missing)."""


class NoBalancesFile(SyncFailed):
    """A light sync found no server proof and the round's torrent has no ``balances`` to
    probe: not a checkpoint round (protocol §4.4.4, §10.3)."""


@dataclass(frozen=True, slots=True)
class Synced:
    mode: Mode
    round: VerifiedRound
    balance: int | None  # of the account asked about, when one was
    # Payload bytes: pieces, and the bodies of GET /changes (§10.4.1); metadata, listings,
    # proofs and protocol overhead excluded.
    bytes_downloaded: int
    seconds: float
    fell_back: str = ""  # why the cheaper sync was abandoned, if it was
    proof_checked: bool = False  # light: the bucket also checked against the root (§4.4.6)


class Client:
    """A client session: one libtorrent session plus the data directory."""

    def __init__(
        self,
        network: Network,
        data_dir: Path,
        swarm: Swarm,
        checks: concurrent.futures.Executor | None = None,
    ) -> None:
        self.network = network
        self.data_dir = data_dir
        self.swarm = swarm
        # Where whole-state checks run (a state root: 0.15 s of Python at 1M accounts): threads,
        # or the lab agents' process pool, so that dozens of clients do not queue for one GIL.
        self.checks = checks
        self.refused: dict[bytes, RemoteError] = {}
        self.pointer_apis: tuple[str, ...] = ()

    @property
    def apis(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.network.apis + self.pointer_apis))

    def trackers(self) -> list[str]:
        """The servers' round trackers (protocol §8.6.1): a fetch announces itself there, so
        that clients fetching the same round trade pieces instead of all asking the servers."""
        return [f"{api.rstrip('/')}/announce" for api in self.apis]

    def store(self, verified: VerifiedRound) -> Store:
        return Store(self.data_dir, verified.record.network)

    async def latest(
        self, min_round: int = 0, timeout_s: float = LATEST_TIMEOUT_S
    ) -> VerifiedRound:
        """The highest round a valid majority certificate vouches for (protocol §10.2); with
        ``min_round``, ask again until the pointers reach it (servers publish each certified
        round, but a DHT put can lag by seconds), until ``timeout_s``."""
        started = time.monotonic()
        deadline = started + timeout_s
        few_deadline = started + min(timeout_s, FEW_POINTERS_WAIT_S)
        while True:
            try:
                found = await self._latest()
            except NoMajority as error:
                now = time.monotonic()
                few = error.pointers < len(self.network.quorum) // 2 + 1
                if now > deadline or not (min_round > 0 or (few and now < few_deadline)):
                    raise
            else:
                if found.round >= min_round:
                    return found
                if time.monotonic() > deadline:
                    raise SyncFailed(
                        f"pointers name round {found.round}, not yet {min_round}, "
                        f"after {timeout_s:g} s"
                    )
            await asyncio.sleep(POINTER_POLL_S)  # the servers cannot signal us: poll

    async def _latest(self) -> VerifiedRound:
        records, self.refused = await self.swarm.get_pointers(self.network.quorum)
        chosen = choose_certified(records, self.network.quorum, self.network.network_id)
        self.pointer_apis = tuple(pointer_apis(records.values(), self.network.mode))
        if chosen is None:
            raise NoMajority(
                f"no majority-certified round among {len(records)} pointer(s) of "
                f"{len(self.network.quorum)} servers in .keys"
                + (f"; refused {len(self.refused)}" if self.refused else ""),
                len(records),
            )
        return chosen

    async def sync_latest(
        self,
        mode: str,
        account: bytes | None,
        min_round: int = 0,
        verified: VerifiedRound | None = None,
    ) -> Synced:
        """``latest`` (or ``verified``, if the caller has just read it) then ``sync``; if the
        round's torrent cannot be fetched (its seeders may have moved on while the DHT
        pointers lagged, or no server answered a listing in time), or a light sync found no
        proof at a round that is not a checkpoint, read the pointers again and retry,
        ``SYNC_ATTEMPTS_MAX`` times in all. Only the last attempt lets a light sync fall back
        to a full one (protocol §4.4.7)."""
        for attempt in range(1, SYNC_ATTEMPTS_MAX + 1):
            last = attempt == SYNC_ATTEMPTS_MAX
            if verified is None or attempt > 1:
                verified = await self.latest(min_round)
            held = self.store(verified).held()
            if held is not None and held.round > verified.round:
                # Never go back: a lagging pointer waits until it reaches what we verified.
                verified = await self.latest(held.round)
            try:
                return await self.sync(verified, mode, account, fall_back=last)
            except (NotAvailable, NoBalancesFile):  # NotAvailable: a timeout, a silent server
                if last:
                    raise
        raise AssertionError("unreachable")

    async def sync(
        self, verified: VerifiedRound, mode: str, account: bytes | None, *, fall_back: bool = True
    ) -> Synced:
        """Sync ``verified`` the way asked; "auto": incremental from a held round, else light
        for one account's balance (``account`` given), else full. ``fall_back``: a light sync
        that finds no proof at a round that is not a checkpoint does a full sync (else it
        raises NoBalancesFile: the caller may try a newer round first)."""
        started = time.monotonic()
        store = self.store(verified)
        held = store.held()
        if mode == "auto":
            if held is not None and held.round == verified.round:
                mode = "cached"
            elif held is not None and 0 < verified.round - held.round <= INCREMENTAL_ROUNDS_MAX:
                mode = "incremental"
            else:
                mode = "light" if account is not None else "full"
        fell_back = ""
        if mode == "cached":
            assert held is not None
            return Synced("cached", verified, read_balance(held, account), 0, 0.0)
        if mode == "light":
            if account is None:
                raise SyncFailed("a light sync reads one account: give ACCOUNT")
            try:
                balance, downloaded, checked = await self._first_that_works(
                    verified, lambda candidate: self.light(candidate, account)
                )
            except NoBalancesFile as error:
                if not fall_back:
                    raise
                fell_back = f"light failed ({error}); did a full sync"
            else:
                seconds = time.monotonic() - started
                return Synced(
                    "light", verified, balance, downloaded, seconds, proof_checked=checked
                )
        elif mode == "incremental":
            if held is None or held.round >= verified.round:
                raise SyncFailed("incremental sync needs an older verified round held locally")
            try:
                new, downloaded = await self.incremental(verified, held)
                return Synced(
                    "incremental",
                    verified,
                    read_balance(new, account),
                    downloaded,
                    time.monotonic() - started,
                )
            except (RemoteError, NotAvailable) as error:
                fell_back = f"incremental failed ({error}); did a full sync"
        new, downloaded = await self._first_that_works(
            verified, lambda candidate: self.full(candidate, held)
        )
        return Synced(
            "full",
            verified,
            read_balance(new, account),
            downloaded,
            time.monotonic() - started,
            fell_back,
        )

    async def _first_that_works(
        self, verified: VerifiedRound, attempt: Callable[[VerifiedRound], Awaitable[_T]]
    ) -> _T:
        """``attempt`` with each record naming this certified round, until one works: the
        certificate does not cover a record's v1 infohash, so one lying server can make a
        fetch fail, and then another server's record is tried (protocol §10.2)."""
        candidates = verified.candidates()
        for candidate in candidates[:-1]:
            try:
                return await attempt(candidate)
            except NoBalancesFile:
                raise  # the round's layout, the same in every server's torrent (§4.4.4)
            except (RemoteError, NotAvailable):
                continue
        return await attempt(candidates[-1])

    # -- full ---------------------------------------------------------------------------------

    async def full(self, verified: VerifiedRound, held: Held | None) -> tuple[Held, int]:
        """The whole balances of the certified round: its own torrent's ``balances`` if it is
        a checkpoint, else the newest checkpoint's (or the held round's, if newer) plus the
        ``changes`` of every round since (protocol §10.4, §4.4.4), checked against the
        certified state root either way."""
        record = verified.record
        first = max(0, record.round - INCREMENTAL_ROUNDS_MAX)
        failed: list[RemoteError | NotAvailable] = []
        for api in self.apis:  # one listing at a time: a lying one cannot spoil the others'
            listing = await servers.round_listing([api], first, record.round)
            checkpoint = listed.newest_checkpoint(listing, record.round)
            if checkpoint is None:
                # Not here now: unreachable or too slow (a crowd's busy server: 5 s), or the
                # server holds no checkpoint that old (one that caught up from a later one).
                what = "lists no checkpoint in" if listing else "listed no"
                failed.append(NotAvailable(f"{api} {what} rounds {first}..{record.round}"))
                continue
            try:
                if checkpoint == record.round:
                    return await self._full_round(verified, held)
                return await self._full_from_checkpoint(verified, held, listing, checkpoint)
            except (RemoteError, NotAvailable) as error:
                failed.append(error)
        if failed:  # not the round's own torrent: unless listed, it may not be a checkpoint
            raise failed[-1]
        return await self._full_round(verified, held)  # no server API known: its own torrent

    async def _full_round(self, verified: VerifiedRound, held: Held | None) -> tuple[Held, int]:
        record = verified.record
        store = self.store(verified)
        await self.swarm.remove(record.infohash)
        result = await self.swarm.fetch(
            record.infohash,
            store.rounds,
            timeout_s=STATE_FETCH_TIMEOUT_S,
            stall_timeout_s=FETCH_TIMEOUT_S,
            reuse_from=held.round_dir if held is not None else None,
            expect_infohash_v2=record.infohash_v2,
            expect_state_root=record.state_root,
            peers=self.network.torrent_peers,
            trackers=self.trackers(),
        )
        if result.round_dir != store.round_dir(record.round):
            raise FetchFailed(f"torrent names {result.round_dir.name}, not round {record.round}")
        balances = result.round_dir / snapshot.BALANCES
        await asyncio.to_thread(lambda: check_balances_file(balances.read_bytes()))
        held_now = await asyncio.to_thread(store.hold, record.round, record.state_root)
        return held_now, result.payload_bytes_downloaded

    async def _full_from_checkpoint(
        self, verified: VerifiedRound, held: Held | None, listing: listed.Listing, checkpoint: int
    ) -> tuple[Held, int]:
        record = verified.record
        store = self.store(verified)
        if held is not None and checkpoint <= held.round < record.round:
            start = held.round  # newer than the checkpoint: only the changes since travel
            old, downloaded = held.balances_path, 0
        else:
            start = checkpoint
            old, downloaded = await self._checkpoint_balances(verified, listing, checkpoint, held)
        # Then the changes. Not during the checkpoint's transfer: a server seeds with one
        # unchoke slot (§8.9), and more connections to it starved the changes past their
        # timeout at 10M accounts over a capped link, while a capped link gained nothing from
        # the overlap (docs/BENCHMARKS.md, client sync at 10M).
        out = store.round_dir(record.round) / snapshot.BALANCES  # a checked new file lands here
        out.parent.mkdir(parents=True, exist_ok=True)
        changes = (record.round, record.state_root, old, start, out)
        new, fetched = await self._changes_by_range(*changes)
        downloaded += fetched
        if new is None:  # no server's range gave the root: each round's torrent (§10.4.1)
            new, fetched = await self._changes_by_torrents(verified, listing, old, start, out)
            downloaded += fetched
        if new == old:  # nothing changed: the checked file is linked, not moved, since it may
            await asyncio.to_thread(link_durably, old, out)  # be the held round's, until hold
        return await asyncio.to_thread(store.hold, record.round, record.state_root), downloaded

    async def _changes_by_range(
        self, last: int, root: bytes, old: Path, start: int, out: Path
    ) -> tuple[Path | None, int]:
        """Round ``last``'s balances from ``old`` (round ``start``'s) and one server's net
        ``changes`` of rounds start+1..last (``GET /changes``, protocol §10.4.1), or None if
        no server's answer gives the certified ``root``; (balances, HTTP bytes downloaded).
        Why: one request instead of a torrent per round, which a seed with one unchoke slot
        serves ~2 a second (§8.9, §4.4.9). Servers are asked one at a time, each answer
        checked: a lying one costs an apply and a state root, then the next is asked."""
        downloaded = 0
        for api in self.apis:
            body = await servers.changes(api, start, last)
            if body is None:
                continue
            downloaded += len(body)
            new = await self._applied(old, [body], root, out)
            if new is not None:
                return new, downloaded
        return None, downloaded

    async def _changes_by_torrents(
        self, verified: VerifiedRound, listing: listed.Listing, old: Path, start: int, out: Path
    ) -> tuple[Path, int]:
        """Round R's balances from ``old`` (round ``start``'s) and the ``changes`` file of
        every round since, each from its own torrent (protocol §4.4.7); FetchFailed unless
        they give R's certified state root. (balances, payload bytes downloaded)"""
        record = verified.record
        files, fetched = await self._fetch_files(
            verified, listing, start + 1, snapshot.CHANGES, partial(listed.listed_empty, listing)
        )
        changes = [files[n] for n in sorted(files)]
        new = await self._applied(old, changes, record.state_root, out)
        if new is None:
            raise FetchFailed(
                f"round {start}'s balances and the changes of rounds {start + 1}..{record.round} "
                "do not give the certified state root"
            )
        return new, fetched

    async def _checkpoint_balances(
        self, verified: VerifiedRound, listing: listed.Listing, checkpoint: int, held: Held | None
    ) -> tuple[Path, int]:
        """The ``balances`` of checkpoint round ``checkpoint`` (reusing the held round's
        pieces), unchecked: the caller checks the state it leads to. (file, downloaded)"""
        store = self.store(verified)
        infohash = listed.infohashes(verified.record, listing, checkpoint)[checkpoint]
        await self.swarm.remove(infohash)
        result = await self.swarm.fetch(
            infohash,
            store.rounds,
            timeout_s=STATE_FETCH_TIMEOUT_S,
            stall_timeout_s=FETCH_TIMEOUT_S,
            files=[snapshot.BALANCES],
            reuse_from=held.round_dir if held is not None else None,
            peers=self.network.torrent_peers,
            trackers=self.trackers(),
        )
        if result.round_dir != store.round_dir(checkpoint):
            raise FetchFailed(f"torrent of round {checkpoint} is {result.round_dir.name}")
        await self.swarm.remove(infohash)  # its balances go once the new round is held
        return result.round_dir / snapshot.BALANCES, result.payload_bytes_downloaded

    async def _fetch_files(
        self,
        verified: VerifiedRound,
        listing: listed.Listing,
        first: int,
        name: str,
        skip: Callable[[int], bool],
    ) -> tuple[dict[int, bytes], int]:
        """File ``name`` of every round first..R (R: the certified round), fetched in
        parallel from the torrents the pointer or the listing name; ``skip``ped rounds count
        as empty. ({round: bytes}, payload bytes downloaded)."""
        record = verified.record
        store = self.store(verified)
        last = record.round
        infohashes = listed.infohashes(record, listing, first)
        missing = [n for n in range(first, last + 1) if n not in infohashes]
        if missing:
            raise SyncFailed(f"no server lists round {missing[0]} any more")
        limit = asyncio.Semaphore(FETCHES_PARALLEL_MAX)

        async def fetch(number: int) -> tuple[int, bytes, int]:
            if skip(number) and number != last:
                return number, b"", 0
            async with limit:
                infohash = infohashes[number]
                await self.swarm.remove(infohash)
                result = await self.swarm.fetch(
                    infohash,
                    store.rounds,
                    timeout_s=FETCH_TIMEOUT_S,
                    files=[name],
                    expect_infohash_v2=record.infohash_v2 if number == last else None,
                    peers=self.network.torrent_peers,
                    trackers=self.trackers(),
                )
                if result.round_dir != store.round_dir(number):
                    raise FetchFailed(f"torrent of round {number} is {result.round_dir.name}")
                data = await asyncio.to_thread((result.round_dir / name).read_bytes)
                return number, data, result.payload_bytes_downloaded

        fetched = await asyncio.gather(*(fetch(n) for n in range(first, last + 1)))
        return {n: data for n, data, _ in fetched}, sum(b for _, _, b in fetched)

    async def _applied(
        self, old: Path, changes: list[bytes], root: bytes, out: Path
    ) -> Path | None:
        """``apply_to_file`` in ``self.checks`` (a new file is written to ``out``)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.checks, apply_to_file, old, changes, root, out)

    # -- incremental --------------------------------------------------------------------------

    async def incremental(self, verified: VerifiedRound, held: Held) -> tuple[Held, int]:
        record = verified.record
        store = self.store(verified)
        first, last = held.round + 1, record.round
        listing = await servers.round_listing(self.apis, first, last)
        # A round the listing says is empty is skipped: if that was a lie, the replay below
        # does not reach the certified state root and the sync fails.
        files, downloaded = await self._fetch_files(
            verified, listing, first, snapshot.TRANSACTIONS, partial(listed.listed_empty, listing)
        )
        transactions: list[Transaction] = []
        for _, data in sorted(files.items()):
            transactions += decode_many(data, ROUND_TXS_MAX)
        old = held.balances_path.read_bytes()
        new = await asyncio.to_thread(replay_to, old, transactions, record.state_root)
        target = store.round_dir(last)
        target.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(atomic_write, target / snapshot.BALANCES, new)
        for number in range(first, last + 1):  # rounds skipped as empty: an empty file
            path = store.round_dir(number) / snapshot.TRANSACTIONS
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"")
        return await asyncio.to_thread(store.hold, last, record.state_root), downloaded

    # -- light --------------------------------------------------------------------------------

    async def light(self, verified: VerifiedRound, account: bytes) -> tuple[int, int, bool]:
        """(balance, bytes downloaded, whether a server's proof was checked). By proof alone
        when one verifies (§4.4.6: the bucket's records and siblings against the certified
        root, no piece); the certified torrent's pieces are searched too once no proof has
        verified within ``PROOF_WAIT_S``, and whichever answers first wins."""
        record = verified.record

        def proved(body: Any) -> int | None:
            return lightproof.balance_from_proof(
                body, root=record.state_root, round_number=record.round, account=account
            )

        asked = asyncio.create_task(
            servers.proof(self.apis, account, record.round, lambda b: proved(b) is not None)
        )
        pieces: asyncio.Task[tuple[int, int, bool]] | None = None
        try:
            await asyncio.wait({asked}, timeout=PROOF_WAIT_S)
            while True:
                if asked.done() and asked.exception() is None:
                    balance = proved(asked.result())
                    if balance is not None:
                        return balance, 0, True
                if pieces is None:
                    pieces = asyncio.create_task(self._light(verified, account, asked))
                if pieces.done() and (
                    asked.done() or not isinstance(pieces.exception(), NoBalancesFile)
                ):
                    return pieces.result()  # with no balances file, the proof is awaited
                racing = {task for task in (pieces, asked) if not task.done()}
                await asyncio.wait(racing, return_when=asyncio.FIRST_COMPLETED)
        finally:
            asked.cancel()
            if pieces is not None and not pieces.done():
                pieces.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pieces
            elif pieces is not None and not pieces.cancelled():
                pieces.exception()  # a search that failed after the proof answered: seen

    async def _light(
        self, verified: VerifiedRound, account: bytes, asked: asyncio.Task[Any]
    ) -> tuple[int, int, bool]:
        record = verified.record
        store = self.store(verified)
        store.clear_light()
        await self.swarm.remove(record.infohash)
        try:
            result = await self.swarm.fetch(
                record.infohash,
                store.light,
                timeout_s=FETCH_TIMEOUT_S,
                pieces=[],
                expect_infohash_v2=record.infohash_v2,
                peers=self.network.torrent_peers,
            )
            size = self.swarm.file_sizes(record.infohash).get(snapshot.BALANCES)
            if size is None:
                raise NoBalancesFile(
                    f"round {record.round} is not a checkpoint: its torrent has no balances "
                    "file, and no server's proof verified"
                )
            path = result.round_dir / snapshot.BALANCES
            downloaded = 0
            have: set[int] = set()

            async def fetch(pieces: set[int]) -> None:
                nonlocal downloaded
                if pieces:
                    downloaded = await self.swarm.fetch_pieces(
                        record.infohash, pieces, FETCH_TIMEOUT_S
                    )
                    have.update(pieces)

            def read(offset: int, length: int) -> bytes:
                with path.open("rb") as file:
                    file.seek(offset)
                    return file.read(length)

            balance, _ = await find_balance(size, account, fetch, read)
            # Not waited for: a slow or silent server only means no extra check.
            proof = asked.result() if asked.done() and not asked.exception() else None
            checked = lightproof.check(
                proof,
                root=record.state_root,
                round_number=record.round,
                account=account,
                balance=balance,
                have=have,
                read=read,
            )
        finally:
            # Also when a proof won the race and this search was cancelled (§4.4.6).
            await self.swarm.remove(record.infohash)
        return balance, downloaded, checked
