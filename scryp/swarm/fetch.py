"""Fetching a round from the swarm by v1 infohash (protocol §8.6).

Owns: ``Swarm.fetch`` and ``Swarm.fetch_pieces`` (the ``Fetching`` part of ``Swarm``), the
steps of one fetch (``_RoundFetch``), the alert watcher that turns one torrent's alerts into
the futures those steps wait on (``PieceWatch``), piece selection (``wanted_pieces``), reuse
of a previous round's pieces, and the peer lookups of a session that does not announce.

Invariants: a fetch returns only once every wanted piece passed its hash check and is flushed
to disk, and, when the caller gave them, the v2 infohash and the state root matched
(``FetchFailed`` otherwise: the swarm's data was wrong); a fetch that does not succeed drops
its torrent, so nothing half-fetched or unverified is seeded on; every wait shares one
deadline (``TimedOut``).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import libtorrent as lt

from scryp.core import snapshot
from scryp.core.buckets import state_root
from scryp.errors import LocalError, MalformedInput, RemoteError, TimedOut

from .settings import CLIENT_TORRENT_CONNECTIONS_MAX, SwarmConfig
from .waits import deadline, stop

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 30.0
# How often a session that does not announce looks its torrents' peers up (protocol §8.6).
PEER_LOOKUP_INTERVAL_S = 2.0
FIND_PEERS_AGAIN_S = 0.5
PRIORITY_WANTED = 4  # libtorrent's default piece priority; 0 means "do not download"
INCONSISTENT_HASHES = 217  # libtorrent's errors::torrent_inconsistent_hashes
_CHECKING_STATES = (
    lt.torrent_status.states.checking_files,
    lt.torrent_status.states.checking_resume_data,
)


class FetchFailed(RemoteError):
    """The swarm gave us data that does not match what the pointer or caller expected."""


@dataclass(frozen=True, slots=True)
class Progress:
    """A fetch's progress: pieces and payload bytes of the wanted part of the torrent."""

    infohash: bytes
    pieces_done: int
    pieces_wanted: int
    bytes_downloaded: int


@dataclass(frozen=True, slots=True)
class FetchResult:
    infohash: bytes
    infohash_v2: bytes
    round_dir: Path  # save_dir / torrent name
    files: tuple[Path, ...]
    payload_bytes_downloaded: int
    pieces_wanted: int
    seconds: float


