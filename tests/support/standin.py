"""A stand-in server API over synthetic rounds (``tests.support.synthetic``), for the sync
benchmark (``benchmarks/sync_stageb.py``) and the client's tests: ``GET /rounds``,
``GET /proof/ID?round=R`` and ``GET /changes?since=C&round=R`` as a server answers them
(docs/api.md), from the rounds' files and trees. Untrusted help the client checks anyway, so
it can also lie on purpose (``tamper``) for the tests that the client refuses a lie.

``/changes`` is what ``scryp.server.view`` serves (``merge_changes`` of the round files,
protocol §10.4.1), without a server's bounds (the caller asks for the ranges it means) and
over files that have no ``raft-meta`` (nothing here runs Raft). Its body can be paced to a
byte rate (``cap_bytes_per_s``), so a benchmark's capped link carries it as the servers'
uplink would.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from scryp.core import snapshot
from scryp.core.buckets import BUCKET_BITS, bucket_of, bucket_range
from scryp.core.certificate import Certificate, Statement
from scryp.core.changes import ROUNDS_HEADER, merge_changes
from scryp.core.tx import TX_BYTES
from scryp.crypto import KeyPair
from scryp.server import state_at
from scryp.server.rounds import RoundStore
from tests.support.synthetic import SyntheticRound
from tests.support.web import serving_app

LISTED_MAX = 100  # entries a GET /rounds answers, as servers do
PACED_CHUNK = 16 * 1024  # bytes written at a time when the body is paced


class StandIn:
    """``GET /rounds``, ``/proof`` and ``/changes`` from the synthetic rounds' files and
    trees; ``tamper`` rewrites every ``/changes`` body (a lying server), and ``served``
    counts the ``/changes`` answers given."""

    def __init__(
        self,
        rounds: list[SyntheticRound],
        keys: list[KeyPair],
        every: int,
        signers: int,
        *,
        network: bytes,
        tamper: Callable[[bytes], bytes] | None = None,
        cap_bytes_per_s: int = 0,
        ranges: bool = True,
    ) -> None:
        self.rounds = {r.round: r for r in rounds}
        self.every = every
        self.network = network
        self.store = RoundStore(rounds[0].round_dir.parent)
        self.entries = [self._entry(r, keys, signers) for r in rounds]
        self.tamper = tamper
        self.cap_bytes_per_s = cap_bytes_per_s
        self.ranges = ranges  # False: no /changes route (a server from before §10.4.1)
        self.served: list[tuple[int, int, int]] = []  # (since, round, body bytes)

    def _entry(self, chosen: SyntheticRound, keys: list[KeyPair], signers: int) -> dict[str, Any]:
        torrent = chosen.torrent
        statement = Statement(self.network, chosen.round, chosen.state_root, torrent.infohash_v2)
        certificate = Certificate(tuple((i, statement.sign(keys[i])) for i in range(signers)))
        return {
            "round": chosen.round,
            "state_root": chosen.state_root.hex(),
            "infohash": torrent.infohash.hex(),
            "infohash_v2": torrent.infohash_v2.hex(),
            "transactions": chosen.transactions_bytes // TX_BYTES,
            "checkpoint": snapshot.is_checkpoint(chosen.round, self.every),
            "signers": list(range(signers)),
            "certified": True,
            "certificate": certificate.to_bytes().hex(),
        }

    async def listing(self, request: web.Request) -> web.Response:
        start = int(request.query.get("from", "0"))
        listed = [e for e in self.entries if e["round"] >= start][:LISTED_MAX]
        return web.json_response({"rounds": listed})

    async def proof(self, request: web.Request) -> web.Response:
        account = bytes.fromhex(request.match_info["account"])
        chosen = self.rounds.get(int(request.query.get("round", "-1")))
        if chosen is None or chosen.tree is None:
            raise web.HTTPNotFound()
        index = bucket_of(account, BUCKET_BITS)
        records = await asyncio.to_thread(
            state_at.bucket_at, self.store, chosen.round, self.every, index
        )
        start = end = None
        if snapshot.is_checkpoint(chosen.round, self.every):
            flat = (chosen.round_dir / snapshot.BALANCES).read_bytes()
            start, end = bucket_range(flat, index, BUCKET_BITS)
        return web.json_response(
            {
                "account": account.hex(),
                "round": chosen.round,
                "state_root": chosen.state_root.hex(),
                "infohash": chosen.torrent.infohash.hex(),
                "bucket": index,
                "siblings": [s.hex() for s in chosen.tree.proof(index)],
                "start": start,
                "end": end,
                "records": records.hex(),
            }
        )

    def _merged(self, since: int, last: int) -> bytes:
        """The net changes of rounds since+1..last (protocol §10.4.1), tampered if asked."""
        paths = [self.rounds[n].round_dir / snapshot.CHANGES for n in range(since + 1, last + 1)]
        body = merge_changes(path.read_bytes() for path in paths)
        return self.tamper(body) if self.tamper is not None else body

    async def changes(self, request: web.Request) -> web.StreamResponse:
        since, last = int(request.query["since"]), int(request.query["round"])
        if not (since < last and all(n in self.rounds for n in range(since + 1, last + 1))):
            raise web.HTTPNotFound()
        body = await asyncio.to_thread(self._merged, since, last)
        self.served.append((since, last, len(body)))
        response = web.StreamResponse(headers={ROUNDS_HEADER: f"{since + 1}-{last}"})
        response.content_type = "application/octet-stream"
        response.content_length = len(body)
        await response.prepare(request)
        started = time.monotonic()
        for offset in range(0, len(body), PACED_CHUNK):
            if self.cap_bytes_per_s:  # the servers' uplink is capped too: pace to it
                due = started + offset / self.cap_bytes_per_s
                if due > time.monotonic():
                    await asyncio.sleep(due - time.monotonic())
            await response.write(body[offset : offset + PACED_CHUNK])
        await response.write_eof()
        return response

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[str]:
        app = web.Application()
        app.router.add_get("/rounds", self.listing)
        app.router.add_get("/proof/{account}", self.proof)
        if self.ranges:
            app.router.add_get("/changes", self.changes)
        async with serving_app(app) as url:
            yield url
