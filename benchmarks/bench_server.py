"""Load figure for 3 real servers on loopback (issue 5).

    .venv/bin/python -m benchmarks.bench_server [--payments 20000] [--batch 1000]

Starts a local network (3 server processes, 1 s rounds), submits payments from the faucet in
batches of ``--batch`` to the servers in turn, and measures:
- committed payments per second (first submission to the last payment in a sealed round),
  next to the ceiling from signature checks measured in the same run: every server checks
  every signature, so the ceiling is cores × single-core verify rate ÷ servers;
- submit-to-certified latency of single payments (p50, p99).
Bounded: a fixed number of payments, each wait has a deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

from scryp.core.ledger import precheck_all
from scryp.core.tx import Transaction, encode_many
from scryp.crypto import KeyPair
from scryp.localnet import LocalNetwork

DEADLINE_S = 300.0
BACKPRESSURE_PAUSE_S = 0.05
BACKPRESSURE_RETRIES_MAX = 200  # 10 s of refusals for one batch: something is wrong


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


async def throughput(net: LocalNetwork, total: int, size: int) -> tuple[float, int]:
    """Committed payments per second, and how many 503s (back-pressure) were retried."""
    assert net.faucet is not None
    targets = payees(1000)
    started = time.perf_counter()
    sent = 0
    retries = 0
    lasts: list[Transaction] = []  # the last payment of each batch
    while sent < total:
        txs = batch(net.faucet, sent, min(size, total - sent), targets)
        body = encode_many(txs)
        target = (sent // size) % net.servers
        retries += await post_retrying(partial(net.post, target, "/transact"), body)
        sent += len(txs)
        lasts.append(txs[-1])
    done_at = 0.0
    accepted = 0

    async def all_committed() -> bool:
        nonlocal done_at, accepted
        replies = [await net.get(0, f"/tx/{tx.tx_id.hex()}") for tx in lasts]
        if all(code == 200 for code, _ in replies):
            done_at = time.perf_counter()
            accepted = sum(1 for _, body in replies if body["status"] == "accepted")
            return True
        return False

    await net.wait_until(all_committed, DEADLINE_S, "every payment committed", poll_s=0.05)
    assert accepted == len(lasts), "a batch's last payment was rejected"
    return total / (done_at - started), retries


async def latency(net: LocalNetwork, samples: int) -> list[float]:
    assert net.faucet is not None
    target = payees(1)
    seconds = []
    rng = random.Random(7)
    for number in range(samples):
        # Submit at a random point of a round: a loop that submits right after each
        # certificate would always land just after a seal and measure a whole round.
        await asyncio.sleep(rng.random() * net.round_interval_s)
        tx = batch(net.faucet, number, 1, target)[0]
        started = time.perf_counter()
        code, _ = await net.post(number % net.servers, "/transact", tx.encode())
        assert code == 202

        async def certified(tx: Transaction = tx) -> bool:
            code, body = await net.get(0, f"/tx/{tx.tx_id.hex()}")
            return code == 200 and bool(body["certified"])

        await net.wait_until(certified, DEADLINE_S, "a payment certified", poll_s=0.01)
        seconds.append(time.perf_counter() - started)
    return seconds


def verify_rate(faucet: KeyPair) -> float:
    txs = batch(faucet, 0, 5000, payees(10))
    started = time.perf_counter()
    precheck_all(txs)
    return len(txs) / (time.perf_counter() - started)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--payments", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--latency-samples", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        # One sender stands for many clients here: lift the per-client signature budget
        # (protocol §9.6), which would otherwise be what this measures.
        unlimited = ["--client-signatures-per-s", "1000000"]
        net = LocalNetwork(Path(directory), servers=3, round_interval_s=1.0, server_args=unlimited)
        try:
            await net.start()
            assert net.faucet is not None
            single_core = verify_rate(net.faucet)
            rate, retries = await throughput(net, args.payments, args.batch)
            lat = sorted(await latency(net, args.latency_samples))
        finally:
            await net.stop()
    cores = os.cpu_count() or 1
    ceiling = cores * single_core / 3
    p99 = lat[min(len(lat) - 1, round(0.99 * (len(lat) - 1)))]
    print(
        f"server load: 3 servers, 1 s rounds, {args.payments} payments in batches of "
        f"{args.batch}, {cores} cores; {retries} batches retried after a 503"
    )
    print("| figure | measured |")
    print("|---|---|")
    print(f"| committed payments per second | {rate:,.0f} |")
    print(
        f"| signature ceiling: {cores} cores × {single_core:,.0f}/s ÷ 3 servers | {ceiling:,.0f} |"
    )
    print(f"| committed ÷ ceiling | {rate / ceiling:.2f} |")
    print(
        f"| submit → certified, p50 ({len(lat)} single payments) | "
        f"{statistics.median(lat) * 1000:.0f} ms |"
    )
    print(f"| submit → certified, p99 | {p99 * 1000:.0f} ms |")


if __name__ == "__main__":
    asyncio.run(main())
