"""Round layouts at scale: today's flat round against bucketed and checkpoint+delta layouts
(issue 10, protocol §4.4).

    .venv/bin/python -m benchmarks.bench_scale [--accounts 1000000 10000000] [--rounds 15]
        [--payments 2000] [--new-fraction 0.1] [--checkpoint-every 60] [--dir DIR] [--json P]

One process, no network. Per account count, a random genesis (``scryp.random_genesis``), then
``--rounds`` rounds of ``--payments`` transfers (payer: a random existing account; payee: a new
random id for ``--new-fraction`` of them, else a random existing account), applied with the
ledger's ``BalanceTable``. Each round is then sealed by every layout, in the same run:

- **today** (protocol §8.1): the whole balances file built (``BalanceTable.balances_file``),
  SHA-256, written and fsynced with its transactions (``RoundStore.write``), and hashed into its
  hybrid torrent by libtorrent (``scryp.swarm.build_round_torrent``);
- **delta** (candidate b, the decision): the changed records applied to ``BucketedBalances``
  (buckets + incremental Merkle root = the state root), a round directory of ``changes`` (the
  changed records, 36 bytes each, balance 0 = removed) and ``transactions`` written+fsynced and
  hashed into its torrent by libtorrent; plus, measured once, a checkpoint (the flat file
  written, fsynced and torrent-hashed) whose cost is spread over ``--checkpoint-every`` rounds;
- **bucket files** (candidate a): one file per bucket (2**12), the changed buckets written,
  the others hard-linked from the previous round directory, then the torrent of the directory
  (libtorrent rehashes all of it: its Python binding has ``set_hash`` for v1 pieces but no
  ``set_hash2`` for v2 ones, so known v2 hashes cannot be handed to it).

Writes go to ``--dir`` (default: a temporary directory under /tmp); every figure is measured.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import libtorrent as lt

from scryp.core import snapshot
from scryp.core.balances import RECORD, BalanceTable
from scryp.core.buckets import BucketedBalances, bucket_of
from scryp.core.raft.entries import SnapshotMeta
from scryp.random_genesis import random_genesis_chunks
from scryp.server.rounds import RoundStore
from scryp.swarm import build_round_torrent

FAUCET = bytes(32)
TX_BYTES = 140
PIECE = snapshot.PIECE_BYTES
BUCKET_FILE_BITS = 12


def timed(action: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = action()
    return result, time.perf_counter() - started


def with_cpu(seal: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A seal's figures plus the CPU seconds the process spent on it (all threads, so
    libtorrent's hashing threads count): wall time is inflated on a shared machine."""
    started = time.process_time()
    figures = seal()
    figures["cpu_s"] = time.process_time() - started
    return figures


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


def fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def make_round(
    table: BalanceTable, ids: list[bytes], rng: random.Random, payments: int, new_fraction: float
) -> tuple[dict[bytes, int], bytes]:
    """Apply one round of transfers; the changed records and stand-in transaction bytes."""
    touched: set[bytes] = set()
    for _ in range(payments):
        payer = ids[rng.randrange(len(ids))]
        if rng.random() < new_fraction:
            payee = rng.randbytes(32)
            ids.append(payee)
        else:
            payee = ids[rng.randrange(len(ids))]
        if payee != payer and table.transfer(payer, payee, 1):
            touched.update((payer, payee))
    assert set(table.take_touched()) == touched  # the table's own note of them, dropped each round
    changes = {account: table.get(account) for account in touched}
    return changes, rng.randbytes(TX_BYTES * payments)


def seal_today(table: BalanceTable, store: RoundStore, number: int, txs: bytes) -> dict[str, Any]:
    flat, build_s = timed(table.balances_file)
    digest, hash_s = timed(lambda: hashlib.sha256(flat).digest())  # the layout before §4.4
    meta = SnapshotMeta(round=number, index=number, term=1, stamp_ms=number, state_root=digest)
    contents = {  # a checkpoint round's files (protocol §4.4.4), as every round was then
        snapshot.BALANCES: flat,
        snapshot.CHANGES: b"",
        snapshot.TRANSACTIONS: txs,
        snapshot.WINDOW: b"",
    }
    stored, write_s = timed(lambda: store.write(meta, contents))
    torrent, torrent_s = timed(lambda: build_round_torrent(stored.path))
    store.prune(keep=2, keep_from=number)
    return {
        "seal_s": build_s + hash_s + write_s + torrent_s,
        "build_s": build_s,
        "sha256_s": hash_s,
        "write_fsync_s": write_s,
        "torrent_s": torrent_s,
        "bytes_written": len(flat) + len(txs),
        "metadata_bytes": len(torrent.torrent),
    }


