"""The swarm: one libtorrent session driven from asyncio (protocol §8).

Owns every use of libtorrent in Scryp: building a round's torrent deterministically, seeding
it, fetching a round by infohash (optionally reusing a previous round's pieces or fetching only
some pieces or files), and BEP 44 mutable items (the servers' signed pointers).

How it runs: libtorrent writes a byte to a pipe whenever its alert queue becomes non-empty
(``session.set_alert_fd``); the asyncio loop watches that pipe with ``add_reader`` and turns
alerts into futures and scryp's own frozen events. Nothing sleeps to wait: every wait is on a
future with a deadline (``timeout_s``).

Network safety (DESIGN §6): by default a session listens on 127.0.0.1 only, bootstraps its DHT
from the loopback nodes it is given and nothing else (libtorrent's default routers are public
hosts), and has LSD, UPnP and NAT-PMP off. Joining the public Mainline DHT needs
``SwarmConfig(public_dht=True)``, which no test or default run sets.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import logging
import os
import shutil
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import libtorrent as lt

from scryp.core import snapshot
from scryp.core.bencode import encode as bencode
from scryp.core.pointer import (
    SALT,
    VALUE_MAX_BYTES,
    PointerRecord,
    SignedItem,
    verify_item,
)
from scryp.crypto import KeyPair
from scryp.errors import LocalError, MalformedInput, RemoteError, TimedOut, invariant

log = logging.getLogger(__name__)
_T = TypeVar("_T")

LOOPBACK = "127.0.0.1"
# The Mainline routers libtorrent would use by default; only ever used with public_dht=True.
PUBLIC_ROUTERS = "router.bittorrent.com:6881,dht.transmissionbt.com:6881,router.utorrent.com:6881"
SERVER_UNCHOKE_SLOTS = 1
# With a quota of 20 pieces (320 KiB) the lone unchoked peer is choked and re-unchoked over
# and over, which stalls a single client; 1000 pieces (16 MiB) per turn does not.
SERVER_SEED_PIECE_QUOTA = 1000
# With one unchoke slot libtorrent's regular unchoke round (every unchoke_interval) keeps that
# slot for an optimistic unchoke: it chokes the peer holding it and unchokes nobody, so the
# seed then serves only through optimistic unchokes (every optimistic_unchoke_interval, 30 s
# by default), which stalled a fetch for ~30 s whenever a round fell inside it. Rotating the
# optimistic unchoke every second hands the slot on at once, to the peer that has waited
# longest (a newcomer such as a light client first) (docs/BENCHMARKS.md, "Swarm").
SERVER_OPTIMISTIC_UNCHOKE_INTERVAL_S = 1
DEFAULT_TIMEOUT_S = 30.0
DHT_GET_TIMEOUT_S = 10.0
# How often a session that does not announce looks its torrents' peers up (protocol §8.6).
PEER_LOOKUP_INTERVAL_S = 2.0
DHT_PUT_TIMEOUT_S = 15.0
HASH_CHUNK_BYTES = 1 << 20


class SwarmTimeout(TimedOut):
    """Nothing answered within the deadline (no peers, no DHT nodes, no item)."""


class FetchFailed(RemoteError):
    """The swarm gave us data that does not match what the pointer or caller expected."""


# ---------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True, slots=True)
class SwarmConfig:
    """How a session talks to the network. The defaults are loopback-only."""

    listen_host: str = LOOPBACK
    listen_port: int = 0  # 0: the OS picks; read it back from Swarm.port
    bootstrap: tuple[tuple[str, int], ...] = ()
    public_dht: bool = False
    upload_rate_limit_bytes_per_s: int = 0  # 0: unlimited
    # libtorrent puts loopback peers in its "local" peer class, which rate limits do not
    # touch (DESIGN §5); benchmarks map every address to the global class to cap loopback.
    rate_limit_loopback: bool = False
    # Peers uploaded to at once, and pieces a peer gets before the seed moves on to the next
    # (round-robin seed choking); libtorrent's defaults are 8 and 20. A server whose upload is
    # the scarce resource does best with SERVER_UNCHOKE_SLOTS and SERVER_SEED_PIECE_QUOTA:
    # it feeds one peer at a time with unique pieces and the peers spread the copies
    # (benchmarks/bench_swarm.py: 20 clients, server capped at 10 MB/s, 1.0x the snapshot
    # uploaded instead of 2.5x, and sooner).
    unchoke_slots: int = 8
    seed_piece_quota: int = 20
    # Seconds between optimistic unchokes (libtorrent's default: 30); a server with one
    # unchoke slot needs SERVER_OPTIMISTIC_UNCHOKE_INTERVAL_S (see there).
    optimistic_unchoke_interval_s: int = 30
    alert_queue_size: int = 100_000
    # BEP 43 read-only DHT node: it queries but others keep it out of their routing tables,
    # for short-lived clients, whose departed nodes would otherwise stall others' lookups.
    # Such a session also never announces the torrents it fetches (protocol §8.6): libtorrent
    # puts any node whose announce_peer carries a valid token into its routing table.
    dht_read_only: bool = False
    # A BEP 44 get answers with the newest item once no newer one has come for this long:
    # the traversal itself ends only when every queried node has answered or timed out, and
    # one departed node costs it libtorrent's full 15 s request timeout.
    dht_get_settle_s: float = 1.0

    def __post_init__(self) -> None:
        if not self.public_dht:
            for host in [self.listen_host, *(host for host, _ in self.bootstrap)]:
                if not is_loopback(host):
                    raise LocalError(
                        f"{host} is not a loopback address; only public_dht=True may leave "
                        "127.0.0.0/8 (DESIGN §6)"
                    )


def is_loopback(host: str) -> bool:
    """Whether ``host`` is an IPv4 address in 127.0.0.0/8 (a name never is: it could resolve
    anywhere, and resolving it is already traffic)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.version == 4 and address.is_loopback


