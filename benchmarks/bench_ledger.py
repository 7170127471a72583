"""Ledger benchmark for 1M accounts (issue 2): memory, apply rate, snapshot, verify baseline.

    .venv/bin/python -m benchmarks.bench_ledger [--accounts 1000000] [--txs 100000]
                                                [--json PATH]

Prints a Markdown table for docs/BENCHMARKS.md. Every figure is measured in this run; the
signature-verification rate is the single-core baseline the apply rate is compared with, and
a plain dict of the same balances (before and after the payments) and the payments' window
alone are the memory baselines, so the ratios hold on a noisy, shared machine even when the
absolute numbers move. The memory that counts is the one after the payments and the seal:
what a server holds. ``--json`` also records the load average before and after the run.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import platform
import random
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from scryp.core.balances import RECORD, RECORD_BYTES, TOTAL_SUPPLY
from scryp.core.buckets import state_root
from scryp.core.genesis import Genesis
from scryp.core.ledger import Ledger, precheck_all
from scryp.core.tx import Transaction, decode_many
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


def _decoded_batches(raw: list[bytes]) -> Iterator[list[Transaction]]:
    """The payments as a server's apply sees them: decoded from each log entry's bytes, so
    the objects the ledger keeps (each payment's id and timestamp in the window) are
    allocated here, where tracemalloc sees them, and the rest is dropped after the batch."""
    for start in range(0, len(raw), BATCH_TXS):
        yield decode_many(b"".join(raw[start : start + BATCH_TXS]), BATCH_TXS)


def _apply_all(ledger: Ledger, raw: list[bytes], now_ms: int) -> None:
    for n, batch in enumerate(_decoded_batches(raw)):
        ledger.apply(batch, now_ms + n, [None] * len(batch))


def _traced_mb() -> float:
    gc.collect()
    return tracemalloc.get_traced_memory()[0] / 1e6


def memory(genesis_file: bytes, raw: list[bytes], now_ms: int) -> dict[str, float]:
    """The ledger's memory as built, after it applies every payment (the duplicate window
    of all of them and the new accounts included: their timestamps are inside the window
    at the end), and after the seal's state root (the Merkle tree a server keeps from its
    first seal on). Baselines of the same run: a dict of the same balances, before and
    after the payments, and the window alone (the same payments applied to a one-account
    ledger: all refused for funds, all remembered). tracemalloc counts what each structure
    holds; ``rss`` measures the same ledger with tracing off."""
    results = rss(genesis_file, raw, now_ms)
    tracemalloc.start()
    traced = Ledger(genesis_file)
    results["ledger_state_mb"] = _traced_mb()
    _apply_all(traced, raw, now_ms)
    results["ledger_after_mb"] = _traced_mb()
    traced.state_root()
    results["ledger_sealed_mb"] = _traced_mb()
    tracemalloc.stop()
    after_file = traced.balances_file()
    del traced
    lone = Genesis.from_allocations({bytes(32): TOTAL_SUPPLY}).encode()
    tracemalloc.start()
    window_only = Ledger(lone)
    empty_mb = _traced_mb()
    _apply_all(window_only, raw, now_ms)
    results["window_mb"] = _traced_mb() - empty_mb
    results["window_entries"] = len(window_only.recent())
    tracemalloc.stop()
    del window_only
    for name, balances in (("dict_state_mb", genesis_file), ("dict_after_mb", after_file)):
        gc.collect()
        tracemalloc.start()
        as_dict = {account: balance for account, balance in RECORD.iter_unpack(balances)}
        results[name] = tracemalloc.get_traced_memory()[0] / 1e6
        tracemalloc.stop()
        del as_dict
    gc.collect()
    return results


def rss(genesis_file: bytes, raw: list[bytes], now_ms: int) -> dict[str, float]:
    """How much the process's resident set grows as the ledger is built, then applies every
    payment and seals (tracing off; run before any other ledger is made and freed)."""
    gc.collect()
    before = rss_bytes()
    ledger = Ledger(genesis_file)
    built = rss_bytes()
    _apply_all(ledger, raw, now_ms)
    ledger.state_root()
    gc.collect()
    after = rss_bytes()
    del ledger
    gc.collect()
    return {"ledger_rss_mb": (built - before) / 1e6, "ledger_rss_after_mb": (after - before) / 1e6}


def verify_rates(txs: list[Transaction]) -> dict[str, float]:
    """Baseline: ed25519 verification, the cost every transaction pays once per server."""
    results: dict[str, float] = {}
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
    return results


def apply_rates(
    genesis_file: bytes, txs: list[Transaction], now_ms: int
) -> tuple[Ledger, dict[str, float]]:
    """Apply pre-verified transactions in log-entry-sized batches, timed: once as decoded
    objects (the ledger alone), once from each entry's bytes (decoding included, as a
    follower applies a committed entry). Returns the second ledger, with the figures."""
    raw = [tx.raw for tx in txs]
    decoding = Ledger(genesis_file)
    started = time.perf_counter()
    _apply_all(decoding, raw, now_ms)
    decode_apply_per_s = len(txs) / (time.perf_counter() - started)
    del decoding
    prechecked = [None] * len(txs)
    ledger = Ledger(genesis_file)
    started = time.perf_counter()
    accepted = 0
    for start in range(0, len(txs), BATCH_TXS):
        stamp = now_ms + start // BATCH_TXS
        batch = txs[start : start + BATCH_TXS]
        outcomes = ledger.apply(batch, stamp, prechecked[start : start + BATCH_TXS])
        accepted += sum(1 for o in outcomes if o.accepted)
    apply_per_s = len(txs) / (time.perf_counter() - started)
    figures = {
        "apply_per_s": apply_per_s,
        "decode_apply_per_s": decode_apply_per_s,
        "accepted": accepted,
    }
    return ledger, figures


def snapshot_times(ledger: Ledger) -> dict[str, float]:
    """Compact, write atomically with fsync, and the state root from scratch (§4.4.3; a
    server's seal rehashes only the changed buckets)."""
    with tempfile.TemporaryDirectory() as directory:
        started = time.perf_counter()
        snapshot = ledger.balances_file()
        compacted = time.perf_counter()
        atomic_write(Path(directory) / "balances", snapshot)
        written = time.perf_counter()
        digest = state_root(snapshot)
        hashed = time.perf_counter()
    assert digest == ledger.state_root()
    return {
        "snapshot_compact_s": compacted - started,
        "snapshot_write_s": written - compacted,
        "snapshot_hash_s": hashed - written,
        "snapshot_mb": len(snapshot) / 1e6,
        "accounts_after": ledger.account_count(),
    }


def measure(accounts: int, tx_count: int, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    signers = [KeyPair.from_seed(hashlib.sha256(b"bench-%d" % i).digest()) for i in range(SIGNERS)]
    genesis_file = make_genesis(accounts, signers, rng)
    now_ms = 1_700_000_000_000
    txs = make_transactions(tx_count, signers, genesis_file, rng, now_ms)
    results = verify_rates(txs)
    results.update(memory(genesis_file, [tx.raw for tx in txs], now_ms))
    ledger, applied = apply_rates(genesis_file, txs, now_ms)
    results.update(applied)
    results.update(snapshot_times(ledger))
    ledger.check()
    return results


def table(r: dict[str, float], txs: int) -> list[str]:
    return [
        "| figure | measured | target |",
        "|---|---|---|",
        f"| memory of the ledger state, as built (tracemalloc) | {r['ledger_state_mb']:.1f} MB "
        f"(RSS grew {r['ledger_rss_mb']:.1f} MB) | ≤ 150 MB |",
        f"| memory after the {txs:,} payments (window of {r['window_entries']:,.0f} ids, new "
        f"accounts) | {r['ledger_after_mb']:.1f} MB | ≤ 150 MB |",
        f"| memory after the seal's state root (+ the Merkle tree a server keeps) | "
        f"{r['ledger_sealed_mb']:.1f} MB (RSS grew {r['ledger_rss_after_mb']:.1f} MB from "
        "before the build) | ≤ 150 MB |",
        f"| baseline: the window alone (same payments, one-account ledger) | "
        f"{r['window_mb']:.1f} MB | |",
        f"| baseline: a dict of the same balances, before / after the payments | "
        f"{r['dict_state_mb']:.1f} / {r['dict_after_mb']:.1f} MB | |",
        f"| apply, pre-verified, decoded, batches of {BATCH_TXS} | {r['apply_per_s']:,.0f} tx/s "
        f"({r['accepted']:.0f} accepted) | ≥ 200,000 tx/s |",
        f"| apply from each entry's bytes (decoding included) | "
        f"{r['decode_apply_per_s']:,.0f} tx/s | |",
        f"| signature verification, one core (baseline) | {r['verify_per_s']:,.0f} tx/s | |",
        f"| signature verification, {r['threads']:.0f} threads | "
        f"{r['verify_threads_per_s']:,.0f} tx/s | |",
        f"| apply ÷ verify | {r['apply_per_s'] / r['verify_per_s']:.1f}× | |",
        f"| snapshot of {r['accounts_after']:,.0f} accounts ({r['snapshot_mb']:.1f} MB): "
        f"compact | {r['snapshot_compact_s'] * 1000:.0f} ms | |",
        f"| snapshot: atomic write + fsync | {r['snapshot_write_s'] * 1000:.0f} ms | |",
        f"| snapshot: state root from scratch (§4.4.3) | {r['snapshot_hash_s'] * 1000:.0f} ms | |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--txs", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    load_before = os.getloadavg()
    r = measure(args.accounts, args.txs, args.seed)
    load_after = os.getloadavg()
    print(
        f"ledger benchmark: {args.accounts} accounts, {args.txs} transactions, "
        f"Python {platform.python_version()}, {os.cpu_count()} cores, load average "
        f"{load_before[0]:.2f} before, {load_after[0]:.2f} after"
    )
    print("\n".join(table(r, args.txs)))
    if args.json is not None:
        report = {
            "accounts": args.accounts,
            "txs": args.txs,
            "seed": args.seed,
            "python": platform.python_version(),
            "cores": os.cpu_count(),
            "loadavg_before": load_before,
            "loadavg_after": load_after,
            "results": r,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