def seal_delta(
    state: BucketedBalances, work: Path, number: int, changes: dict[bytes, int], txs: bytes
) -> dict[str, Any]:
    started = time.perf_counter()
    state.apply(changes)
    root = state.root
    root_s = time.perf_counter() - started
    directory = work / snapshot.round_dir_name(number)
    directory.mkdir()
    record_bytes = b"".join(RECORD.pack(a, b) for a, b in sorted(changes.items()))

    def write() -> None:
        write_synced(directory / "changes", record_bytes)
        write_synced(directory / "transactions", txs)
        fsync_dir(directory)

    _, write_s = timed(write)
    torrent, torrent_s = timed(lambda: delta_torrent(directory))
    if number >= 2:
        shutil.rmtree(work / snapshot.round_dir_name(number - 2), ignore_errors=True)
    return {
        "seal_s": root_s + write_s + torrent_s,
        "root_s": root_s,
        "write_fsync_s": write_s,
        "torrent_s": torrent_s,
        "bytes_written": len(record_bytes) + len(txs),
        "metadata_bytes": len(torrent),
        "root": root.hex(),
    }


def delta_torrent(directory: Path) -> bytes:
    """A round's delta torrent: hybrid, 16 KiB pieces, as ``build_round_torrent`` makes."""
    entries = [
        lt.create_file_entry(f"{directory.name}/{name}", (directory / name).stat().st_size)
        for name in ("changes", "transactions")
    ]
    creator = lt.create_torrent(entries, PIECE)
    lt.set_piece_hashes(creator, str(directory.parent))
    generated = creator.generate()
    generated.pop(b"creation date", None)
    return bytes(lt.bencode(generated))


def seal_bucket_files(
    state: BucketedBalances, work: Path, number: int, changed: set[int], first: bool
) -> dict[str, Any]:
    """Candidate a: a file per bucket, unchanged ones hard-linked from the previous round."""
    bits = BUCKET_FILE_BITS
    directory = work / snapshot.round_dir_name(number)
    previous = work / snapshot.round_dir_name(number - 1)
    directory.mkdir()
    started = time.perf_counter()
    written = 0
    shift = state.bits - bits
    for index in range(1 << bits):
        name = directory / f"{index:04x}"
        if first or index in changed:
            data = b"".join(state.buckets[(index << shift) : ((index + 1) << shift)])
            write_synced(name, data)
            written += len(data)
        else:
            os.link(previous / f"{index:04x}", name)
    fsync_dir(directory)
    write_s = time.perf_counter() - started
    entries = [
        lt.create_file_entry(f"{directory.name}/{i:04x}", (directory / f"{i:04x}").stat().st_size)
        for i in range(1 << bits)
    ]
    creator = lt.create_torrent(entries, PIECE)
    _, torrent_s = timed(lambda: lt.set_piece_hashes(creator, str(work)))
    generated = creator.generate()
    generated.pop(b"creation date", None)
    torrent = lt.bencode(generated)
    if number >= 2:
        shutil.rmtree(work / snapshot.round_dir_name(number - 2), ignore_errors=True)
    return {
        "seal_s": write_s + torrent_s,
        "write_link_fsync_s": write_s,
        "torrent_s": torrent_s,
        "bytes_written": written,
        "metadata_bytes": len(torrent),
    }


def checkpoint_cost(state: BucketedBalances, work: Path) -> dict[str, Any]:
    """Candidate b's checkpoint: the flat file built, written+fsynced and torrent-hashed."""
    directory = work / "checkpoint"
    directory.mkdir()
    flat, build_s = timed(state.flat)
    _, write_s = timed(partial(write_synced, directory / "balances", flat))
    entry = lt.create_file_entry("checkpoint/balances", len(flat))
    creator = lt.create_torrent([entry], PIECE)
    _, torrent_s = timed(lambda: lt.set_piece_hashes(creator, str(work)))
    torrent = lt.bencode(creator.generate())
    shutil.rmtree(directory)
    return {
        "build_s": build_s,
        "write_fsync_s": write_s,
        "torrent_s": torrent_s,
        "total_s": build_s + write_s + torrent_s,
        "metadata_bytes": len(torrent),
        "bytes": len(flat),
    }