def settings_for(config: SwarmConfig) -> dict[str, Any]:
    """The complete settings pack a session is constructed with (never defaults first)."""
    nodes = ",".join(f"{host}:{port}" for host, port in config.bootstrap)
    if config.public_dht and not nodes:
        nodes = PUBLIC_ROUTERS
    return {
        "listen_interfaces": f"{config.listen_host}:{config.listen_port}",
        "outgoing_interfaces": "" if config.public_dht else config.listen_host,
        "enable_dht": True,
        "dht_read_only": config.dht_read_only,
        "dht_bootstrap_nodes": nodes,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_ip_notifier": False,
        # Many nodes share one address on loopback or a LAN test net (DESIGN §5); the public
        # DHT keeps libtorrent's defences.
        "dht_restrict_routing_ips": config.public_dht,
        "dht_restrict_search_ips": config.public_dht,
        "dht_enforce_node_id": config.public_dht,
        "dht_prefer_verified_node_ids": config.public_dht,
        "allow_multiple_connections_per_ip": not config.public_dht,
        # Every node of a loopback DHT shares 127.0.0.1: the per-IP flood guard (5 packets/s,
        # then a 5-minute block) would cut nodes off from each other mid-lookup.
        "dht_block_ratelimit": 5 if config.public_dht else 1_000_000,
        # A private DHT's nodes are few, so each is among the closest to every target, and a
        # lookup waits out every dead one in its table; loopback loses no packets, so three
        # failed requests in a row (not 20) mean the node is gone.
        "dht_max_fail_count": 20 if config.public_dht else 3,
        "dht_upload_rate_limit": 8_000 if config.public_dht else 10_000_000,
        # Plain TCP: uTP's delay-based congestion control crawls on loopback.
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,
        # A fetch starts in upload mode (a seed then drops us as redundant) and may recheck
        # files (which drops every peer); libtorrent then waits min_reconnect_time (60 s by
        # default) before dialling the same seed again. In a private network, 1 s.
        "min_reconnect_time": 60 if config.public_dht else 1,
        # A client that holds all it wants so far is "upload only", and so is a seed: libtorrent
        # closes such connections as redundant, and the client's next want (the pieces after
        # the metadata, a light sync's next probe) then waited min_reconnect_time. Clients
        # (read-only sessions) keep them; servers and seeders keep libtorrent's default, which
        # measured 0.7 s faster for a capped full fetch (docs/BENCHMARKS.md).
        "close_redundant_connections": not config.dht_read_only,
        # Peers given by connect_peer are dialled on the next tick; 500 ms by default.
        "tick_interval": 500 if config.public_dht else 100,
        "upload_rate_limit": config.upload_rate_limit_bytes_per_s,
        "unchoke_slots_limit": config.unchoke_slots,
        "seeding_piece_quota": config.seed_piece_quota,
        "optimistic_unchoke_interval": config.optimistic_unchoke_interval_s,
        # Announce new torrents to the DHT at once rather than on the 15-minute cycle.
        "dht_announce_interval": 60,
        # Rounds are seeded side by side; do not let the queue stop old ones.
        "active_seeds": -1,
        "active_downloads": -1,
        "active_limit": -1,
        "alert_queue_size": config.alert_queue_size,
        "alert_mask": (
            lt.alert_category.error
            | lt.alert_category.status
            | lt.alert_category.storage
            | lt.alert_category.dht
            | lt.alert_category.dht_operation
            | lt.alert_category.piece_progress
        ),
    }


# ---------------------------------------------------------------------------------------------
# Round torrents


