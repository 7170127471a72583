"""The session: one libtorrent session driven from asyncio (protocol §8).

Owns: the ``Swarm`` object (construction with the complete settings pack, listening, DHT
bootstrap, closing), its alert pipe on the asyncio loop and the dispatch of alerts to their
handlers, adding, seeding and removing torrents, and per-torrent alert watches. BEP 44 items
(items.py) and fetching (fetch.py) are the session's other two parts, mixed into ``Swarm``.

How it runs: libtorrent writes a byte to a pipe whenever its alert queue becomes non-empty
(``session.set_alert_fd``); the asyncio loop watches that pipe with ``add_reader`` and turns
alerts into futures and scryp's own frozen events. Nothing sleeps to wait: every wait is on a
future with a deadline (``TimedOut``); anything asked of a closed session is ``NotAvailable``.

Network safety (protocol §8.8): by default (loopback mode) a session listens on 127.0.0.1
only, bootstraps its DHT from the loopback nodes it is given and nothing else (libtorrent's
default routers are public hosts), and has LSD, UPnP and NAT-PMP off. Private mode allows any
unicast address, still bootstrapping only from the nodes given; joining the public Mainline DHT
needs ``SwarmConfig(network=Mode.PUBLIC)``, which no test or default run sets.

The DHT node cache (``SwarmConfig.dht_state_file``, ``dhtstate``): loaded at construction,
saved by ``save_dht_state`` (periodically by the owner's ``keep_dht_state`` task) and at close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libtorrent as lt

from scryp.core.seedbudget import UNLIMITED, SeedBudget, SeedBudgets, Seeded
from scryp.errors import ConfigError, LocalError, NotAvailable, TimedOut, invariant

from . import dhtstate
from .fetch import Fetching
from .items import Bep44
from .settings import SwarmConfig, settings_for
from .torrent import RoundTorrent, build_round_torrent
from .waits import deadline

log = logging.getLogger(__name__)

TORRENT_ADD_TIMEOUT_S = 10.0
TORRENT_REMOVE_TIMEOUT_S = 10.0
LISTEN_TIMEOUT_S = 10.0
DHT_STATE_SAVE_S = 300.0  # how often a long-running owner saves the DHT node cache
SEED_BUDGET_PERIOD_S = 1.0  # how often a server looks at what each torrent uploaded (§8.9.1)
PRIORITY_SEED = 4  # libtorrent's default file priority: keep (and serve) the file


@dataclass(frozen=True, slots=True)
class SwarmTotals:
    """The whole session's figures for /metrics: upload counts torrents removed since too."""

    payload_bytes_uploaded: int
    num_peers: int
    torrents: int


@dataclass(frozen=True, slots=True)
class TorrentStats:
    infohash: bytes
    payload_bytes_uploaded: int
    payload_bytes_downloaded: int
    num_peers: int
    is_seeding: bool


def _infohash_v1(handle: Any) -> bytes:
    return bytes(handle.info_hashes().v1.to_bytes())


