"""Talking to the servers' HTTP API (docs/api.md): submit, follow a payment, status, rounds,
proofs and the net changes of a range of rounds.

Servers are untrusted here: what they say is used only to find things (round infohashes,
a payment's round) or shown as what it is (their status). Balances come from verified syncs.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from multidict import CIMultiDict

from scryp.core.certificate import majority
from scryp.core.changes import ROUNDS_HEADER
from scryp.core.tx import Transaction
from scryp.errors import RemoteError

HTTP_TIMEOUT_S = 5.0
POLL_S = 0.2
# A payment no server knows of after this long is sent again (protocol §10.6).
RESUBMIT_AFTER_S = 1.5
# A server that has not answered a submit within this long does not hold up the next one.
SUBMIT_STAGGER_S = 0.5
# Every server said "not now" (no leader yet, overloaded): ask again this often, for this long
# (a payment's timestamp stays inside the 5 s window, protocol §6.2).
SUBMIT_RETRY_S = 0.25
SUBMIT_PATIENCE_S = 3.0
# A poll of a payment's outcome: a server silent this long is counted as not answering, so
# one dead server does not slow every poll to HTTP_TIMEOUT_S (the lab's partition).
POLL_HTTP_TIMEOUT_S = 1.5
PROOF_HTTP_TIMEOUT_S = 5.0  # a late proof still beats pieces from a busy swarm (§4.4.6)
# A GET /changes answer (protocol §10.4.1): past the servers' own bound on the round files
# they merge (32 MiB, docs/api.md), a body is a server's fault and is not read further; the
# whole answer within this long, with no silence longer than HTTP_TIMEOUT_S, or the client
# asks the next server (then fetches the rounds' torrents).
CHANGES_BYTES_MAX = 64 * 1024 * 1024
CHANGES_HTTP_TIMEOUT_S = 30.0
BODY_CHUNK = 64 * 1024


class ServersUnreachable(RemoteError):
    """No server answered."""


class PaymentRefused(RemoteError):
    """A server refused the payment at once (bad signature, timestamp, ...)."""


class PaymentTimeout(RemoteError):
    """No certified round included the payment within the deadline."""


@dataclass(frozen=True, slots=True)
class Outcome:
    tx_id: bytes
    accepted: bool
    reason: str | None
    round: int
    server: str


async def get_json(api: str, path: str, timeout_s: float = HTTP_TIMEOUT_S) -> tuple[int, Any]:
    """(status, JSON body) of a GET; (0, None) if the server did not answer."""
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(api + path) as r:
            return r.status, await r.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError):
        return 0, None


@dataclass(frozen=True, slots=True)
class Answer:
    """A binary answer: status, headers, body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


async def get_bytes(
    api: str, path: str, bytes_max: int, timeout_s: float = HTTP_TIMEOUT_S
) -> Answer | None:
    """A GET's answer, its body read up to ``bytes_max`` bytes (decompressed: a compressed
    bomb stops there too); None if the server did not answer in ``timeout_s``, fell silent
    for ``HTTP_TIMEOUT_S``, or sent more than ``bytes_max`` (not read further)."""
    timeout = aiohttp.ClientTimeout(total=timeout_s, sock_read=HTTP_TIMEOUT_S)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(api + path) as r:
            if r.content_length is not None and r.content_length > bytes_max:
                return None
            body = bytearray()
            async for chunk in r.content.iter_chunked(BODY_CHUNK):
                body += chunk
                if len(body) > bytes_max:
                    return None
            return Answer(r.status, CIMultiDict(r.headers), bytes(body))
    except (aiohttp.ClientError, TimeoutError):
        return None