def v1_reuse_cost(flat: bytes, dirty_pieces: int) -> dict[str, float]:
    """Can libtorrent build a torrent from known piece hashes? v1-only with ``set_hash``."""
    count = (len(flat) + PIECE - 1) // PIECE
    known = [os.urandom(20) for _ in range(count)]  # stand-ins: generate() does not check them
    entry = lt.create_file_entry("round/balances", len(flat))
    creator = lt.create_torrent([entry], PIECE, lt.create_torrent.v1_only)

    def rehash_dirty_and_generate() -> bytes:
        for piece in range(min(dirty_pieces, count)):
            known[piece] = hashlib.sha1(flat[piece * PIECE : (piece + 1) * PIECE]).digest()
        for piece, digest in enumerate(known):
            creator.set_hash(piece, digest)
        return bytes(lt.bencode(creator.generate()))

    torrent, seconds = timed(rehash_dirty_and_generate)
    return {
        "pieces": count,
        "dirty_pieces": dirty_pieces,
        "seconds": seconds,
        "bytes": len(torrent),
    }


def quantiles(values: list[float]) -> dict[str, Any]:
    ordered = sorted(values)
    return {
        "p50_ms": round(1000 * statistics.median(ordered), 2),
        "max_ms": round(1000 * ordered[-1], 2),
        "samples": len(ordered),
    }


