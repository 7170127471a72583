"""The HTTP API of a server (docs/api.md): JSON over aiohttp, bounded in every dimension.

Handlers never touch the Raft core, the ledger or the round protocol: they precheck payments
(in threads, in parallel), queue them with ``ServerView.submit``, and read ``ServerView``. Bad input
gets a 4xx with ``{"error": reason}`` and changes nothing.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler

from scryp.core.changes import ROUNDS_HEADER
from scryp.core.ledger import Reason
from scryp.core.tracker import PeerTable, encode_answer, encode_failure, parse_announce
from scryp.core.tx import Transaction, decode_many
from scryp.crypto import parse_public_key_hex
from scryp.errors import MalformedInput, NotAvailable, RemoteError
from scryp.peers import PEER_PATH
from scryp.server.config import ServerLimits
from scryp.server.node import ServerNode
from scryp.server.view import ServerView, certificate_signers

VIEW = web.AppKey("view", ServerView)
TRACKER = web.AppKey("tracker", PeerTable)
CLIENTS_TRACKED_MAX = 10_000


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated_s: float


class RateLimiter:
    """A token bucket per client address; the least recently seen are forgotten first."""

    def __init__(self, rate_per_s: float, burst: int) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def allow(self, client: str, now_s: float, cost: float = 1.0) -> bool:
        bucket = self._buckets.pop(client, None) or _Bucket(float(self.burst), now_s)
        bucket.tokens = min(
            self.burst, bucket.tokens + (now_s - bucket.updated_s) * self.rate_per_s
        )
        bucket.updated_s = now_s
        self._buckets[client] = bucket
        while len(self._buckets) > CLIENTS_TRACKED_MAX:
            self._buckets.popitem(last=False)
        if bucket.tokens < cost:
            return False
        bucket.tokens -= cost
        return True


LIMITER = web.AppKey("limiter", RateLimiter)
# Signatures a client may make us check, apart from its requests: one request of 4,096
# forged payments costs 4,096 checks (protocol §9.9).
SIGNATURES = web.AppKey("signatures", RateLimiter)
# Peer-link upgrades, on their own budget: clients cannot starve the servers' links, nor
# the reverse (protocol §9.2, §9.9).
PEER_UPGRADES = web.AppKey("peer_upgrades", RateLimiter)
# After refusing a request whose body has not all arrived, read on for at most this long
# before closing (aiohttp's default is 10 s: a slow sender's connection lingers).
LINGERING_S = 1.0
PEER_UPGRADES_PER_S = 2.0
PEER_UPGRADE_BURST = 8


def error(status: type[web.HTTPException], reason: str) -> web.HTTPException:
    return status(text=json.dumps({"error": reason}), content_type="application/json")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Rate-limit every client, bound every request in time, and turn a client's bad input
    into a 400 with the reason (protocol §9.9)."""
    client, now_s = request.remote or "?", time.monotonic()
    if request.path == PEER_PATH:
        if not request.app[PEER_UPGRADES].allow(client, now_s):
            raise error(web.HTTPTooManyRequests, "too many peer-link attempts; slow down")
        return await handler(request)  # the link lives long; its handshake has a deadline
    if not request.app[LIMITER].allow(client, now_s):
        raise error(web.HTTPTooManyRequests, "too many requests; slow down")
    try:
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can lose a cancellation.
        async with asyncio.timeout(request.app[VIEW].limits.request_s_max):
            return await handler(request)
    except TimeoutError:
        raise error(web.HTTPRequestTimeout, "the request took too long (a slow body?)") from None
    except RemoteError as problem:
        raise error(web.HTTPBadRequest, str(problem)) from None
    except web.HTTPException as problem:
        if problem.content_type != "application/json":  # aiohttp's own, e.g. 413: JSON too
            problem.text = json.dumps({"error": problem.text or problem.reason})
            problem.content_type = "application/json"
        raise


async def parse_transactions(request: web.Request, count_max: int) -> list[Transaction]:
    """Raw 140-byte records (application/octet-stream), or hex: JSON or plain text."""
    try:
        body = await request.read()
    except web.RequestPayloadError as problem:  # e.g. a body that does not decompress
        raise MalformedInput(f"unreadable body: {' '.join(str(problem).split())}") from None
    if request.content_type == "application/octet-stream":
        return decode_many(body, count_max)
    try:
        if request.content_type == "application/json":
            document = json.loads(body)
            items = document.get("transactions") if isinstance(document, dict) else None
            if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
                raise MalformedInput('JSON body must be {"transactions": ["<280 hex>", ...]}')
            raw = b"".join(bytes.fromhex(item) for item in items)
        else:
            raw = bytes.fromhex("".join(body.decode("ascii").split()))
    except (ValueError, UnicodeDecodeError) as problem:
        raise MalformedInput(f"not hexadecimal transactions: {problem}") from None
    except RecursionError:
        raise MalformedInput("JSON nested too deeply") from None
    return decode_many(raw, count_max)