async def changes(api: str, since: int, round_number: int) -> bytes | None:
    """One server's ``GET /changes?since=C&round=R`` (protocol §10.4.1): the net ``changes``
    of rounds C+1..R, if it answered 200 naming those rounds; else None. Untrusted: the
    caller applies it to round C's balances and requires R's certified state root."""
    path = f"/changes?since={since}&round={round_number}"
    answer = await get_bytes(api, path, CHANGES_BYTES_MAX, CHANGES_HTTP_TIMEOUT_S)
    if answer is None or answer.status != 200:
        return None
    if answer.headers.get(ROUNDS_HEADER) != f"{since + 1}-{round_number}":
        return None  # an answer for other rounds: not worth an apply and a state root
    return answer.body


async def submit(apis: Sequence[str], tx: Transaction) -> str:
    """POST the payment until a server takes it; that server's API.

    Servers are tried in order, but a server that has not answered within
    ``SUBMIT_STAGGER_S`` does not hold up the next one (protocol §10.6): a payment's timestamp
    must reach the leader inside the window (§6.2), and waiting out a dead first server's
    timeout used it up (the lab's partition: every payment refused while server 0 was cut
    off). Several copies may arrive; a payment applies at most once (§6.2). When every server
    says "not now" (no leader during an election, overloaded), the round is tried again for
    up to ``SUBMIT_PATIENCE_S``, still inside the window.
    """
    if not apis:
        raise ServersUnreachable("no server address known (give --testnet DIR or --server URL)")
    deadline = time.monotonic() + SUBMIT_PATIENCE_S
    while True:
        taken = await _submit_once(list(dict.fromkeys(apis)), tx)
        if taken is not None:
            return taken
        if time.monotonic() + SUBMIT_RETRY_S > deadline:
            raise ServersUnreachable(f"no server took the payment (tried {', '.join(apis)})")
        await asyncio.sleep(SUBMIT_RETRY_S)  # nothing to wait on: the servers said "not now"


async def _submit_once(waiting: list[str], tx: Transaction) -> str | None:
    """One round over the servers (staggered); the API that took the payment, or None."""
    pending: set[asyncio.Task[tuple[str, int, Any]]] = set()
    try:
        while waiting or pending:
            if waiting:
                pending.add(asyncio.create_task(_post(waiting.pop(0), tx)))
            done, pending = await asyncio.wait(
                pending,
                timeout=SUBMIT_STAGGER_S if waiting else None,
                return_when=asyncio.FIRST_COMPLETED,
            )
            for task in done:
                api, status, body = task.result()
                if status == 202:
                    return api
                if status == 400:
                    results = body.get("results") if isinstance(body, dict) else None
                    reason = results[0].get("reason") if results else body.get("error", body)
                    raise PaymentRefused(f"server {api} refused the payment: {reason}")
                # no answer, 429/503 and the like: this server cannot take it now
    finally:
        for task in pending:
            task.cancel()
    return None


async def _post(api: str, tx: Transaction) -> tuple[str, int, Any]:
    """(api, status, JSON body) of one POST /transact; status 0 if no answer."""
    timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.post(
                api + "/transact",
                data=io.BytesIO(tx.encode()),
                headers={"Content-Type": "application/octet-stream"},
            ) as response,
        ):
            return api, response.status, await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError):
        return api, 0, None