@dataclass(frozen=True, slots=True)
class RoundTorrent:
    """A round's torrent: the .torrent bytes and the hashes that name it."""

    name: str
    torrent: bytes  # bencoded .torrent, byte-identical wherever the files are identical
    infohash: bytes  # v1, 20 bytes
    infohash_v2: bytes  # BEP 52, 32 bytes

    @property
    def infohash_hex(self) -> str:
        return self.infohash.hex()

    def torrent_info(self) -> Any:
        return lt.torrent_info(self.torrent)


def build_round_torrent(round_dir: Path) -> RoundTorrent:
    """Hash a round directory into its torrent (protocol §8.2). Blocking: run it in a thread.

    Deterministic: the files of ``snapshot.ROUND_FILES`` in that order (each must exist, empty
    is fine), ``snapshot.PIECE_BYTES`` pieces, hybrid v1+v2, no mtime or attributes, and the
    "creation date" libtorrent adds is removed; no creator, trackers or web seeds.
    """
    entries = []
    for name in snapshot.ROUND_FILES:
        path = round_dir / name
        if not path.is_file():
            raise LocalError(f"round directory {round_dir} lacks {name}")
        entries.append(lt.create_file_entry(f"{round_dir.name}/{name}", path.stat().st_size))
    creator = lt.create_torrent(entries, snapshot.PIECE_BYTES)
    lt.set_piece_hashes(creator, str(round_dir.parent))
    generated = creator.generate()
    generated.pop(b"creation date", None)
    torrent = lt.bencode(generated)
    info = lt.torrent_info(torrent)
    hashes = info.info_hashes()
    return RoundTorrent(
        name=round_dir.name,
        torrent=bytes(torrent),
        infohash=hashes.v1.to_bytes(),
        infohash_v2=hashes.v2.to_bytes(),
    )