async def transact(request: web.Request) -> web.Response:
    view = request.app[VIEW]
    txs = await parse_transactions(request, view.limits.batch_txs_max)
    if not txs:
        raise MalformedInput("no transactions in the body")
    if not request.app[SIGNATURES].allow(request.remote or "?", time.monotonic(), len(txs)):
        raise error(web.HTTPTooManyRequests, "too many signatures to check; slow down")
    reasons = await view.precheck(txs)
    now_ms = int(time.time() * 1000)
    window_ms = view.window_ms
    results: list[dict[str, Any]] = []
    pending: list[bytes] = []
    for tx, precheck in zip(txs, reasons, strict=True):
        reason = precheck
        if reason is None and abs(tx.timestamp_ms - now_ms) > window_ms:
            reason = Reason.TIMESTAMP_OUT_OF_WINDOW  # the ledger would refuse it too (§6.2)
        if reason is None and view.remembers(tx.tx_id):
            reason = Reason.DUPLICATE  # a replay of an applied payment (§6.2); queue nothing
        if reason is None:
            pending.append(tx.raw)
            results.append({"id": tx.tx_id.hex(), "status": "pending"})
        else:
            view.refused(reason)
            results.append({"id": tx.tx_id.hex(), "status": "rejected", "reason": str(reason)})
    if pending:
        refusal = view.submit(pending)
        if refusal is not None:
            raise error(web.HTTPServiceUnavailable, refusal)
    status = 202 if pending else 400
    return web.json_response({"results": results}, status=status)


def account_from(request: web.Request) -> bytes:
    return parse_public_key_hex(request.match_info["account"])


async def query(request: web.Request) -> web.Response:
    view = request.app[VIEW]
    account = account_from(request)
    found = await asyncio.to_thread(view.balance_at_certified, account)
    if found is None:
        raise error(web.HTTPServiceUnavailable, "no certified round yet")
    return web.json_response(
        {
            "account": account.hex(),
            "balance": found.balance,
            "round": found.round,
            "state_root": found.state_root.hex(),
            "signers": list(found.signers),
        }
    )


async def proof(request: web.Request) -> web.Response:
    """An untrusted helper for light clients (protocol §4.4.6, stage A): the account's
    bucket in the newest certified round (or ``?round=R``, if its tree is kept), its 16
    sibling hashes and its bytes' place in that round's ``balances``; a client checks it
    against the certified root."""
    view = request.app[VIEW]
    account = account_from(request)
    wanted = request.query.get("round")
    try:
        round_number = int(wanted) if wanted is not None else None
    except ValueError:
        raise MalformedInput("round must be a round number") from None
    if round_number is not None and round_number < 0:
        raise MalformedInput("round must be a round number")
    try:
        found = await asyncio.to_thread(view.proof, account, round_number)
    except (NotAvailable, OSError) as problem:  # a round not kept, or pruned meanwhile
        raise error(web.HTTPNotFound, str(problem)) from None
    if found is None:
        raise error(web.HTTPServiceUnavailable, "no certified round yet")
    return web.json_response(
        {
            "account": account.hex(),
            "round": found.round,
            "state_root": found.state_root.hex(),
            "infohash": found.infohash.hex(),
            "bucket": found.bucket,
            "siblings": [sibling.hex() for sibling in found.siblings],
            "start": found.start,
            "end": found.end,
            # The bucket's records themselves: with the siblings they prove the balance
            # against the certified root, no piece needed (§4.4.6).
            "records": None if found.records is None else found.records.hex(),
        }
    )


async def status(request: web.Request) -> web.Response:
    return web.json_response(request.app[VIEW].status())


async def rounds(request: web.Request) -> web.Response:
    view = request.app[VIEW]
    try:
        start = int(request.query.get("from", "0"))
    except ValueError:
        raise MalformedInput("from must be a round number") from None
    if start < 0:
        raise MalformedInput("from must be a round number")
    listed: list[dict[str, Any]] = []
    for info in view.rounds(start, view.limits.rounds_listed_max):
        listed.append(
            {
                "round": info.round,
                "state_root": info.state_root.hex(),
                "infohash": info.infohash.hex(),
                "infohash_v2": info.infohash_v2.hex(),
                "transactions": info.transactions,
                "checkpoint": view.is_checkpoint(info.round),  # holds balances (§4.4.4)
                "signers": sorted(info.shares),
                "certified": bool(info.certificate),
                "certificate": info.certificate.hex(),  # checkable against .keys (§8.4)
            }
        )
    return web.json_response({"rounds": listed})


def round_param(request: web.Request, name: str) -> int:
    """A required round-number query parameter; MalformedInput (400) if absent or not one."""
    text = request.query.get(name)
    if text is None:
        raise MalformedInput(f"{name} is required: a round number")
    try:
        number = int(text)
    except ValueError:
        raise MalformedInput(f"{name} must be a round number") from None
    if number < 0:
        raise MalformedInput(f"{name} must be a round number")
    return number