class PieceWatch:
    """Turns one torrent's alerts into the futures a fetch waits on."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        infohash: bytes,
        on_progress: Callable[[Progress], None] | None,
    ) -> None:
        self.infohash = infohash
        self.on_progress = on_progress
        self.handle: Any = None
        self.metadata: asyncio.Future[None] = loop.create_future()
        self.checked: asyncio.Future[None] | None = None
        self.flushed: asyncio.Future[None] | None = None
        self.done: asyncio.Future[None] = loop.create_future()
        self.wanted: frozenset[int] | None = None
        self.missing: set[int] = set()
        self.progressed = time.monotonic()  # when the metadata or a piece last arrived

    def recount(self) -> None:
        """Ask libtorrent which wanted pieces we lack (after a check, or at the start)."""
        if self.wanted is None or self.handle is None:
            return
        have = self.handle.status(lt.status_flags_t.query_pieces).pieces
        self.missing = {i for i in self.wanted if not have[i]}
        self._report()

    def _report(self) -> None:
        if self.wanted is None:
            return
        if self.on_progress is not None:
            status_bytes = 0
            if self.handle is not None:
                status_bytes = int(self.handle.status(0).total_payload_download)
            self.on_progress(
                Progress(
                    self.infohash,
                    len(self.wanted) - len(self.missing),
                    len(self.wanted),
                    status_bytes,
                )
            )
        if not self.missing and not self.done.done():
            self.done.set_result(None)

    def on_alert(self, alert: Any) -> None:
        if isinstance(alert, lt.metadata_received_alert | lt.piece_finished_alert):
            self.progressed = time.monotonic()
        if isinstance(alert, lt.metadata_received_alert):
            if not self.metadata.done():
                self.metadata.set_result(None)
        elif isinstance(alert, lt.torrent_checked_alert):
            if self.checked is not None and not self.checked.done():
                self.checked.set_result(None)
            # A check may end after we counted what is missing (the automatic check when the
            # metadata arrives can finish just before our forced one): pieces a check finds
            # raise no piece_finished_alert, so count again whenever a check ends.
            self.recount()
        elif isinstance(alert, lt.cache_flushed_alert):
            if self.flushed is not None and not self.flushed.done():
                self.flushed.set_result(None)
        elif isinstance(alert, lt.piece_finished_alert):
            if self.wanted is not None and alert.piece_index in self.missing:
                self.missing.discard(alert.piece_index)
                self._report()
        elif isinstance(alert, lt.torrent_finished_alert):
            self.recount()
        elif isinstance(alert, (lt.torrent_error_alert, lt.file_error_alert)):
            error = torrent_error(self.infohash, alert.message(), alert.error)
            log.warning("fetch ends: %s", error)  # the caller may retry: this says why
            for future in (self.metadata, self.checked, self.done, self.flushed):
                if future is not None and not future.done():
                    future.set_exception(error)


def torrent_error(infohash: bytes, message: str, code: Any) -> Exception:
    """A torrent's error (libtorrent paused it) as the swarm's fault or ours. libtorrent's
    217, "v1 and v2 hashes do not describe the same data", is the swarm's: a hybrid round
    added by magnet takes its v2 hashes from peers, and in the lab's crowd one full sync in
    ~500 ended on it while clients traded (FetchFailed: the sync fetches again, from the next
    server's listing or record, and keeps the pieces that passed). Anything else (a disk
    error) is ours (LocalError)."""
    text = f"torrent {infohash.hex()}: {message}"
    if code.category().name() == "libtorrent" and code.value() == INCONSISTENT_HASHES:
        return FetchFailed(text)
    return LocalError(text)


def wanted_pieces(
    info: Any, layout: Any, files: Sequence[str] | None, pieces: Iterable[int] | None
) -> frozenset[int]:
    """The pieces to fetch: all of them, or those of ``pieces`` and those ``files`` lie in."""
    total = int(info.num_pieces())
    if files is None and pieces is None:
        return frozenset(range(total))
    wanted: set[int] = set()
    if pieces is not None:
        for index in pieces:
            if not 0 <= index < total:
                raise ValueError(f"piece {index} outside 0..{total - 1}")
            wanted.add(index)
    if files is not None:
        known = {layout.file_name(i): i for i in range(layout.num_files())}
        for name in files:
            if name not in known:  # the torrent is not what its namer said: their fault
                raise FetchFailed(f"no file {name!r} in the torrent")
            index = known[name]
            size = int(layout.file_size(index))
            if size:
                first = int(layout.file_offset(index)) // int(info.piece_length())
                last = (int(layout.file_offset(index)) + size - 1) // int(info.piece_length())
                wanted.update(range(first, last + 1))
    return frozenset(wanted)


def _copy_reusable(previous_round: Path, round_dir: Path) -> bool:
    """Copy a previous round's balances into the new round's place; False if nothing to copy.

    Only the balances file is worth it: most of its pieces survive a round unchanged, while a
    round's transactions are all new.
    """
    source = previous_round / snapshot.BALANCES
    target = round_dir / snapshot.BALANCES
    if not source.is_file() or target.exists():
        return False
    round_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return True


def _file_names(layout: Any) -> set[str]:
    """The names (inside the round) of a torrent's real files."""
    return {layout.file_name(i) for i in _real_files(layout)}


def _real_files(layout: Any) -> list[int]:
    """Indices of a torrent's files, without the pad files libtorrent aligns pieces with."""
    return [
        i
        for i in range(layout.num_files())
        if not layout.file_flags(i) & lt.file_storage.flag_pad_file
    ]