class Swarm(Bep44, Fetching):
    """A libtorrent session on the running asyncio loop. Use ``async with Swarm.start(...)``."""

    def __init__(self, config: SwarmConfig) -> None:
        self.config = config
        self._loop = asyncio.get_running_loop()
        # The settings go in at construction: a default session would contact public routers.
        settings: Any = settings_for(config)
        params = dhtstate.session_params(settings, config.dht_state_file, config.allows)
        self._session: Any = lt.session(params)
        if config.rate_limit_loopback:
            # libtorrent puts loopback peers in its "local" peer class, which rate limits do
            # not touch: map every address to the global class.
            every = lt.ip_filter()
            every.add_rule("0.0.0.0", "255.255.255.255", 1 << lt.session.global_peer_class_id)
            self._session.set_peer_class_filter(every)
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        self._session.set_alert_fd(self._write_fd)
        self._loop.add_reader(self._read_fd, self._drain_alerts)
        self._init_items()
        self._peer_waiters = {}
        self._torrents: dict[bytes, list[Callable[[Any], None]]] = {}
        self._listening: asyncio.Future[int] = self._loop.create_future()
        self._dht_ready: asyncio.Future[None] = self._loop.create_future()
        self._closed = False
        self.handler_errors = 0
        self._uploaded_by_removed_bytes = 0  # so the upload total never goes back
        # Alerts may have been queued before the fd was set; drain once.
        self._drain_alerts()

    @staticmethod
    def start(
        config: SwarmConfig | None = None, timeout_s: float = LISTEN_TIMEOUT_S
    ) -> contextlib.AbstractAsyncContextManager[Swarm]:
        """``async with Swarm.start(config) as swarm``: listening on entry, closed on exit."""
        return _started(config or SwarmConfig(), timeout_s)

    def _live(self) -> Any:
        """The libtorrent session; ``NotAvailable`` once this swarm is closed."""
        if self._session is None:
            raise NotAvailable("swarm closed")
        return self._session

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._read_fd)
        if self.config.dht_state_file is not None:
            with contextlib.suppress(OSError):  # only a cache; the reason is logged
                await asyncio.to_thread(self._save_dht_state)
        # Destroying a session blocks while it says goodbye to peers and DHT nodes: drop the
        # last reference in a worker thread, then close the pipe libtorrent wrote to.
        holder = [self._session]
        self._session = None
        holder[0].pause()
        await asyncio.to_thread(holder.clear)
        for fd in (self._read_fd, self._write_fd):
            os.close(fd)
        self._fail_items(NotAvailable("swarm closed"))
        self._close_direct()

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
                # The operator's address or port: a configuration problem (exit status 2).
                failed = ConfigError(f"cannot listen: {alert.message()}")
                self._listening.set_exception(failed)
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
            self._on_torrent_alert(alert)

    def _on_torrent_alert(self, alert: Any) -> None:
        """Hand a torrent's alert to whoever watches that torrent."""
        if isinstance(alert, lt.torrent_removed_alert):
            # The handle is already invalid; the alert carries the hashes itself.
            infohash = bytes(alert.info_hashes.v1.to_bytes())
        else:
            try:
                infohash = _infohash_v1(alert.handle)
            except RuntimeError:  # the handle is gone (torrent removed)
                return
        for callback in list(self._torrents.get(infohash, ())):
            callback(alert)

    def _watch(self, infohash: bytes, callback: Callable[[Any], None]) -> Callable[[], None]:
        """Call ``callback`` with each of the torrent's alerts until the returned function is
        called."""
        callbacks = self._torrents.setdefault(infohash, [])
        callbacks.append(callback)

        def unwatch() -> None:
            if callback in callbacks:
                callbacks.remove(callback)

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

    async def wait_listening(self, timeout_s: float = LISTEN_TIMEOUT_S) -> int:
        return await deadline(asyncio.shield(self._listening), timeout_s, "listening")

    async def wait_dht_ready(self, timeout_s: float = 10.0) -> None:
        """Wait for the first DHT bootstrap to finish (it may have found few nodes)."""
        await deadline(asyncio.shield(self._dht_ready), timeout_s, "DHT bootstrap")

    def dht_node_count(self) -> int:
        """Nodes in this session's DHT routing table now (for reports and diagnosis)."""
        return int(self._live().status().dht_nodes)

    def _save_dht_state(self) -> int:
        path = self.config.dht_state_file
        if path is None or self._session is None:
            return 0
        try:
            return dhtstate.save(self._session, path, self.config.allows)
        except OSError as error:
            log.warning("cannot save the DHT node cache %s: %s", path, error)
            raise

    async def save_dht_state(self) -> int:
        """Save the DHT node cache now (if this session has one); the nodes saved."""
        return await asyncio.to_thread(self._save_dht_state)

    async def keep_dht_state(self, period_s: float = DHT_STATE_SAVE_S) -> None:
        """Save the DHT node cache every ``period_s`` until cancelled (a task of the owner's
        TaskGroup; ``close`` saves it once more)."""
        while True:
            await asyncio.sleep(period_s)  # a period, not a wait for an event
            with contextlib.suppress(OSError):  # logged; the next period tries again
                await self.save_dht_state()

    async def keep_seed_budget(
        self, budget: SeedBudget, period_s: float = SEED_BUDGET_PERIOD_S
    ) -> None:
        """Every ``period_s`` until cancelled, set each seeded torrent's upload limit by the
        server's upload budget (protocol §8.9.1; a task of the owner's TaskGroup). A torrent
        that stops seeding gets its full speed back; one removed meanwhile is skipped."""
        budgets = SeedBudgets(budget)
        applied: dict[bytes, int] = {}
        while True:
            await asyncio.sleep(period_s)  # a period, not a wait for an event
            applied = self._apply_seed_budget(budgets, applied)

    def _apply_seed_budget(
        self, budgets: SeedBudgets, applied: dict[bytes, int]
    ) -> dict[bytes, int]:
        handles = {_infohash_v1(h): h for h in self._live().get_torrents() if h.is_valid()}
        seeded = []
        for infohash, handle in handles.items():
            with contextlib.suppress(RuntimeError):  # removed since get_torrents: skip it
                status = handle.status(0)
                if status.is_seeding:
                    size = int(status.total_wanted)
                    seeded.append(Seeded(infohash, size, int(status.total_payload_upload)))
        limits = budgets.limits(seeded, asyncio.get_running_loop().time())
        for infohash in applied.keys() - limits.keys():
            limits[infohash] = UNLIMITED  # no longer seeding: no longer held back
        for infohash, limit in limits.items():
            if applied.get(infohash, UNLIMITED) != limit and infohash in handles:
                with contextlib.suppress(RuntimeError):
                    handles[infohash].set_upload_limit(limit)
        return {infohash: limit for infohash, limit in limits.items() if limit != UNLIMITED}

    def add_dht_node(self, host: str, port: int) -> None:
        if not self.config.allows(host):
            raise LocalError(f"{host} is not allowed in {self.config.network} mode (protocol §8.8)")
        self._live().add_dht_node((host, port))

    # -- torrents -------------------------------------------------------------------------------

    async def seed(
        self, round_dir: Path, torrent: RoundTorrent | None = None, super_seed: bool = False
    ) -> RoundTorrent:
        """Build (unless given) and seed a round's torrent from the files in ``round_dir``
        (protocol §8.9).

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

    def info_dict(self, infohash: bytes) -> bytes:
        """The bencoded info dict of a torrent in this session whose metadata we have: its
        SHA-256 is the v2 infohash (protocol §8.2). An archive keeps it to seed the round's
        files again after a restart (``seed_files``); a verifier checks it by hand."""
        handle = self._live().find_torrent(lt.sha1_hash(infohash))
        if not handle.is_valid() or not handle.status().has_metadata:
            raise LocalError(f"no metadata for torrent {infohash.hex()} in this session")
        return bytes(handle.torrent_file().info_section())

    async def seed_files(
        self, info_dict: bytes, save_dir: Path, files: Sequence[str]
    ) -> RoundTorrent:
        """Seed the ``files`` (names inside the round) of the round torrent whose info dict is
        ``info_dict`` from ``save_dir/<round>/``; its other files are not wanted, so nothing
        is downloaded. libtorrent checks the files present against the piece hashes first."""
        torrent = b"d4:info" + info_dict + b"e"  # a canonical one-key dict around the info
        info = lt.torrent_info(torrent)
        hashes = info.info_hashes()
        layout = info.layout()
        params = lt.add_torrent_params()
        params.ti = info
        params.save_path = str(save_dir)
        params.file_priorities = [
            PRIORITY_SEED if layout.file_name(i) in files else 0 for i in range(layout.num_files())
        ]
        params.flags &= ~(lt.torrent_flags.auto_managed | lt.torrent_flags.paused)
        name = str(info.name())
        await self._add(params, hashes.v1.to_bytes())
        return RoundTorrent(name, torrent, hashes.v1.to_bytes(), hashes.v2.to_bytes())

    async def _add(
        self, params: Any, infohash: bytes, timeout_s: float = TORRENT_ADD_TIMEOUT_S
    ) -> Any:
        """Add a torrent and return its handle once libtorrent has added it."""
        session = self._live()
        added: asyncio.Future[Any] = self._loop.create_future()

        def on_alert(alert: Any) -> None:
            if isinstance(alert, lt.add_torrent_alert) and not added.done():
                if alert.error.value():
                    added.set_exception(LocalError(f"add torrent: {alert.error.message()}"))
                else:
                    added.set_result(alert.handle)

        unwatch = self._watch(infohash, on_alert)
        try:
            session.async_add_torrent(params)
            return await deadline(added, timeout_s, "add torrent")
        finally:
            unwatch()

    async def remove(self, infohash: bytes, delete_files: bool = False) -> None:
        """Stop seeding a torrent (and delete its files if asked); nothing if unknown."""
        session = self._live()
        handle = session.find_torrent(lt.sha1_hash(infohash))
        if not handle.is_valid():
            return
        removed: asyncio.Future[None] = self._loop.create_future()

        def on_alert(alert: Any) -> None:
            if isinstance(alert, lt.torrent_removed_alert) and not removed.done():
                removed.set_result(None)

        self._uploaded_by_removed_bytes += int(handle.status().total_payload_upload)
        unwatch = self._watch(infohash, on_alert)
        try:
            flags = lt.session.delete_files if delete_files else 0
            session.remove_torrent(handle, flags)
            with contextlib.suppress(TimedOut):
                await deadline(removed, TORRENT_REMOVE_TIMEOUT_S, "remove torrent")
        finally:
            unwatch()
            self._torrents.pop(infohash, None)

    def stats(self, infohash: bytes) -> TorrentStats | None:
        handle = self._live().find_torrent(lt.sha1_hash(infohash))
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

    def totals(self) -> SwarmTotals:
        """Payload bytes uploaded since the session started, peers and torrents now."""
        uploaded, peers = self._uploaded_by_removed_bytes, 0
        handles = self._live().get_torrents()
        for handle in handles:
            status = handle.status()
            uploaded += int(status.total_payload_upload)
            peers += int(status.num_peers)
        return SwarmTotals(uploaded, peers, len(handles))

    def has_torrent(self, infohash: bytes) -> bool:
        """Whether this session holds the torrent of a v1 infohash or a truncated v2 one (a
        hybrid torrent is announced under both)."""
        return bool(self._live().find_torrent(lt.sha1_hash(infohash)).is_valid())

    def infohashes(self) -> list[bytes]:
        return [_infohash_v1(h) for h in self._live().get_torrents()]


@contextlib.asynccontextmanager
async def _started(config: SwarmConfig, timeout_s: float) -> AsyncIterator[Swarm]:
    swarm = Swarm(config)
    try:
        await swarm.wait_listening(timeout_s)
        yield swarm
    finally:
        await swarm.close()
