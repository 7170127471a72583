"""The load parts of ``bench_server``: fresh signed batches, throughput, latency, footprint.

Signing: a payment's timestamp must be within 5 s of the servers' clocks when it is taken and
when it is applied (protocol §6.2), so batches cannot be signed long before they are posted
(at 10M accounts the network took longer to start than that). ``Signer`` signs each batch in a
thread, at most ``LOOKAHEAD`` batches ahead of the one being posted, stamped when signed; a
batch older than ``FRESH_S`` when its turn comes (or when a 503 is retried) is signed again.
Signing overlaps the posting, so the measured submit path is the POSTs, as it is for real
clients who sign on their own machines; its CPU time (on the same cores) is reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scryp.core.ledger import precheck_all
from scryp.core.tx import Transaction, encode_many
from scryp.crypto import KeyPair
from scryp.localnet import LocalNetwork

DEADLINE_S = 300.0
READY_TIMEOUT_S = 300.0  # 10M accounts: three servers load 360 MB each on 2 cores
BACKPRESSURE_PAUSE_S = 0.05
BACKPRESSURE_RETRIES_MAX = 200  # 10 s of refusals for one batch: something is wrong
LOOKAHEAD = 2  # batches signed ahead of the one being posted
FRESH_S = 2.0  # older than this when posted (a 5 s window, §6.2): signed again
LOST_S = 20.0  # a single payment not certified by then never will be (its window is 5 s)
STALL_S = 30.0  # no payment more certified for this long: the rest are lost


def payees(count: int) -> list[bytes]:
    return [hashlib.sha256(b"bench payee %d" % i).digest() for i in range(count)]


def batch(faucet: KeyPair, start: int, size: int, targets: list[bytes]) -> list[Transaction]:
    now_ms = int(time.time() * 1000)
    return [
        Transaction.create(
            faucet, targets[(start + i) % len(targets)], 1 + (start + i) % 97, now_ms + i % 1000
        )
        for i in range(size)
    ]


@dataclass
class Signed:
    start: int
    txs: list[Transaction]
    signed_at: float  # time.monotonic()


@dataclass
class Signer:
    """Batches ``[start, start + size)`` of ``total`` payments, signed just ahead of use."""

    faucet: KeyPair
    total: int
    size: int
    targets: list[bytes]
    cpu_s: float = 0.0  # thread CPU time spent signing
    resigned: int = 0  # batches signed again because they had grown stale
    _queue: asyncio.Queue[Signed] = field(default_factory=lambda: asyncio.Queue(LOOKAHEAD))

    def _sign(self, start: int) -> Signed:
        began = time.thread_time()
        txs = batch(self.faucet, start, min(self.size, self.total - start), self.targets)
        self.cpu_s += time.thread_time() - began
        return Signed(start, txs, time.monotonic())

    async def produce(self) -> None:
        for start in range(0, self.total, self.size):
            await self._queue.put(await asyncio.to_thread(self._sign, start))

    async def next(self) -> Signed:
        return self.fresh(await self._queue.get())

    def fresh(self, signed: Signed) -> Signed:
        if time.monotonic() - signed.signed_at <= FRESH_S:
            return signed
        self.resigned += 1
        return self._sign(signed.start)


Post = Callable[[bytes], Awaitable[tuple[int, Any]]]


async def post_retrying(post: Post, body: bytes) -> int:
    """POST payments until taken (202); how many 503s (back-pressure) were retried."""
    code, reply = await post(body)
    refusals = 0
    while code == 503 and refusals < BACKPRESSURE_RETRIES_MAX:
        # Back-pressure ("overloaded", or no leader for a moment): retry, as a client would.
        refusals += 1
        await asyncio.sleep(BACKPRESSURE_PAUSE_S)
        code, reply = await post(body)
    assert code == 202, (code, reply)
    return refusals


async def post_fresh(post: Post, signed: Signed, signer: Signer) -> int:
    """POST a batch until taken (202), signed again if stale; how many 503s were retried."""
    code, reply = await post(encode_many(signed.txs))
    refusals = 0
    while code == 503 and refusals < BACKPRESSURE_RETRIES_MAX:
        # Back-pressure ("overloaded", or no leader for a moment): retry, as a client would.
        refusals += 1
        await asyncio.sleep(BACKPRESSURE_PAUSE_S)
        signed = signer.fresh(signed)
        code, reply = await post(encode_many(signed.txs))
    assert code == 202, (code, str(reply)[:500])
    return refusals


async def certified_payments(net: LocalNetwork, after_round: int) -> int:
    """Accepted payments in the certified rounds after ``after_round`` that server 0 lists
    (the listing stops at the first round not yet certified)."""
    total, start = 0, after_round + 1
    while True:
        code, body = await net.get(0, f"/rounds?from={start}")
        if code != 200 or not body["rounds"]:
            return total
        for listed in body["rounds"]:
            if not listed["certified"]:
                return total
            total += listed["transactions"]
            start = listed["round"] + 1


async def ready(net: LocalNetwork) -> None:
    """Every server answers, agrees on a leader and has certified a round after the
    genesis: the network is up, so the clock starts on a working network."""

    async def up() -> bool:
        statuses = await net.statuses()
        if any(s is None for s in statuses):
            return False
        leaders = {s["leader"] for s in statuses if s is not None}
        certified = [int((s or {}).get("certified_round") or 0) for s in statuses]
        return len(leaders) == 1 and None not in leaders and min(certified) >= 1

    await net.wait_until(up, READY_TIMEOUT_S, "every server certifying rounds", poll_s=0.2)


async def throughput(net: LocalNetwork, total: int, size: int, targets: int) -> dict[str, Any]:
    """Certified payments per second, 503s retried, and the client's signing figures."""
    assert net.faucet is not None
    signer = Signer(net.faucet, total, size, payees(targets))
    _, status = await net.get(0, "/status")
    before = int(status["certified_round"] or 0)
    producer = asyncio.create_task(signer.produce())
    first = await signer.next()  # the clock starts with the first batch signed and ready
    started = time.perf_counter()
    retries = 0
    signed: Signed | None = first
    while signed is not None:
        target = (signed.start // size) % net.servers
        retries += await post_fresh(partial_post(net, target), signed, signer)
        end = signed.start + len(signed.txs)
        signed = await signer.next() if end < total else None
    await producer
    posted_s = time.perf_counter() - started
    found, done_at = await all_certified(net, before, total, started)
    return {
        "certified_per_s": found / (done_at - started),
        "certified": found,
        "lost": total - found,  # taken (202) but never certified: their window passed
        "posted_s": posted_s,
        "all_certified_s": done_at - started,
        "retries_503": retries,
        "client_signing_cpu_s": signer.cpu_s,
        "batches_resigned_stale": signer.resigned,
    }


async def all_certified(
    net: LocalNetwork, before: int, total: int, started: float
) -> tuple[int, float]:
    """(payments certified, when the last of them was): waits until all ``total`` are, or
    until none more has been for ``STALL_S`` (a payment whose timestamp left the window
    while queued is never applied: protocol §6.2, §9.3)."""
    found, done_at = 0, started
    deadline = time.perf_counter() + DEADLINE_S
    while found < total and time.perf_counter() - done_at < STALL_S:
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{found} of {total} payments certified after {DEADLINE_S} s")
        now = await certified_payments(net, before)
        assert now <= total, f"{now} payments certified, {total} sent"
        if now > found:
            found, done_at = now, time.perf_counter()
        await asyncio.sleep(0.05)
    return found, done_at


def partial_post(net: LocalNetwork, target: int) -> Post:
    async def post(body: bytes) -> tuple[int, Any]:
        return await net.post(target, "/transact", body)

    return post


async def latency(net: LocalNetwork, samples: int, origin: float, seed: int = 7) -> dict[str, Any]:
    """Seconds from POST to ``GET /tx`` saying certified, single payments, ascending; a
    payment not certified within ``LOST_S`` (its timestamp has left every window: it can
    never be applied) is lost, and when it was sent (seconds after ``origin``, a monotonic
    time: the terms' origin) is kept."""
    assert net.faucet is not None
    target = payees(1)
    seconds: list[float] = []
    lost_at: list[float] = []
    rng = random.Random(seed)
    for number in range(samples):
        # Submit at a random point of a round: a loop that submits right after each
        # certificate would always land just after a seal and measure a whole round.
        await asyncio.sleep(rng.random() * net.round_interval_s)
        tx = batch(net.faucet, number, 1, target)[0]
        sent_at, started = time.monotonic() - origin, time.perf_counter()
        # A 503 (no leader for a moment, or overloaded) is retried: it counts in the time.
        await post_retrying(partial_post(net, number % net.servers), tx.encode())

        async def certified(tx: Transaction = tx) -> bool:
            code, body = await net.get(0, f"/tx/{tx.tx_id.hex()}")
            return code == 200 and bool(body["certified"])

        try:
            await net.wait_until(certified, LOST_S, "a payment certified", poll_s=0.01)
            seconds.append(time.perf_counter() - started)
        except TimeoutError:
            lost_at.append(round(sent_at, 1))
    return {"seconds": sorted(seconds), "lost_sent_at_s": lost_at}


def percentile(ascending: list[float], fraction: float) -> float:
    """Nearest rank: the smallest sample with at least ``fraction`` of them at or below."""
    rank = max(1, math.ceil(fraction * len(ascending) - 1e-9))
    return ascending[min(len(ascending), rank) - 1]


def verify_rate(faucet: KeyPair) -> float:
    txs = batch(faucet, 0, 5000, payees(10))
    started = time.perf_counter()
    precheck_all(txs)
    return len(txs) / (time.perf_counter() - started)


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak resident) of a process, in bytes."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0]) * 1024
    return found