async def wait_certified(apis: Sequence[str], tx: Transaction, timeout_s: float) -> Outcome:
    """Poll ``GET /tx/{id}`` until a majority of servers say a certified round decided ``tx``
    the same way.

    While no server knows the payment, send the same bytes again every ``RESUBMIT_AFTER_S``
    (protocol §10.6): a leader that loses office drops the payments it had queued. Resending is
    safe, since a payment applies at most once (§6.2), and it stops at the first refusal (its
    timestamp has left the window, say); polling goes on until the deadline.
    """
    deadline = time.monotonic() + timeout_s
    answered = False
    resubmitting = True
    unknown_since = time.monotonic()
    path = f"/tx/{tx.tx_id.hex()}"
    apis = list(dict.fromkeys(apis))  # one vote per server, however often it is named
    needed = majority(len(apis))
    while time.monotonic() < deadline:
        replies = await asyncio.gather(*(get_json(api, path, POLL_HTTP_TIMEOUT_S) for api in apis))
        known = False
        votes: dict[tuple[bool, str | None], list[Outcome]] = {}
        for api, (code, body) in zip(apis, replies, strict=True):
            answered = answered or code != 0
            if code != 200 or not isinstance(body, dict):
                continue
            known = True
            round_number = body.get("round")
            if body.get("certified") and isinstance(round_number, int):  # else: malformed
                outcome = Outcome(
                    tx.tx_id,
                    body.get("status") == "accepted",
                    body.get("reason"),
                    round_number,
                    api,
                )
                votes.setdefault((outcome.accepted, outcome.reason), []).append(outcome)
        # What a majority of servers certified, so one server cannot tell a user a payment
        # that went through was refused, or the reverse (protocol §10.6).
        agreed = [outcomes for outcomes in votes.values() if len(outcomes) >= needed]
        if agreed:
            return agreed[0][0]
        now = time.monotonic()
        if known:
            unknown_since = now
        elif resubmitting and now - unknown_since >= RESUBMIT_AFTER_S:
            unknown_since = now
            try:
                await submit(apis, tx)
            except ServersUnreachable:
                pass
            except PaymentRefused:
                resubmitting = False
        await asyncio.sleep(POLL_S)  # other processes cannot signal us: poll to a deadline
    if not answered:
        raise ServersUnreachable("servers stopped answering while the payment was pending")
    raise PaymentTimeout(
        f"payment {tx.tx_id.hex()} not in a certified round after {timeout_s:g} s "
        "(no majority of servers up?)"
    )


async def statuses(apis: Sequence[str]) -> list[dict[str, Any] | None]:
    replies = await asyncio.gather(*(get_json(api, "/status") for api in apis))
    return [body if code == 200 and isinstance(body, dict) else None for code, body in replies]


async def proof(
    apis: Sequence[str],
    account: bytes,
    round_number: int,
    accept: Callable[[Any], bool] = lambda _: True,
) -> Any:
    """``GET /proof/ID?round=R`` (protocol §4.4.6) of every server at once: the first answer
    ``accept`` takes, else the first answer at all, else None. Untrusted: the caller checks
    it against the certified state root (``accept`` does, for a light sync), so a lying or
    slow server does not hold up an honest one."""
    path = f"/proof/{account.hex()}?round={round_number}"
    asked = [asyncio.create_task(get_json(api, path, PROOF_HTTP_TIMEOUT_S)) for api in apis]
    first: Any = None
    try:
        for answered in asyncio.as_completed(asked):
            code, body = await answered
            if code == 200 and isinstance(body, dict):
                if accept(body):
                    return body
                first = body if first is None else first
        return first
    finally:
        for task in asked:
            task.cancel()


def _listed_round(entry: object) -> int | None:
    """The round a listing entry names, or None if it is not an entry (a server's fault)."""
    if not isinstance(entry, dict):
        return None
    number = entry.get("round")
    return number if isinstance(number, int) and not isinstance(number, bool) else None


async def round_listing(apis: Sequence[str], first: int, last: int) -> dict[int, dict[str, Any]]:
    """What the servers list for rounds first..last (round -> entry), merged; untrusted."""
    found: dict[int, dict[str, Any]] = {}
    for api in apis:
        start = first
        while start <= last:
            code, body = await get_json(api, f"/rounds?from={start}")
            entries = body.get("rounds") if code == 200 and isinstance(body, dict) else None
            if not isinstance(entries, list) or not entries:
                break
            numbers = [_listed_round(entry) for entry in entries]
            for number, entry in zip(numbers, entries, strict=True):
                if number is not None and first <= number <= last and isinstance(entry, dict):
                    found.setdefault(number, entry)
            listed = [n for n in numbers if n is not None]
            if not listed or max(listed) < start:
                break  # nothing new, or a server listing backwards: its fault, ask the next
            start = max(listed) + 1
        if all(r in found for r in range(first, last + 1)):
            break
    return found
