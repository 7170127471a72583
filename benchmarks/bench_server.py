"""Load figure for 3 real servers on loopback (issues 5 and 10).

    .venv/bin/python -m benchmarks.bench_server [--payments 20000] [--batch 1000]
        [--accounts N] [--payees 1000] [--latency-samples 100] [--checkpoint-every 60]

Starts a local network (3 server processes, 1 s rounds) on a genesis of ``--accounts``
accounts (random ones, the faucet keeping the rest; 0: the faucet alone), submits payments
from the faucet in batches of ``--batch`` to the servers in turn, and measures:
- **certified** payments per second: from the first submission to the moment server 0 lists
  certified rounds whose accepted transactions add up to every payment sent (so every single
  payment is counted, none is sampled), next to the ceiling from signature checks measured in
  the same run: every server checks every signature, so the ceiling is cores × single-core
  verify rate ÷ servers;
- submit-to-certified latency of single payments: p50, p90 and the largest of n (with n
  given: a "p99" of 100 samples would be the second largest).
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
from scryp.keyfile import load_or_create_key
from scryp.keytool import NetworkFiles
from scryp.localnet import LocalNetwork
from scryp.random_genesis import write_random_genesis

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


async def throughput(net: LocalNetwork, total: int, size: int, targets: int) -> tuple[float, int]:
    """Certified payments per second, and how many 503s (back-pressure) were retried."""
    assert net.faucet is not None
    payee_ids = payees(targets)
    _, status = await net.get(0, "/status")
    before = int(status["certified_round"] or 0)
    started = time.perf_counter()
    sent = 0
    retries = 0
    while sent < total:
        txs = batch(net.faucet, sent, min(size, total - sent), payee_ids)
        body = encode_many(txs)
        target = (sent // size) % net.servers
        retries += await post_retrying(partial(net.post, target, "/transact"), body)
        sent += len(txs)
    done_at = 0.0

    async def all_certified() -> bool:
        nonlocal done_at
        found = await certified_payments(net, before)
        assert found <= total, f"{found} payments certified, {total} sent"
        if found == total:
            done_at = time.perf_counter()
            return True
        return False

    await net.wait_until(all_certified, DEADLINE_S, "every payment certified", poll_s=0.05)
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


def write_genesis(root: Path, accounts: int) -> None:
    """A genesis of ``accounts`` random accounts plus the faucet (``init_network`` keeps it)."""
    if accounts:
        faucet = load_or_create_key(NetworkFiles(root).faucet_seed)
        write_random_genesis(NetworkFiles(root).genesis, accounts, faucet.public, {}, seed=10)


def verify_rate(faucet: KeyPair) -> float:
    txs = batch(faucet, 0, 5000, payees(10))
    started = time.perf_counter()
    precheck_all(txs)
    return len(txs) / (time.perf_counter() - started)


def server_footprint(net: LocalNetwork, index: int) -> tuple[int, int]:
    """(resident bytes of the server's process, bytes of its rounds directory)."""
    process = net.server_processes[index].child.process
    rss = 0
    if process is not None:
        for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
    rounds = net.root / "data" / f"server-{index}" / "rounds"
    disk = sum(p.stat().st_size for p in rounds.rglob("*") if p.is_file())
    return rss, disk


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--payments", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--latency-samples", type=int, default=100)
    parser.add_argument("--accounts", type=int, default=0, help="genesis accounts (0: faucet)")
    parser.add_argument("--payees", type=int, default=1000, help="distinct payees")
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        default=60,
        help="the servers' round layout (protocol §4.4.4); 1: every round holds the whole "
        "balances file, as every round did before issue 10's stage B",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        write_genesis(Path(directory), args.accounts)
        # One sender stands for many clients here: lift the per-client signature budget
        # (protocol §9.6), which would otherwise be what this measures.
        unlimited = ["--client-signatures-per-s", "1000000"]
        layout = ["--checkpoint-every", str(args.checkpoint_every)]
        net = LocalNetwork(
            Path(directory), servers=3, round_interval_s=1.0, server_args=unlimited + layout
        )
        try:
            await net.start()
            assert net.faucet is not None
            single_core = verify_rate(net.faucet)
            rate, retries = await throughput(net, args.payments, args.batch, args.payees)
            lat = sorted(await latency(net, args.latency_samples))
            footprint = [server_footprint(net, i) for i in range(3)]
        finally:
            await net.stop()
    cores = os.cpu_count() or 1
    ceiling = cores * single_core / 3
    p90 = lat[min(len(lat) - 1, round(0.90 * (len(lat) - 1)))]
    print(
        f"server load: 3 servers, 1 s rounds, checkpoint every {args.checkpoint_every}, "
        f"{args.accounts:,} genesis accounts, "
        f"{args.payments} payments to {args.payees:,} payees in batches of {args.batch}, "
        f"{cores} cores; {retries} batches retried after a 503"
    )
    print("| figure | measured |")
    print("|---|---|")
    print(f"| certified payments per second (every payment counted) | {rate:,.0f} |")
    print(
        f"| signature ceiling: {cores} cores × {single_core:,.0f}/s ÷ 3 servers | {ceiling:,.0f} |"
    )
    print(f"| certified ÷ ceiling | {rate / ceiling:.2f} |")
    print(
        f"| submit → certified, p50 ({len(lat)} single payments) | "
        f"{statistics.median(lat) * 1000:.0f} ms |"
    )
    print(f"| submit → certified, p90 | {p90 * 1000:.0f} ms |")
    rss = ", ".join(f"{r / 1e6:,.0f}" for r, _ in footprint)
    disk = ", ".join(f"{d / 1e6:,.0f}" for _, d in footprint)
    print(f"| server RSS at the end, MB (each) | {rss} |")
    print(f"| rounds on disk at the end, MB (each) | {disk} |")
    print(f"| submit → certified, largest of {len(lat)} | {lat[-1] * 1000:.0f} ms |")


if __name__ == "__main__":
    asyncio.run(main())