def file_sha256(path: Path) -> bytes:
    """SHA-256 of a file, streamed. Blocking: run it in a thread for big files."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.digest()


def parse_infohash(text: str) -> bytes:
    """A v1 infohash from hex; a concatenation of several 40-hex infohashes means the last."""
    cleaned = "".join(text.split()).lower()
    if not cleaned or len(cleaned) % 40:
        raise MalformedInput(f"an infohash is 40 hex digits (or a run of them), got {text!r}")
    try:
        return bytes.fromhex(cleaned[-40:])
    except ValueError:
        raise MalformedInput(f"not hexadecimal: {text!r}") from None


# ---------------------------------------------------------------------------------------------
# Events and results


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


@dataclass(frozen=True, slots=True)
class PutResult:
    public: bytes
    salt: bytes
    seq: int
    num_success: int  # DHT nodes that stored the item; 0 means nobody did


@dataclass(frozen=True, slots=True)
class TorrentStats:
    infohash: bytes
    payload_bytes_uploaded: int
    payload_bytes_downloaded: int
    num_peers: int
    is_seeding: bool


@dataclass
class _Get:
    """A pending BEP 44 get: the best item so far and the future the caller awaits."""

    public: bytes
    salt: bytes
    future: asyncio.Future[SignedItem | None]
    best: SignedItem | None = None
    settle: asyncio.TimerHandle | None = None  # answers with ``best`` unless a newer one comes

    def answer(self, item: SignedItem | None) -> None:
        if self.settle is not None:
            self.settle.cancel()
        if not self.future.done():
            self.future.set_result(item)


@dataclass
class _TorrentWatch:
    """Alert callbacks for one torrent, keyed by its v1 infohash."""

    callbacks: list[Callable[[Any], None]] = field(default_factory=list)


def _infohash_v1(handle: Any) -> bytes:
    return bytes(handle.info_hashes().v1.to_bytes())


# ---------------------------------------------------------------------------------------------
# The session


class Swarm:
    """A libtorrent session on the running asyncio loop. Use ``async with Swarm.start(...)``."""

    def __init__(self, config: SwarmConfig) -> None:
        self.config = config
        self._loop = asyncio.get_running_loop()
        # The settings go in at construction: a default session would contact public routers.
        settings: Any = settings_for(config)
        self._session: Any = lt.session(settings)
        if config.rate_limit_loopback:
            every = lt.ip_filter()
            every.add_rule("0.0.0.0", "255.255.255.255", 1 << lt.session.global_peer_class_id)
            self._session.set_peer_class_filter(every)
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        self._session.set_alert_fd(self._write_fd)
        self._loop.add_reader(self._read_fd, self._drain_alerts)
        self._puts: dict[tuple[bytes, bytes], deque[asyncio.Future[PutResult]]] = {}
        self._gets: dict[tuple[bytes, bytes], list[_Get]] = {}
        self._unattributed_not_found = 0
        self._torrents: dict[bytes, _TorrentWatch] = {}
        self._listening: asyncio.Future[int] = self._loop.create_future()
        self._dht_ready: asyncio.Future[None] = self._loop.create_future()
        self._closed = False
        self.handler_errors = 0
        # Alerts may have been queued before the fd was set; drain once.
        self._drain_alerts()

    @staticmethod
    def start(
        config: SwarmConfig | None = None, timeout_s: float = 10.0
    ) -> contextlib.AbstractAsyncContextManager[Swarm]:
        """``async with Swarm.start(config) as swarm``: listening on entry, closed on exit."""
        return _started(config or SwarmConfig(), timeout_s)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._read_fd)
        # Destroying a session blocks while it says goodbye to peers and DHT nodes: drop the
        # last reference in a worker thread, then close the pipe libtorrent wrote to.
        holder = [self._session]
        self._session = None
        holder[0].pause()
        await asyncio.to_thread(holder.clear)
        for fd in (self._read_fd, self._write_fd):
            os.close(fd)
        error = SwarmTimeout("swarm closed")
        for gets in self._gets.values():
            for pending in gets:
                if not pending.future.done():
                    pending.future.set_exception(error)
        for puts in self._puts.values():
            for future in puts:
                if not future.done():
                    future.set_exception(error)

    # -- alerts ---------------------------------------------------------------------------------

    def _drain_alerts(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._read_fd, 4096):
                pass
        if self._session is None:
            return
        for alert in self._session.pop_alerts():
            try:
                self._dispatch(alert)
            except Exception:
                # Our bug: say so loudly, count it (tests assert none), and still deliver the
                # rest of the batch so no waiter is left hanging on a lost alert.
                self.handler_errors += 1
                log.exception("bug handling %s", type(alert).__name__)

    def _dispatch(self, alert: Any) -> None:
        if isinstance(alert, lt.listen_succeeded_alert):
            if not self._listening.done() and alert.socket_type == lt.socket_type_t.tcp:
                self._listening.set_result(alert.port)
        elif isinstance(alert, lt.listen_failed_alert):
            if not self._listening.done():
                self._listening.set_exception(LocalError(f"cannot listen: {alert.message()}"))
        elif isinstance(alert, lt.dht_bootstrap_alert):
            if not self._dht_ready.done():
                self._dht_ready.set_result(None)
        elif isinstance(alert, lt.dht_put_alert):
            self._on_put(alert)
        elif isinstance(alert, lt.dht_get_peers_reply_alert):
            self._on_peers_found(alert)
        elif isinstance(alert, lt.dht_mutable_item_alert):
            self._on_mutable_item(alert)
        elif isinstance(alert, lt.torrent_alert):
            if isinstance(alert, lt.torrent_removed_alert):
                # The handle is already invalid; the alert carries the hashes itself.
                infohash = bytes(alert.info_hashes.v1.to_bytes())
            else:
                try:
                    infohash = _infohash_v1(alert.handle)
                except RuntimeError:  # the handle is gone (torrent removed)
                    return
            watch = self._torrents.get(infohash)
            if watch is not None:
                for callback in list(watch.callbacks):
                    callback(alert)

    def _on_put(self, alert: Any) -> None:
        key = (bytes(alert.public_key), bytes(alert.salt))
        waiting = self._puts.get(key)
        if not waiting:
            return
        future = waiting.popleft()
        if not waiting:
            del self._puts[key]
        if not future.done():
            future.set_result(PutResult(key[0], key[1], alert.seq, alert.num_success))

    def _on_mutable_item(self, alert: Any) -> None:
        public, salt = bytes(alert.key), bytes(alert.salt)
        value = alert.item
        # libtorrent reports "nothing found" as an empty item: seq 0, empty value, and a
        # signature that is zero or left over from the lookup. A pointer is never empty.
        found = (
            isinstance(value, bytes)
            and any(public)
            and any(bytes(alert.signature))
            and (value != b"" or int(alert.seq) != 0)
        )
        waiting = self._gets.get((public, salt), []) if found else []
        if found:
            item = SignedItem(public, salt, int(alert.seq), value, bytes(alert.signature))
            for pending in waiting:
                if pending.best is None or item.seq > pending.best.seq:
                    pending.best = item
                    if pending.settle is not None:
                        pending.settle.cancel()
                    pending.settle = self._loop.call_later(
                        self.config.dht_get_settle_s, self._settle, pending
                    )
        if not alert.authoritative:
            return
        waiting = self._gets.pop((public, salt), [])
        if waiting:
            # The traversal for this key is over: everyone asking for it gets the best.
            for pending in waiting:
                pending.answer(pending.best)
            return
        if any(public):
            return  # a late answer to a get already answered or timed out
        # A "nothing found" report under an all-zero key (older libtorrent) belongs to one of
        # the gets that has seen no item. Once there are as many such reports as such gets,
        # all of them are answered: nothing found.
        self._unattributed_not_found += 1
        empty = [p for gets in self._gets.values() for p in gets if p.best is None]
        if empty and self._unattributed_not_found >= len(empty):
            self._unattributed_not_found -= len(empty)
            for pending in empty:
                self._gets[(pending.public, pending.salt)].remove(pending)
                if not self._gets[(pending.public, pending.salt)]:
                    del self._gets[(pending.public, pending.salt)]
                pending.answer(None)

    def _on_peers_found(self, alert: Any) -> None:
        """Dial the peers our own lookup found (sessions that do not announce, §8.6)."""
        handle = self._session.find_torrent(alert.info_hash)
        if not handle.is_valid():
            return
        for host, port in alert.peers():
            if self.config.public_dht or is_loopback(host):
                handle.connect_peer((host, port))

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
            self._session.dht_get_peers(lt.sha1_hash(infohash))
            await asyncio.sleep(PEER_LOOKUP_INTERVAL_S)  # a period, not a wait for an event

    def _settle(self, pending: _Get) -> None:
        """No newer item for ``dht_get_settle_s``: answer with the best one; the traversal
        goes on without this get (its late answers find no one waiting)."""
        self._forget_get(pending)
        pending.answer(pending.best)

    def _forget_get(self, pending: _Get) -> None:
        gets = self._gets.get((pending.public, pending.salt), [])
        if pending in gets:
            gets.remove(pending)
            if not gets:
                del self._gets[(pending.public, pending.salt)]

    def _watch(self, infohash: bytes, callback: Callable[[Any], None]) -> Callable[[], None]:
        watch = self._torrents.setdefault(infohash, _TorrentWatch())
        watch.callbacks.append(callback)

        def unwatch() -> None:
            if callback in watch.callbacks:
                watch.callbacks.remove(callback)

        return unwatch

    # -- the session ----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP (and DHT UDP) port this session listens on."""
        invariant(self._listening.done(), "port read before the session listened")
        return self._listening.result()

    @property
    def address(self) -> tuple[str, int]:
        return (self.config.listen_host, self.port)

    async def wait_listening(self, timeout_s: float = 10.0) -> int:
        return await _deadline(asyncio.shield(self._listening), timeout_s, "listening")

    async def wait_dht_ready(self, timeout_s: float = 10.0) -> None:
        """Wait for the first DHT bootstrap to finish (it may have found few nodes)."""
        await _deadline(asyncio.shield(self._dht_ready), timeout_s, "DHT bootstrap")

    def add_dht_node(self, host: str, port: int) -> None:
        if not self.config.public_dht and not is_loopback(host):
            raise LocalError(f"{host} is not a loopback address (DESIGN §6)")
        self._session.add_dht_node((host, port))

    # -- BEP 44 ---------------------------------------------------------------------------------

    async def put_pointer(
        self,
        key: KeyPair,
        value: bytes,
        salt: bytes = SALT,
        timeout_s: float = DHT_PUT_TIMEOUT_S,
    ) -> PutResult:
        """Store ``value`` (a pointer record's bytes) as our BEP 44 item under ``key``.

        Refuses a value whose bencoded form exceeds 1000 bytes: libtorrent would drop it
        silently. libtorrent picks seq = the highest seq it finds + 1 (no CAS, DESIGN §5).
        """
        if len(bencode(value)) > VALUE_MAX_BYTES:
            raise ValueError(
                f"BEP 44 value is {len(bencode(value))} bytes bencoded, limit {VALUE_MAX_BYTES}"
            )
        return await self.put_raw(key.libtorrent_secret(), key.public, value, salt, timeout_s)

    async def put_raw(
        self,
        secret64: bytes,
        public: bytes,
        value: bytes,
        salt: bytes = SALT,
        timeout_s: float = DHT_PUT_TIMEOUT_S,
    ) -> PutResult:
        """A BEP 44 put with no checks, for tests that need a malformed item in the DHT."""
        future: asyncio.Future[PutResult] = self._loop.create_future()
        self._puts.setdefault((public, salt), deque()).append(future)
        self._session.dht_put_mutable_item(secret64, public, value, salt)
        return await _deadline(future, timeout_s, "DHT put")

    async def get_item(
        self, public: bytes, salt: bytes = SALT, timeout_s: float = DHT_GET_TIMEOUT_S
    ) -> SignedItem | None:
        """The newest BEP 44 item under (public, salt), unverified; None if none was found.

        Answers once the traversal ends, or ``dht_get_settle_s`` after the newest item came
        if nothing newer follows; on timeout, the best item seen so far (possibly None).
        """
        future: asyncio.Future[SignedItem | None] = self._loop.create_future()
        pending = _Get(public, salt, future)
        self._gets.setdefault((public, salt), []).append(pending)
        self._session.dht_get_mutable_item(public, salt)
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout_s)
        except TimeoutError:
            self._forget_get(pending)
            pending.answer(pending.best)
            return pending.best

    async def get_items(
        self,
        publics: Iterable[bytes],
        salt: bytes = SALT,
        timeout_s: float = DHT_GET_TIMEOUT_S,
    ) -> dict[bytes, SignedItem]:
        """Get every key's item in parallel; keys with nothing found are absent."""
        keys = list(dict.fromkeys(publics))
        found = await asyncio.gather(*(self.get_item(k, salt, timeout_s) for k in keys))
        return {k: item for k, item in zip(keys, found, strict=True) if item is not None}

    async def get_pointers(
        self,
        quorum: Sequence[bytes],
        salt: bytes = SALT,
        timeout_s: float = DHT_GET_TIMEOUT_S,
    ) -> tuple[dict[bytes, PointerRecord], dict[bytes, RemoteError]]:
        """Every quorum server's pointer, fetched in parallel and verified (protocol §8.3).

        Returns the verified records and, separately, why each refused item was refused (the
        publisher's fault: the caller logs it and goes on). Keys with no item are in neither.
        """
        items = await self.get_items(quorum, salt, timeout_s)
        records: dict[bytes, PointerRecord] = {}
        refused: dict[bytes, RemoteError] = {}
        for public, item in items.items():
            try:
                records[public] = verify_item(item, quorum, salt)
            except RemoteError as error:
                refused[public] = error
        return records, refused

    # -- seeding --------------------------------------------------------------------------------

    async def seed(
        self, round_dir: Path, torrent: RoundTorrent | None = None, super_seed: bool = False
    ) -> RoundTorrent:
        """Build (unless given) and seed a round's torrent from the files in ``round_dir``.

        ``super_seed`` (BEP 16): offer each peer only pieces nobody has yet, so the swarm,
        not this session, spreads the copies; for a server that publishes a round.
        """
        if torrent is None:
            torrent = await asyncio.to_thread(build_round_torrent, round_dir)
        params = lt.add_torrent_params()
        params.ti = torrent.torrent_info()
        params.save_path = str(round_dir.parent)
        # seed_mode: we just hashed these files, libtorrent need not re-read them; it
        # verifies each piece lazily the first time a peer asks for it.
        params.flags = (params.flags | lt.torrent_flags.seed_mode) & ~(
            lt.torrent_flags.auto_managed | lt.torrent_flags.paused
        )
        if super_seed:
            params.flags |= lt.torrent_flags.super_seeding
        await self._add(params, torrent.infohash)
        return torrent

    async def _add(self, params: Any, infohash: bytes, timeout_s: float = 10.0) -> Any:
        added: asyncio.Future[Any] = self._loop.create_future()

        def on_alert(alert: Any) -> None:
            if isinstance(alert, lt.add_torrent_alert) and not added.done():
                if alert.error.value():
                    added.set_exception(LocalError(f"add torrent: {alert.error.message()}"))
                else:
                    added.set_result(alert.handle)

        unwatch = self._watch(infohash, on_alert)
        try:
            self._session.async_add_torrent(params)
            return await _deadline(added, timeout_s, "add torrent")
        finally:
            unwatch()

    async def remove(self, infohash: bytes, delete_files: bool = False) -> None:
        handle = self._session.find_torrent(lt.sha1_hash(infohash))
        if not handle.is_valid():
            return
        removed: asyncio.Future[None] = self._loop.create_future()

        def on_alert(alert: Any) -> None:
            if isinstance(alert, lt.torrent_removed_alert) and not removed.done():
                removed.set_result(None)

        unwatch = self._watch(infohash, on_alert)
        try:
            flags = lt.session.delete_files if delete_files else 0
            self._session.remove_torrent(handle, flags)
            with contextlib.suppress(SwarmTimeout):
                await _deadline(removed, 10.0, "remove torrent")
        finally:
            unwatch()
            self._torrents.pop(infohash, None)

    def stats(self, infohash: bytes) -> TorrentStats | None:
        handle = self._session.find_torrent(lt.sha1_hash(infohash))
        if not handle.is_valid():
            return None
        status = handle.status()
        return TorrentStats(
            infohash,
            int(status.total_payload_upload),
            int(status.total_payload_download),
            int(status.num_peers),
            bool(status.is_seeding),
        )

    def infohashes(self) -> list[bytes]:
        return [_infohash_v1(h) for h in self._session.get_torrents()]

    # -- fetching -------------------------------------------------------------------------------

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
        expect_state_hash: bytes | None = None,
        peers: Sequence[tuple[str, int]] = (),
    ) -> FetchResult:
        """Download a round by v1 infohash into ``save_dir/<torrent name>/``; keep seeding it.

        ``reuse_from``: a previous round's directory; its ``balances`` is copied into place
        before libtorrent checks the files, so only changed pieces travel (DESIGN §3).
        ``files`` (names inside the round) or ``pieces`` (indices) restrict what is fetched.
        ``expect_infohash_v2`` and ``expect_state_hash`` are checked once the data is here;
        a mismatch raises FetchFailed. ``peers`` are dialled directly besides the DHT.
        Raises SwarmTimeout if the metadata or the data do not arrive within ``timeout_s``.
        """
        for host, _ in peers:
            if not self.config.public_dht and not is_loopback(host):
                raise LocalError(f"peer {host} is not a loopback address (DESIGN §6)")
        started = time.monotonic()
        deadline = started + timeout_s
        save_dir.mkdir(parents=True, exist_ok=True)
        params = lt.parse_magnet_uri(f"magnet:?xt=urn:btih:{infohash.hex()}")
        params.save_path = str(save_dir)
        # upload_mode: fetch the metadata but no pieces until we have prepared the files.
        params.flags = (params.flags | lt.torrent_flags.upload_mode) & ~(
            lt.torrent_flags.auto_managed | lt.torrent_flags.paused
        )
        if self.config.dht_read_only:
            params.flags |= lt.torrent_flags.disable_dht  # no announce: _look_up_peers
        state = _FetchState(self._loop, infohash, on_progress)
        unwatch = self._watch(infohash, state.on_alert)
        lookups = None
        succeeded = False
        try:
            handle = await self._add(params, infohash)
            state.handle = handle
            lookups = self._start_lookups(infohash)  # once the torrent is there to dial from
            for host, port in peers:
                handle.connect_peer((host, port))
            if handle.status().has_metadata and not state.metadata.done():
                state.metadata.set_result(None)
            await _deadline(state.metadata, deadline - time.monotonic(), "torrent metadata")
            info = handle.torrent_file()
            name = info.name()
            round_dir = save_dir / name
            hashes = info.info_hashes()
            infohash_v2 = bytes(hashes.v2.to_bytes()) if hashes.has_v2() else b""
            if expect_infohash_v2 is not None and infohash_v2 != expect_infohash_v2:
                raise FetchFailed(f"torrent {infohash.hex()} is not the certified v2 infohash")
            layout = info.layout()
            wanted = _wanted_pieces(info, layout, files, pieces)
            state.wanted = wanted
            if reuse_from is not None and await asyncio.to_thread(
                _copy_reusable, reuse_from, round_dir
            ):
                state.checked = self._loop.create_future()
                handle.force_recheck()
                await _deadline(state.checked, deadline - time.monotonic(), "checking files")
                # The check libtorrent ran by itself when the metadata arrived may have ended
                # just now, answering for ours: wait until no check is running any more.
                while handle.status().state in _CHECKING_STATES:
                    state.checked = self._loop.create_future()
                    await _deadline(state.checked, deadline - time.monotonic(), "checking files")
                state.recount()
                if state.missing == set(wanted):
                    # Nothing of the copied file was recognised: the check that answered may
                    # have started before the copy. One more check settles it (and costs
                    # little if the round really changed every piece).
                    state.checked = self._loop.create_future()
                    handle.force_recheck()
                    await _deadline(state.checked, deadline - time.monotonic(), "checking files")
                    while handle.status().state in _CHECKING_STATES:
                        state.checked = self._loop.create_future()
                        await _deadline(
                            state.checked, deadline - time.monotonic(), "checking files"
                        )
            priorities = [0] * info.num_pieces()
            for index in wanted:
                priorities[index] = 4
            handle.prioritize_pieces(priorities)
            handle.unset_flags(lt.torrent_flags.upload_mode)
            # A seed drops an upload-only peer as redundant, so the peers that gave us the
            # metadata may be gone by now: dial them again, now that we want pieces.
            for host, port in peers:
                handle.connect_peer((host, port))
            state.recount()
            await _deadline(state.done, deadline - time.monotonic(), "pieces")
            status = handle.status()
            paths = tuple(
                save_dir / layout.file_path(i)
                for i in range(layout.num_files())
                if not layout.file_flags(i) & lt.file_storage.flag_pad_file
                and (files is None or layout.file_name(i) in files)
            )
            # Piece hashes pass before the disk thread has written every block; the files are
            # complete only once the cache is flushed.
            state.flushed = self._loop.create_future()
            handle.flush_cache()
            await _deadline(state.flushed, deadline - time.monotonic(), "disk flush")
            if expect_state_hash is not None:
                balances = round_dir / snapshot.BALANCES
                digest = await asyncio.to_thread(file_sha256, balances)
                if digest != expect_state_hash:
                    raise FetchFailed(f"{balances} does not hash to the expected state hash")
            succeeded = True
            return FetchResult(
                infohash=infohash,
                infohash_v2=infohash_v2,
                round_dir=round_dir,
                files=paths,
                payload_bytes_downloaded=int(status.total_payload_download),
                pieces_wanted=len(wanted),
                seconds=time.monotonic() - started,
            )
        finally:
            unwatch()
            await _stop(lookups)
            if not succeeded and not self._closed:
                # Neither half-fetched nor unverified data is seeded on; files stay for reuse.
                await self.remove(infohash)

    def file_sizes(self, infohash: bytes) -> dict[str, int]:
        """Sizes of the (non-pad) files of a torrent in this session whose metadata we have,
        by name inside the round; {} if the torrent is unknown or has no metadata yet."""
        handle = self._session.find_torrent(lt.sha1_hash(infohash))
        if not handle.is_valid() or not handle.status().has_metadata:
            return {}
        layout = handle.torrent_file().layout()
        return {
            layout.file_name(i): int(layout.file_size(i))
            for i in range(layout.num_files())
            if not layout.file_flags(i) & lt.file_storage.flag_pad_file
        }

    async def fetch_pieces(
        self, infohash: bytes, pieces: Iterable[int], timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> int:
        """Fetch more pieces of a torrent that ``fetch`` added (a light client probing one
        more place of ``balances``, protocol §8.6), each checked against the piece hashes,
        and flush them to disk. Returns the torrent's payload bytes downloaded so far."""
        handle = self._session.find_torrent(lt.sha1_hash(infohash))
        if not handle.is_valid():
            raise LocalError(f"torrent {infohash.hex()} is not in the session")
        deadline = time.monotonic() + timeout_s
        state = _FetchState(self._loop, infohash, None)
        state.handle = handle
        state.wanted = _wanted_pieces(handle.torrent_file(), None, None, pieces)
        unwatch = self._watch(infohash, state.on_alert)
        lookups = self._start_lookups(infohash)
        try:
            for index in state.wanted:
                handle.piece_priority(index, 4)
            state.recount()
            await _deadline(state.done, deadline - time.monotonic(), "pieces")
            state.flushed = self._loop.create_future()
            handle.flush_cache()
            await _deadline(state.flushed, deadline - time.monotonic(), "disk flush")
            return int(handle.status().total_payload_download)
        finally:
            unwatch()
            await _stop(lookups)


class Publisher:
    """Keeps one BEP 44 pointer alive: puts it at once, and again every ``republish_s``.

    DHT nodes forget items after about two hours (DESIGN §3), so ``run`` republishes at least
    hourly. Run it as a task of the owner's TaskGroup; cancel it to stop.
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
        self.last: PutResult | None = None
        self.on_put = on_put
        self._changed = asyncio.Event()

    async def publish(self, value: bytes) -> PutResult:
        """Put ``value`` now (ValueError if over 1000 bytes) and keep republishing it."""
        self.value = value
        self._changed.set()
        return await self._put()

    async def _put(self) -> PutResult:
        invariant(self.value is not None, "put before anything was published")
        assert self.value is not None
        result = await self.swarm.put_pointer(self.key, self.value, self.salt)
        self.puts += 1
        self.last = result
        if self.on_put is not None:
            self.on_put(result)
        if result.num_success == 0:
            log.warning("pointer put reached no DHT node; retrying in %.0f s", self.republish_s)
        return result

    async def run(self) -> None:
        while True:
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), self.republish_s)
            except TimeoutError:
                if self.value is not None:
                    try:
                        await self._put()
                    except SwarmTimeout as error:
                        log.warning("pointer republish: %s", error)


@contextlib.asynccontextmanager
async def _started(config: SwarmConfig, timeout_s: float) -> AsyncIterator[Swarm]:
    swarm = Swarm(config)
    try:
        await swarm.wait_listening(timeout_s)
        yield swarm
    finally:
        await swarm.close()


_CHECKING_STATES = (
    lt.torrent_status.states.checking_files,
    lt.torrent_status.states.checking_resume_data,
)


class _FetchState:
    """Turns one torrent's alerts into the futures ``Swarm.fetch`` waits on."""

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
            error = LocalError(f"torrent {self.infohash.hex()}: {alert.message()}")
            for future in (self.metadata, self.checked, self.done, self.flushed):
                if future is not None and not future.done():
                    future.set_exception(error)


def _wanted_pieces(
    info: Any, layout: Any, files: Sequence[str] | None, pieces: Iterable[int] | None
) -> frozenset[int]:
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
            if name not in known:
                raise ValueError(f"no file {name!r} in the torrent")
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


async def _stop(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()
        await asyncio.wait([task])  # unlike awaiting it, never swallows our own cancellation


async def _deadline(awaitable: asyncio.Future[_T], timeout_s: float, what: str) -> _T:
    try:
        return await asyncio.wait_for(awaitable, max(timeout_s, 0.0))
    except TimeoutError:
        raise SwarmTimeout(f"no {what} within {timeout_s:.1f} s") from None