async def changes(request: web.Request) -> web.Response:
    """``GET /changes?since=C&round=R`` (protocol §10.4.1): the net ``changes`` of rounds
    C+1..R in one body, so a full sync late in a checkpoint interval makes one request, not
    one torrent per round. Untrusted: the client applies it to round C's balances and
    requires round R's certified state root."""
    view = request.app[VIEW]
    since, round_number = round_param(request, "since"), round_param(request, "round")
    try:
        body = await view.changes(since, round_number)
    except (NotAvailable, OSError) as problem:  # not certified here, not held, pruned
        raise error(web.HTTPNotFound, str(problem)) from None
    if body is None:
        raise error(web.HTTPServiceUnavailable, "no certified round yet")
    return web.Response(
        body=body,
        content_type="application/octet-stream",
        headers={ROUNDS_HEADER: f"{since + 1}-{round_number}"},
    )


async def transaction(request: web.Request) -> web.Response:
    view = request.app[VIEW]
    text = request.match_info["id"]
    try:
        tx_id = bytes.fromhex(text)
    except ValueError:
        raise MalformedInput("a transaction id is 64 hex digits") from None
    if len(tx_id) != 32:
        raise MalformedInput("a transaction id is 64 hex digits")
    found = view.tx(tx_id)
    if found is None:
        raise error(web.HTTPNotFound, "unknown transaction (not committed here, or forgotten)")
    outcome = found.status.outcome
    return web.json_response(
        {
            "id": tx_id.hex(),
            "status": "accepted" if outcome.accepted else "rejected",
            "reason": str(outcome.reason) if outcome.reason else None,
            "round": found.status.round,
            "certified": found.certified,
        }
    )


async def announce(request: web.Request) -> web.Response:
    """The round tracker (BEP 3/23, protocol §8.6.1): the peer is the request's own address;
    a bad announce gets status 400 with a bencoded failure reason (what trackers say)."""
    try:
        asked = parse_announce(request.rel_url.raw_query_string)
    except MalformedInput as problem:
        failure = encode_failure(str(problem))
        return web.Response(status=400, body=failure, content_type="text/plain")
    if not request.app[VIEW].seeds(asked.infohash):  # not an open tracker: bounded memory
        failure = encode_failure("not a torrent this server seeds")
        return web.Response(status=400, body=failure, content_type="text/plain")
    host = unmapped(request.remote or "")
    peers = request.app[TRACKER].announce(asked, host, time.monotonic()) if host else []
    return web.Response(body=encode_answer(peers), content_type="text/plain")


def unmapped(host: str) -> str:
    """An IPv4 peer on a dual-stack socket as IPv4 (``::ffff:a.b.c.d`` -> ``a.b.c.d``)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return ""
    mapped = getattr(address, "ipv4_mapped", None)
    return str(mapped or address)


async def record(request: web.Request) -> web.Response:
    view = request.app[VIEW]
    info = view.certified()
    if info is None:
        raise error(web.HTTPServiceUnavailable, "no certified round yet")
    return web.json_response(
        {
            "network": view.network.hex(),
            "round": info.round,
            "state_root": info.state_root.hex(),
            "infohash": info.infohash.hex(),
            "infohash_v2": info.infohash_v2.hex(),
            "certificate": info.certificate.hex(),
            "signers": list(certificate_signers(info.certificate)),
        }
    )


def make_app(node: ServerNode) -> web.Application:
    # Server-to-server links share the port (protocol §9.2).
    return build_app(node.view, node.config.limits, node.hub.add_routes)


def build_app(
    view: ServerView, limits: ServerLimits, add_peer_routes: Callable[[web.Application], None]
) -> web.Application:
    app = web.Application(client_max_size=limits.request_bytes_max, middlewares=[guard])
    app[VIEW] = view
    app[LIMITER] = RateLimiter(limits.requests_per_s, limits.request_burst)
    app[SIGNATURES] = RateLimiter(limits.signatures_per_s, limits.signature_burst)
    app[PEER_UPGRADES] = RateLimiter(PEER_UPGRADES_PER_S, PEER_UPGRADE_BURST)
    app[TRACKER] = PeerTable(rng=random.Random())
    app.router.add_post("/transact", transact)
    app.router.add_get("/query/{account}", query)
    app.router.add_get("/proof/{account}", proof)
    app.router.add_get("/status", status)
    app.router.add_get("/rounds", rounds)
    app.router.add_get("/changes", changes)
    app.router.add_get("/tx/{id}", transaction)
    app.router.add_get("/record", record)
    app.router.add_get("/announce", announce)
    # Prometheus text format, from the server's own registry (scryp.server.metrics).
    app.router.add_get("/metrics", make_aiohttp_handler(view.metrics_registry))
    add_peer_routes(app)
    return app