class _RoundFetch:
    """The steps of one fetch of one torrent. Every wait shares the fetch's deadline; with
    ``stall_s``, a wait also ends once nothing (metadata, a piece) has arrived for that long,
    and the deadline is only the fetch's overall cap."""

    def __init__(
        self,
        swarm: Fetching,
        infohash: bytes,
        timeout_s: float,
        on_progress: Callable[[Progress], None] | None,
        stall_s: float | None = None,
        *,
        trackers: Sequence[str] = (),
    ) -> None:
        self.swarm = swarm
        self.infohash = infohash
        self.started = time.monotonic()
        self.deadline = self.started + timeout_s
        self.stall_s = stall_s
        self.watch = PieceWatch(swarm._loop, infohash, on_progress)
        self.handle: Any = None
        self.trackers = [url for url in trackers if swarm._tracker_allowed(url)]

    def _left_s(self) -> float:
        """Seconds until the deadline, or until the fetch counts as stalled if sooner."""
        until = self.deadline
        if self.stall_s is not None:
            until = min(until, self.watch.progressed + self.stall_s)
        return until - time.monotonic()

    async def _wait(self, future: asyncio.Future[None], what: str) -> None:
        if self.stall_s is None:
            await deadline(future, self.deadline - time.monotonic(), what)
            return
        while True:  # ends: each pass waits until the deadline or a stall, whichever is first
            try:
                await deadline(asyncio.shield(future), self._left_s(), what)
                return
            except TimedOut:
                if self._left_s() <= 0:  # else pieces came meanwhile: wait on
                    raise

    async def add(self, save_dir: Path) -> None:
        """Add the torrent by magnet: it fetches the metadata, but no pieces yet."""
        save_dir.mkdir(parents=True, exist_ok=True)
        params = lt.parse_magnet_uri(f"magnet:?xt=urn:btih:{self.infohash.hex()}")
        params.save_path = str(save_dir)
        # upload_mode: fetch the metadata but no pieces until we have prepared the files.
        params.flags = (params.flags | lt.torrent_flags.upload_mode) & ~(
            lt.torrent_flags.auto_managed | lt.torrent_flags.paused
        )
        if self.swarm.config.dht_read_only:
            params.flags |= lt.torrent_flags.disable_dht  # no announce: Fetching._look_up_peers
        # The servers' trackers (protocol §8.6.1): clients fetching the same round meet there.
        params.trackers = list(self.trackers)
        if self.swarm.config.dht_read_only:  # a client: few peers, each costs CPU per piece
            params.max_connections = CLIENT_TORRENT_CONNECTIONS_MAX
        self.handle = await self.swarm._add(params, self.infohash)
        self.watch.handle = self.handle

    def dial(self, peers: Sequence[tuple[str, int]]) -> None:
        for host, port in peers:
            self.handle.connect_peer((host, port))

    async def metadata(self, limit_s: float | None = None) -> Any:
        """Wait for the metadata (BEP 9), at most ``limit_s`` if given; the torrent's info."""
        if self.handle.status().has_metadata and not self.watch.metadata.done():
            self.watch.metadata.set_result(None)
        left_s = self._left_s()
        if limit_s is not None:
            left_s = min(left_s, limit_s)
        await deadline(self.watch.metadata, left_s, "torrent metadata")
        return self.handle.torrent_file()

    async def reuse(self, previous_round: Path, round_dir: Path) -> None:
        """Put a previous round's balances in place and let libtorrent find the pieces that
        did not change, so only the others travel (protocol §8.6)."""
        if not await asyncio.to_thread(_copy_reusable, previous_round, round_dir):
            return
        await self.recheck()
        if self.watch.wanted is not None and self.watch.missing == set(self.watch.wanted):
            # Nothing of the copied file was recognised: the check that answered may have
            # started before the copy. One more check settles it (and costs little if the
            # round really changed every piece).
            await self.recheck()

    async def recheck(self) -> None:
        """Check the files on disk against the piece hashes; return once no check runs."""
        self.watch.checked = self.swarm._loop.create_future()
        self.handle.force_recheck()
        await self._wait(self.watch.checked, "checking files")
        # The check libtorrent ran by itself when the metadata arrived may have ended just
        # now, answering for ours: wait until no check is running any more.
        while self.handle.status().state in _CHECKING_STATES:
            self.watch.checked = self.swarm._loop.create_future()
            await self._wait(self.watch.checked, "checking files")
        self.watch.recount()

    async def download(
        self, num_pieces: int, wanted: frozenset[int], peers: Sequence[tuple[str, int]]
    ) -> None:
        """Fetch the wanted pieces (and no others) and wait until all passed their check."""
        priorities = [0] * num_pieces
        for index in wanted:
            priorities[index] = PRIORITY_WANTED
        self.handle.prioritize_pieces(priorities)
        self.handle.unset_flags(lt.torrent_flags.upload_mode)
        # A seed drops an upload-only peer as redundant, so the peers that gave us the
        # metadata may be gone by now: dial them again, now that we want pieces.
        self.dial(peers)
        await self.wait_pieces()

    async def wait_pieces(self) -> None:
        self.watch.recount()
        await self._wait(self.watch.done, "pieces")

    async def flush(self) -> None:
        """Piece hashes pass before the disk thread has written every block; the files are
        complete only once the cache is flushed."""
        self.watch.flushed = self.swarm._loop.create_future()
        self.handle.flush_cache()
        await self._wait(self.watch.flushed, "disk flush")

    def downloaded_bytes(self) -> int:
        return int(self.handle.status().total_payload_download)


