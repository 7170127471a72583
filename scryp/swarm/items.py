"""BEP 44 mutable items in the session: the servers' signed pointers (protocol §8.3).

Owns: putting our item, getting anyone's newest item, and the bookkeeping that matches
libtorrent's put and get alerts to the callers waiting on them. ``Bep44`` is a part of
``Swarm`` (session.py), which owns the libtorrent session and routes these alerts here.

Invariants: a value whose bencoded form exceeds BEP 44's 1000 bytes is refused before the
put (libtorrent would drop it silently); an item is returned unverified by ``get_item`` and
only ever verified against ``.keys`` by ``get_pointers`` (``scryp.core.pointer.verify_item``);
when the session closes, every waiting put and get fails with ``NotAvailable``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from scryp.core.bencode import encode as bencode
from scryp.core.pointer import SALT, VALUE_MAX_BYTES, PointerRecord, SignedItem, verify_item
from scryp.crypto import KeyPair
from scryp.errors import NotAvailable, RemoteError
from scryp.netmode import Mode, unspecified

from .direct import DirectStore
from .settings import SwarmConfig
from .waits import deadline

log = logging.getLogger(__name__)

DHT_GET_TIMEOUT_S = 10.0
DHT_PUT_TIMEOUT_S = 15.0


@dataclass(frozen=True, slots=True)
class PutResult:
    public: bytes
    salt: bytes
    seq: int
    num_success: int  # DHT nodes that stored the item; 0 means nobody did


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


def _is_found(alert: Any) -> bool:
    """Whether a mutable item alert carries an item. libtorrent reports "nothing found" as an
    empty item: seq 0, empty value, and a signature that is zero or left over from the
    lookup. A pointer is never empty."""
    return (
        isinstance(alert.item, bytes)
        and any(bytes(alert.key))
        and any(bytes(alert.signature))
        and (alert.item != b"" or int(alert.seq) != 0)
    )


class Bep44:
    """The BEP 44 part of ``Swarm``: puts, gets and their alerts."""

    config: SwarmConfig
    _loop: asyncio.AbstractEventLoop

    if TYPE_CHECKING:

        def _live(self) -> Any: ...

        @property
        def port(self) -> int: ...

    def _init_items(self) -> None:
        self._puts: dict[tuple[bytes, bytes], deque[asyncio.Future[PutResult]]] = {}
        self._gets: dict[tuple[bytes, bytes], list[_Get]] = {}
        self._unattributed_not_found = 0
        self._direct: DirectStore | None = None  # opened by the first direct store

    def _close_direct(self) -> None:
        """The session closed: so does the direct store's socket (§8.3.4)."""
        if self._direct is not None:
            self._direct.close()
            self._direct = None

    def _fail_items(self, error: NotAvailable) -> None:
        """The session closed: nothing waiting for an item will get one."""
        for gets in self._gets.values():
            for pending in gets:
                if not pending.future.done():
                    pending.future.set_exception(error)
        for puts in self._puts.values():
            for future in puts:
                if not future.done():
                    future.set_exception(error)

    async def put_pointer(
        self,
        key: KeyPair,
        value: bytes,
        salt: bytes = SALT,
        timeout_s: float = DHT_PUT_TIMEOUT_S,
    ) -> PutResult:
        """Store ``value`` (a pointer record's bytes) as our BEP 44 item under ``key``.

        Refuses a value whose bencoded form exceeds 1000 bytes: libtorrent would drop it
        silently. libtorrent picks seq = the highest seq it finds + 1 (no compare-and-swap,
        protocol §8.3).
        """
        if len(bencode(value)) > VALUE_MAX_BYTES:
            raise ValueError(
                f"BEP 44 value is {len(bencode(value))} bytes bencoded, limit {VALUE_MAX_BYTES}"
            )
        return await self.put_raw(key.libtorrent_secret(), key.public, value, salt, timeout_s)

    def _direct_store(self) -> DirectStore:
        if self._direct is None:
            self._direct = DirectStore(self.config.listen_host)
        return self._direct

    def known_nodes(self) -> list[tuple[str, int]]:
        """The DHT nodes a direct store goes to (protocol §8.3.4): our own node and the
        bootstrap nodes; none on the public DHT, whose routers store nothing."""
        if self.config.network is Mode.PUBLIC:
            return []
        host = self.config.listen_host
        own = [] if unspecified(host) else [(host, self.port)]
        return [*own, *self.config.bootstrap]

    async def put_direct(self, key: KeyPair, value: bytes, salt: bytes = SALT) -> int:
        """Store our BEP 44 item straight on ``known_nodes``; how many took it (0 when the
        socket cannot be made: not available now, libtorrent's own put still runs)."""
        nodes = self.known_nodes()
        if not nodes:
            return 0
        try:
            return await self._direct_store().put(nodes, key, value, salt)
        except OSError as error:
            log.warning("direct pointer store: %s", error)
            return 0

    async def announce_direct(self, infohash: bytes) -> int:
        """Announce our torrent ``infohash`` (v1) straight to ``known_nodes``; how many took it."""
        nodes = self.known_nodes()
        if not nodes:
            return 0
        try:
            return await self._direct_store().announce(nodes, infohash, self.port)
        except OSError as error:
            log.warning("direct announce: %s", error)
            return 0

    async def put_raw(
        self,
        secret64: bytes,
        public: bytes,
        value: bytes,
        salt: bytes = SALT,
        timeout_s: float = DHT_PUT_TIMEOUT_S,
    ) -> PutResult:
        """A BEP 44 put with no checks, for tests that need a malformed item in the DHT."""
        session = self._live()
        future: asyncio.Future[PutResult] = self._loop.create_future()
        self._puts.setdefault((public, salt), deque()).append(future)
        session.dht_put_mutable_item(secret64, public, value, salt)
        return await deadline(future, timeout_s, "DHT put")

    async def get_item(
        self, public: bytes, salt: bytes = SALT, timeout_s: float = DHT_GET_TIMEOUT_S
    ) -> SignedItem | None:
        """The newest BEP 44 item under (public, salt), unverified; None if none was found.

        Answers once the traversal ends, or ``dht_get_settle_s`` after the newest item came
        if nothing newer follows; on timeout, the best item seen so far (possibly None).
        """
        session = self._live()
        future: asyncio.Future[SignedItem | None] = self._loop.create_future()
        pending = _Get(public, salt, future)
        self._gets.setdefault((public, salt), []).append(pending)
        session.dht_get_mutable_item(public, salt)
        try:
            async with asyncio.timeout(timeout_s):  # not wait_for: see waits.deadline
                return await asyncio.shield(future)
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

    # -- alerts (routed here by Swarm._dispatch) ------------------------------------------------

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
        if _is_found(alert):
            item = SignedItem(public, salt, int(alert.seq), alert.item, bytes(alert.signature))
            for pending in self._gets.get((public, salt), []):
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
        elif not any(public):
            self._on_unattributed_not_found()
        # else: a late answer to a get already answered or timed out

    def _on_unattributed_not_found(self) -> None:
        """A "nothing found" report under an all-zero key (older libtorrent) belongs to one of
        the gets that has seen no item. Once there are as many such reports as such gets, all
        of them are answered: nothing found."""
        self._unattributed_not_found += 1
        empty = [p for gets in self._gets.values() for p in gets if p.best is None]
        if empty and self._unattributed_not_found >= len(empty):
            self._unattributed_not_found -= len(empty)
            for pending in empty:
                self._forget_get(pending)
                pending.answer(None)

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