def directory_bytes(path: Path) -> int:
    """Bytes of the files under ``path``; a round the server prunes meanwhile is skipped."""
    total = 0
    for root, _, names in os.walk(path):
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(os.path.join(root, name)).st_size
    return total


def server_footprint(net: LocalNetwork, index: int) -> dict[str, int]:
    """Resident bytes (now and peak) of server ``index``, and its data on disk."""
    process = net.server_processes[index].child.process
    memory = proc_status(process.pid) if process is not None and process.poll() is None else {}
    data = net.root / "data" / f"server-{index}"
    return {
        "rss": memory.get("VmRSS", 0),
        "rss_peak": memory.get("VmHWM", 0),
        "rounds_disk": directory_bytes(data / "rounds"),
        "data_disk": directory_bytes(data),
    }


@dataclass
class TermWatch:
    """Raft terms seen on the servers, polled in the background: a new term is an election,
    and at 10M accounts a server too busy to send heartbeats causes them."""

    net: LocalNetwork
    began: float = field(default_factory=time.monotonic)
    changes: list[dict[str, Any]] = field(default_factory=list)
    _term: int = -1
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        deadline = self.began + 3 * DEADLINE_S + READY_TIMEOUT_S
        while not self._stop.is_set() and time.monotonic() < deadline:
            statuses = await self.net.statuses(timeout_s=2.0)
            terms = [s["term"] for s in statuses if s is not None]
            if terms and max(terms) != self._term:
                self._term = max(terms)
                self.changes.append(
                    {
                        "s": round(time.monotonic() - self.began, 2),
                        "term": self._term,
                        "leaders": [s["leader"] if s else None for s in statuses],
                    }
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), 0.5)

    def stop(self) -> None:
        self._stop.set()