def _infohash_v2(info: Any) -> bytes:
    hashes = info.info_hashes()
    return bytes(hashes.v2.to_bytes()) if hashes.has_v2() else b""


async def _check_state_root(round_dir: Path, expected: bytes) -> None:
    """The fetched balances must give the state root the pointer named (protocol §4.4.3)."""
    balances = round_dir / snapshot.BALANCES
    if not balances.is_file():  # not a checkpoint round (§4.4.4): no state to check here
        raise FetchFailed(f"{round_dir} holds no balances to check the state root of")
    if await asyncio.to_thread(_file_state_root, balances) != expected:
        raise FetchFailed(f"{balances} does not give the expected state root")


def _file_state_root(path: Path) -> bytes | None:
    """The state root of a balances file, or None if it cannot be cut into buckets."""
    try:
        return state_root(path.read_bytes())
    except (MalformedInput, OSError):  # no balances file: not a checkpoint round (§4.4.4)
        return None


class Fetching:
    """The fetching part of ``Swarm``: rounds by infohash, more pieces of them, peer lookups."""

    config: SwarmConfig
    _loop: asyncio.AbstractEventLoop
    _closed: bool
    _peer_waiters: dict[bytes, list[asyncio.Future[list[tuple[str, int]]]]]  # find_peers

    if TYPE_CHECKING:

        def _live(self) -> Any: ...

        def _watch(
            self, infohash: bytes, callback: Callable[[Any], None]
        ) -> Callable[[], None]: ...

        async def _add(self, params: Any, infohash: bytes, timeout_s: float = ...) -> Any: ...

        async def remove(self, infohash: bytes, delete_files: bool = False) -> None: ...

    async def fetch(
        self,
        infohash: bytes,
        save_dir: Path,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        on_progress: Callable[[Progress], None] | None = None,
        reuse_from: Path | None = None,
        files: Sequence[str] | None = None,
        pieces: Iterable[int] | None = None,
        expect_infohash_v2: bytes | None = None,
        expect_state_root: bytes | None = None,
        peers: Sequence[tuple[str, int]] = (),
        metadata_timeout_s: float | None = None,
        expect_name: str | None = None,
        stall_timeout_s: float | None = None,
        trackers: Sequence[str] = (),
    ) -> FetchResult:
        """Download a round by v1 infohash into ``save_dir/<torrent name>/``; keep seeding it.

        ``reuse_from``: a previous round's directory; its ``balances`` is copied into place
        before libtorrent checks the files, so only changed pieces travel (protocol §8.6), when
        the torrent is a checkpoint round's (it holds ``balances``; nothing is copied else).
        ``files`` (names inside the round) or ``pieces`` (indices) restrict what is fetched.
        ``expect_infohash_v2`` and ``expect_state_root`` are checked once the data is here;
        a mismatch raises FetchFailed. ``peers`` are dialled besides the DHT and ``trackers``.
        ``metadata_timeout_s``: give up sooner on a torrent nobody seeds (no metadata);
        ``stall_timeout_s``: once nothing (metadata, a piece) has come for that long.
        ``expect_name``: the round directory it must be (checked before a byte is written).
        Raises TimedOut if the metadata or the data do not arrive within ``timeout_s``.
        """
        self._check_peers(peers)
        step = _RoundFetch(
            self, infohash, timeout_s, on_progress, stall_timeout_s, trackers=trackers
        )
        unwatch = self._watch(infohash, step.watch.on_alert)
        lookups = None
        succeeded = False
        try:
            await step.add(save_dir)
            lookups = self._start_lookups(infohash)  # once the torrent is there to dial from
            step.dial(peers)
            info = await step.metadata(metadata_timeout_s)
            infohash_v2 = _check_identity(info, infohash, expect_name, expect_infohash_v2)
            round_dir = save_dir / info.name()
            layout = info.layout()
            wanted = step.watch.wanted = wanted_pieces(info, layout, files, pieces)
            if reuse_from is not None and snapshot.BALANCES in _file_names(layout):
                await step.reuse(reuse_from, round_dir)  # only a checkpoint round (§4.4.4)
            await step.download(info.num_pieces(), wanted, peers)
            downloaded = step.downloaded_bytes()
            paths = tuple(
                save_dir / layout.file_path(i)
                for i in _real_files(layout)
                if files is None or layout.file_name(i) in files
            )
            await step.flush()
            if expect_state_root is not None:
                await _check_state_root(round_dir, expect_state_root)
            succeeded = True
            seconds = time.monotonic() - step.started
            return FetchResult(
                infohash, infohash_v2, round_dir, paths, downloaded, len(wanted), seconds
            )
        finally:
            unwatch()
            await stop(lookups)
            if not succeeded and not self._closed:
                # Neither half-fetched nor unverified data is seeded on; files stay for reuse.
                await self.remove(infohash)

    def _tracker_allowed(self, url: str) -> bool:
        """Only http trackers at an address this network mode allows (protocol §8.8)."""
        parsed = urlsplit(url)
        host = parsed.hostname or ""
        return parsed.scheme == "http" and bool(host) and self.config.allows(host)

    def _check_peers(self, peers: Sequence[tuple[str, int]]) -> None:
        for host, _ in peers:
            if not self.config.allows(host):
                raise LocalError(f"peer {host} is not allowed in {self.config.network} mode (§8.8)")

    async def fetch_pieces(
        self, infohash: bytes, pieces: Iterable[int], timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> int:
        """Fetch more pieces of a torrent that ``fetch`` added (a light client probing one
        more place of ``balances``, protocol §8.6), each checked against the piece hashes,
        and flush them to disk. Returns the torrent's payload bytes downloaded so far."""
        handle = self._live().find_torrent(lt.sha1_hash(infohash))
        if not handle.is_valid():
            raise LocalError(f"torrent {infohash.hex()} is not in the session")
        step = _RoundFetch(self, infohash, timeout_s, None)
        step.handle = step.watch.handle = handle
        step.watch.wanted = wanted_pieces(handle.torrent_file(), None, None, pieces)
        unwatch = self._watch(infohash, step.watch.on_alert)
        lookups = self._start_lookups(infohash)
        try:
            for index in step.watch.wanted:
                handle.piece_priority(index, PRIORITY_WANTED)
            await step.wait_pieces()
            await step.flush()
            return step.downloaded_bytes()
        finally:
            unwatch()
            await stop(lookups)

    def file_sizes(self, infohash: bytes) -> dict[str, int]:
        """Sizes of the (non-pad) files of a torrent in this session whose metadata we have,
        by name inside the round; {} if the torrent is unknown or has no metadata yet."""
        handle = self._live().find_torrent(lt.sha1_hash(infohash))
        if not handle.is_valid() or not handle.status().has_metadata:
            return {}
        layout = handle.torrent_file().layout()
        return {layout.file_name(i): int(layout.file_size(i)) for i in _real_files(layout)}

    # -- peer lookups of a session that does not announce (protocol §8.6) -----------------------

    def _on_peers_found(self, alert: Any) -> None:
        """Dial the peers our own lookup found (routed here by Swarm._dispatch), and hand
        them to whoever waits in ``find_peers``."""
        peers = [(host, port) for host, port in alert.peers() if self.config.allows(host)]
        infohash = bytes(alert.info_hash.to_bytes())
        for waiter in self._peer_waiters.get(infohash, []):
            if peers and not waiter.done():
                waiter.set_result(peers)
        handle = self._live().find_torrent(alert.info_hash)
        if not handle.is_valid():
            return
        for peer in peers:
            handle.connect_peer(peer)

    async def find_peers(
        self, infohash: bytes, timeout_s: float, again_s: float = FIND_PEERS_AGAIN_S
    ) -> list[tuple[str, int]]:
        """The peers of a torrent that the DHT knows, by BEP 5 get_peers as any BitTorrent
        client asks (a new lookup every ``again_s``: one that ended before the torrent was
        announced finds nothing). Raises TimedOut when none is found within ``timeout_s``."""
        waiters = self._peer_waiters
        found: asyncio.Future[list[tuple[str, int]]] = self._loop.create_future()
        waiters.setdefault(infohash, []).append(found)

        async def ask() -> None:
            while True:
                self._live().dht_get_peers(lt.sha1_hash(infohash))
                await asyncio.sleep(again_s)  # a period, not a wait for an event

        asking = self._loop.create_task(ask())
        try:
            return await deadline(asyncio.shield(found), timeout_s, "peer in the DHT")
        finally:
            await stop(asking)
            waiters[infohash].remove(found)
            if not waiters[infohash]:
                del waiters[infohash]

    def _start_lookups(self, infohash: bytes) -> asyncio.Task[None] | None:
        """The peer lookups of one fetch, in a session that does not announce; the fetch
        stops them when it ends (they live no longer than the call that started them)."""
        if not self.config.dht_read_only:
            return None
        return self._loop.create_task(self._look_up_peers(infohash))

    async def _look_up_peers(self, infohash: bytes) -> None:
        """While a fetch runs in a session that does not announce: find the torrent's peers
        with a BEP 5 get_peers of our own, now and every ``PEER_LOOKUP_INTERVAL_S``."""
        while True:
            self._live().dht_get_peers(lt.sha1_hash(infohash))
            await asyncio.sleep(PEER_LOOKUP_INTERVAL_S)  # a period, not a wait for an event


def _check_identity(
    info: Any, infohash: bytes, expect_name: str | None, expect_infohash_v2: bytes | None
) -> bytes:
    """The torrent's v2 infohash, once its name and v2 infohash are what the caller expects
    (before a byte of it is written: a wrong name could land on another round's files)."""
    if expect_name is not None and info.name() != expect_name:
        raise FetchFailed(f"torrent {infohash.hex()} is {info.name()}, not {expect_name}")
    infohash_v2 = _infohash_v2(info)
    if expect_infohash_v2 is not None and infohash_v2 != expect_infohash_v2:
        raise FetchFailed(f"torrent {infohash.hex()} is not the certified v2 infohash")
    return infohash_v2