def light_cost(state: BucketedBalances, rng: random.Random, samples: int = 2000) -> dict[str, Any]:
    """Light client under the decision: the bucket's pieces in the flat checkpoint + the proof."""
    sizes = [len(b) for b in state.buckets]
    starts = [0]
    for size in sizes:
        starts.append(starts[-1] + size)
    pieces, proofs = [], []
    for _ in range(samples):
        index = bucket_of(rng.randbytes(32), state.bits)
        start, end = starts[index], starts[index + 1]
        pieces.append(0 if end == start else (end - 1) // PIECE - start // PIECE + 1)
        proofs.append(32 * state.bits + sizes[index])  # path + (if changed) the bucket itself
    return {
        "pieces_max": max(pieces),
        "pieces_mean": round(statistics.mean(pieces), 2),
        "path_bytes": 32 * state.bits,
        "bucket_bytes_mean": round(statistics.mean(sizes)),
        "bucket_bytes_max": max(sizes),
        "proof_bytes_max": max(proofs),
    }


def measure(accounts: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    rng = random.Random(accounts)
    genesis, genesis_s = timed(
        lambda: b"".join(random_genesis_chunks(accounts, FAUCET, {}, accounts))
    )
    table = BalanceTable(genesis)
    ids = [a for (a, _) in RECORD.iter_unpack(genesis)]
    bits = args.bits
    state, tree_build_s = timed(partial(BucketedBalances, genesis, bits))
    result: dict[str, Any] = {
        "accounts": accounts,
        "state_bytes": len(genesis),
        "genesis_s": round(genesis_s, 2),
        "tree_bits": bits,
        "tree_build_s": round(tree_build_s, 2),
    }
    del genesis
    dirs = {name: work / f"{accounts}-{name}" for name in ("today", "delta", "files")}
    for path in dirs.values():
        path.mkdir()
    store = RoundStore(dirs["today"])
    today, delta, files = [], [], []
    for number in range(1, args.rounds + 1):
        changes, txs = make_round(table, ids, rng, args.payments, args.new_fraction)
        today.append(with_cpu(partial(seal_today, table, store, number, txs)))
        delta.append(with_cpu(partial(seal_delta, state, dirs["delta"], number, changes, txs)))
        if number <= args.bucket_file_rounds:
            changed = {bucket_of(a, BUCKET_FILE_BITS) for a in changes}
            seal = partial(seal_bucket_files, state, dirs["files"], number, changed, number == 1)
            files.append(with_cpu(seal))
    result["rounds"] = {"today": today, "delta": delta, "bucket_files": files[1:]}
    # The bucketed root is the state after the same transfers as the flat file's.
    invariant_flat = state.flat() == table.balances_file()
    result["delta_state_matches_today"] = invariant_flat
    idle_today = seal_today(table, store, args.rounds + 1, b"")
    _, idle_delta_s = timed(lambda: (state.apply({}), state.root))
    result["idle"] = {"today_seal_s": idle_today["seal_s"], "delta_seal_s": idle_delta_s}
    result["load_average"] = os.getloadavg()
    result["checkpoint"] = checkpoint_cost(state, work)
    flat = state.flat()
    result["v1_set_hash"] = v1_reuse_cost(flat, dirty_pieces=4000)
    result["light"] = light_cost(state, rng)
    result["rss_mb"] = round(rss_mb())
    for path in dirs.values():
        shutil.rmtree(path, ignore_errors=True)
    return result


def summary(result: dict[str, Any], every: int) -> dict[str, Any]:
    """The issue's figures from one account count's measurements (see docs/BENCHMARKS.md)."""
    state = result["state_bytes"]
    rounds = result["rounds"]
    checkpoint = result["checkpoint"]
    out: dict[str, Any] = {"accounts": result["accounts"], "state_mb": round(state / 1e6, 1)}
    for name, rows in rounds.items():
        if not rows:
            continue
        written = statistics.mean(r["bytes_written"] for r in rows)
        row = quantiles([r["seal_s"] for r in rows])
        row["cpu_p50_ms"] = round(1000 * statistics.median(r["cpu_s"] for r in rows), 2)
        row["cpu_max_ms"] = round(1000 * max(r["cpu_s"] for r in rows), 2)
        row["written_mb_per_round"] = round(written / 1e6, 3)
        row["metadata_kb"] = round(statistics.mean(r["metadata_bytes"] for r in rows) / 1e3, 1)
        if name == "today":
            row["disk_minute_gb"] = round(60 * written / 1e9, 2)
        elif name == "delta":
            # Two checkpoints (the newest and the one before, while the next is written) plus a
            # minute of deltas; the checkpoint's work spread over ``every`` rounds.
            row["disk_minute_gb"] = round((2 * state + 60 * written) / 1e9, 2)
            row["checkpoint_amortized_ms"] = round(1000 * checkpoint["total_s"] / every, 1)
            parts = ("root_s", "write_fsync_s", "torrent_s")
            row["parts_p50_ms"] = {
                p: round(1000 * statistics.median(r[p] for r in rows), 2) for p in parts
            }
        else:
            row["disk_minute_gb"] = round((state + 60 * written) / 1e9, 2)
        row["disk_minute_x_state"] = round(row["disk_minute_gb"] * 1e9 / state, 2)
        out[name] = row
    today_parts = ("build_s", "sha256_s", "write_fsync_s", "torrent_s")
    out["today"]["parts_p50_ms"] = {
        p: round(1000 * statistics.median(r[p] for r in rounds["today"]), 1) for p in today_parts
    }
    out["idle_ms"] = {k: round(1000 * v, 3) for k, v in result["idle"].items()}
    out["checkpoint"] = {k: round(v, 3) for k, v in checkpoint.items()}
    out["light"] = result["light"]
    out["v1_set_hash"] = result["v1_set_hash"]
    delta_bytes = statistics.mean(r["bytes_written"] for r in rounds["delta"])
    out["full_sync_mb"] = {
        "today": round((state + rounds["today"][-1]["metadata_bytes"]) / 1e6, 1),
        "delta_worst": round(
            (state + checkpoint["metadata_bytes"] + (every - 1) * delta_bytes) / 1e6, 1
        ),
    }
    for key in ("tree_build_s", "genesis_s", "rss_mb", "load_average", "delta_state_matches_today"):
        out[key] = result[key]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--payments", type=int, default=2000)
    parser.add_argument("--new-fraction", type=float, default=0.1)
    parser.add_argument("--bits", type=int, default=16, help="Merkle tree: 2**bits buckets")
    parser.add_argument("--checkpoint-every", type=int, default=60)
    parser.add_argument("--bucket-file-rounds", type=int, default=4)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="bench-scale-") as scratch:
        for accounts in args.accounts:
            work = Path(scratch) / str(accounts)
            work.mkdir()
            measured = measure(accounts, args, work)
            results.append(summary(measured, args.checkpoint_every))
            print(json.dumps(results[-1], indent=1), flush=True)
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
