"""Ledger benchmark for 1M accounts (issue 2): memory, apply rate, snapshot, verify baseline.

    .venv/bin/python -m benchmarks.bench_ledger [--accounts 1000000] [--txs 100000]

Prints a Markdown table for docs/BENCHMARKS.md. Every figure is measured in this run; the
signature-verification rate is the single-core baseline the apply rate is compared with, and
a plain dict of the same balances is the memory baseline, so the ratios hold on a noisy,
shared machine even when the absolute numbers move.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import os
import platform
import random
import tempfile
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from scryp.core.balances import RECORD, RECORD_BYTES, TOTAL_SUPPLY
from scryp.core.buckets import state_root
from scryp.core.genesis import Genesis
from scryp.core.ledger import Ledger, precheck_all
from scryp.core.tx import Transaction
from scryp.crypto import KeyPair
from scryp.keyfile import atomic_write

SIGNERS = 1_000
BATCH_TXS = 1_000


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def make_genesis(accounts: int, signers: list[KeyPair], rng: random.Random) -> bytes:
    ids = [k.public for k in signers]
    ids += [rng.randbytes(32) for _ in range(accounts - len(ids))]
    share = TOTAL_SUPPLY // accounts
    allocation = dict.fromkeys(ids, share)
    allocation[ids[0]] += TOTAL_SUPPLY - share * accounts
    return Genesis.from_allocations(allocation).encode()


def make_transactions(
    count: int, signers: list[KeyPair], genesis_file: bytes, rng: random.Random, now_ms: int
) -> list[Transaction]:
    accounts = len(genesis_file) // RECORD_BYTES
    txs = []
    for n in range(count):
        if n % 10 == 0:
            payee = rng.randbytes(32)  # a new account now and then
        else:
            payee, _ = RECORD.unpack_from(genesis_file, rng.randrange(accounts) * RECORD_BYTES)
        payer = signers[n % len(signers)]
        txs.append(Transaction.create(payer, payee, rng.randint(1, 20), now_ms + n % 1000))
    return txs


def memory(genesis_file: bytes, txs: list[Transaction], now_ms: int) -> dict[str, float]:
    """The ledger's memory after it is built and after it applies ``txs``, and a dict of the
    same balances as a baseline. tracemalloc counts exactly what each structure holds; the RSS
    growth is reported beside it. The traced ledger applies every transaction (untimed:
    tracing slows it), so the figure after includes what the payments leave behind (their
    window, new accounts, outcomes)."""
    results: dict[str, float] = {}
    prechecked: list[None] = [None] * len(txs)
    gc.collect()
    rss_before = rss_bytes()
    tracemalloc.start()
    traced = Ledger(genesis_file)
    results["ledger_state_mb"] = tracemalloc.get_traced_memory()[0] / 1e6
    results["ledger_rss_mb"] = (rss_bytes() - rss_before) / 1e6
    for start in range(0, len(txs), BATCH_TXS):
        traced.apply(
            txs[start : start + BATCH_TXS],
            now_ms + start // BATCH_TXS,
            prechecked[start : start + BATCH_TXS],
        )
    gc.collect()
    results["ledger_after_mb"] = tracemalloc.get_traced_memory()[0] / 1e6
    tracemalloc.stop()
    del traced
    gc.collect()
    tracemalloc.start()
    as_dict = {account: balance for account, balance in RECORD.iter_unpack(genesis_file)}
    results["dict_state_mb"] = tracemalloc.get_traced_memory()[0] / 1e6
    tracemalloc.stop()
    del as_dict
    gc.collect()
    return results


def measure(accounts: int, tx_count: int, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    signers = [KeyPair.from_seed(hashlib.sha256(b"bench-%d" % i).digest()) for i in range(SIGNERS)]
    genesis_file = make_genesis(accounts, signers, rng)
    now_ms = 1_700_000_000_000
    txs = make_transactions(tx_count, signers, genesis_file, rng, now_ms)
    results: dict[str, float] = {}

    # Baseline: single-core ed25519 verification, the cost every transaction pays once.
    sample = txs[: min(len(txs), 20_000)]
    started = time.perf_counter()
    verdicts = precheck_all(sample)
    results["verify_per_s"] = len(sample) / (time.perf_counter() - started)
    assert all(v is None for v in verdicts)
    # pynacl's C calls release the GIL, so threads check signatures in parallel.
    threads = os.cpu_count() or 1
    chunks = [sample[i::threads] for i in range(threads)]
    with ThreadPoolExecutor(threads) as pool:
        started = time.perf_counter()
        verdict_lists = list(pool.map(precheck_all, chunks))
        results["verify_threads_per_s"] = len(sample) / (time.perf_counter() - started)
    assert all(v is None for verdicts in verdict_lists for v in verdicts)
    results["threads"] = threads
    results.update(memory(genesis_file, txs, now_ms))
    prechecked = [None] * len(txs)
    ledger = Ledger(genesis_file)

    # Apply pre-verified transactions in log-entry-sized batches.
    started = time.perf_counter()
    accepted = 0
    for start in range(0, len(txs), BATCH_TXS):
        stamp = now_ms + start // BATCH_TXS
        batch = txs[start : start + BATCH_TXS]
        outcomes = ledger.apply(batch, stamp, prechecked[start : start + BATCH_TXS])
        accepted += sum(1 for o in outcomes if o.accepted)
    results["apply_per_s"] = len(txs) / (time.perf_counter() - started)
    results["accepted"] = accepted

    # Snapshot: compact, write atomically with fsync, its state root from scratch (§4.4.3; a
    # server's seal rehashes only the changed buckets).
    with tempfile.TemporaryDirectory() as directory:
        started = time.perf_counter()
        snapshot = ledger.balances_file()
        compacted = time.perf_counter()
        atomic_write(Path(directory) / "balances", snapshot)
        written = time.perf_counter()
        digest = state_root(snapshot)
        hashed = time.perf_counter()
    assert digest == ledger.state_root()
    results["snapshot_compact_s"] = compacted - started
    results["snapshot_write_s"] = written - compacted
    results["snapshot_hash_s"] = hashed - written
    results["snapshot_mb"] = len(snapshot) / 1e6
    results["accounts_after"] = ledger.account_count()
    ledger.check()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--txs", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    r = measure(args.accounts, args.txs, args.seed)
    print(
        f"ledger benchmark: {args.accounts} accounts, {args.txs} transactions, "
        f"Python {platform.python_version()}, {os.cpu_count()} cores"
    )
    print("| figure | measured | target |")
    print("|---|---|---|")
    print(
        f"| memory of the ledger state (tracemalloc) | {r['ledger_state_mb']:.1f} MB "
        f"(RSS grew {r['ledger_rss_mb']:.1f} MB; a dict of the same balances: "
        f"{r['dict_state_mb']:.1f} MB) | ≤ 150 MB |"
    )
    print(
        f"| memory of the ledger state after the {args.txs:,} transactions (tracemalloc) | "
        f"{r['ledger_after_mb']:.1f} MB | ≤ 150 MB |"
    )
    print(
        f"| apply, pre-verified, batches of {BATCH_TXS} | {r['apply_per_s']:,.0f} tx/s "
        f"({r['accepted']:.0f} accepted) | ≥ 200,000 tx/s |"
    )
    print(f"| signature verification, one core (baseline) | {r['verify_per_s']:,.0f} tx/s | |")
    print(
        f"| signature verification, {r['threads']:.0f} threads | "
        f"{r['verify_threads_per_s']:,.0f} tx/s | |"
    )
    print(f"| apply ÷ verify | {r['apply_per_s'] / r['verify_per_s']:.1f}× | |")
    print(
        f"| snapshot of {r['accounts_after']:.0f} accounts ({r['snapshot_mb']:.1f} MB): "
        f"compact | {r['snapshot_compact_s'] * 1000:.0f} ms | |"
    )
    print(f"| snapshot: atomic write + fsync | {r['snapshot_write_s'] * 1000:.0f} ms | |")
    print(f"| snapshot: state root (§4.4.3) | {r['snapshot_hash_s'] * 1000:.0f} ms | |")


if __name__ == "__main__":
    main()
