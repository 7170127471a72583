"""A server's seal with the code that ships (issue 10 stage B, protocol §4.4.4), against the
flat layout every round used before, both measured in the same run.

    .venv/bin/python -m benchmarks.bench_seal [--accounts 1000000 10000000] [--rounds 12]
        [--flat-rounds 3] [--payments 2000] [--new-fraction 0.1] [--checkpoint-every 60]
        [--dir DIR] [--json P]

One process, no network. Per account count: a random genesis (``scryp.random_genesis``) loaded
into the server's ``Ledger``; then ``--rounds`` rounds, each ``--payments`` transfers of 1 scryp
(payer: a random existing account; payee: a new random id for ``--new-fraction`` of them,
else a random existing account) applied by ``Ledger.apply`` (signatures are the server's
precheck, parallel and measured by ``bench_server``: here marked checked), then one idle round,
all sealed as stage B; then ``--flat-rounds`` more busy rounds and an idle one, sealed flat
(after stage B's: a flat seal compacts the table, which would flatter the stage B seal after
it). The layouts:

- **stage B** (what ships): ``Ledger.state_root`` (the incremental root), ``state_tree`` (the
  copy kept for proofs), ``round_contents`` for a round that is not a checkpoint (``changes``,
  ``transactions``, ``remembered``), ``RoundStore.write`` (every file fsynced, renamed) and
  ``build_round_torrent``, exactly as ``ServerIO.write_round`` and seeding do;
- **flat** (before stage B; what a checkpoint round still costs): the same plus the whole
  ``balances`` file built, written, fsynced and torrent-hashed.

A checkpoint round costs the flat figure once every ``--checkpoint-every`` rounds; the table
gives both and their average. Disk for a minute of 1 s rounds is computed from the measured
sizes: flat = 60 round directories; stage B = the rounds a server keeps (§4.4.4: from the
compaction point, a checkpoint at most ``checkpoint_every`` + lag rounds back, so up to two
checkpoints and ``checkpoint_every`` + 10 deltas).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, overload

from scryp.core import snapshot
from scryp.core.balances import RECORD_BYTES
from scryp.core.ledger import Ledger
from scryp.core.raft.entries import SnapshotMeta
from scryp.core.tx import Transaction
from scryp.random_genesis import random_genesis_chunks
from scryp.server.rounds import RoundStore, round_contents
from scryp.swarm import build_round_torrent

FAUCET = bytes(32)
STAMP_MS = 1_800_000_000_000
COMPACTION_LAG_ROUNDS = 10  # the server's default (10 s of 1 s rounds)


class GenesisIds(Sequence[bytes]):
    """The funded ids of a random genesis (the faucet, its last record, left out), read from
    its bytes when picked: a list of 100M ids would be 8 GB of Python objects, and a server
    holds no per-account object (the ledger is two flat arrays)."""

    def __init__(self, genesis: bytes) -> None:
        self._genesis = genesis
        self._count = len(genesis) // RECORD_BYTES - 1

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> bytes: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[bytes]: ...
    def __getitem__(self, index: int | slice) -> bytes | Sequence[bytes]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._count))]
        if not 0 <= index < self._count:
            raise IndexError(index)
        start = index * RECORD_BYTES
        return self._genesis[start : start + 32]


def timed(action: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = action()
    return result, time.perf_counter() - started


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file())


def payments(
    rng: random.Random, ids: Sequence[bytes], count: int, new_fraction: float, stamp_ms: int
) -> list[Transaction]:
    """``count`` transfers of 1 from random accounts; ``new_fraction`` of them to new ids."""
    txs = []
    for i in range(count):
        payer = rng.choice(ids)
        payee = rng.randbytes(32) if rng.random() < new_fraction else rng.choice(ids)
        if payee == payer:
            payee = rng.randbytes(32)
        raw = b"".join(
            (
                (stamp_ms + i % 1000).to_bytes(8, "big"),
                (1).to_bytes(4, "big"),
                payee,
                payer,
                bytes(64),  # unsigned: applied as prechecked (see the module header)
            )
        )
        txs.append(Transaction.decode(raw))
    return txs


def seal(
    ledger: Ledger, store: RoundStore, number: int, every: int, txs: bytes
) -> dict[str, float]:
    """Seal round ``number`` as the server does; the figures of each step (seconds, bytes)."""
    started_cpu = time.process_time()
    root, root_s = timed(ledger.state_root)
    _, tree_s = timed(ledger.state_tree)
    contents, build_s = timed(lambda: round_contents(number, every, ledger, txs))
    meta = SnapshotMeta(number, 1, number, STAMP_MS, root)
    stored, write_s = timed(lambda: store.write(meta, contents))
    _, torrent_s = timed(lambda: build_round_torrent(stored.path))
    figures = {
        "root_s": root_s,
        "tree_copy_s": tree_s,
        "build_s": build_s,
        "write_s": write_s,
        "torrent_s": torrent_s,
        "bytes": dir_bytes(stored.path),
        "changes_bytes": len(contents[snapshot.CHANGES]),
    }
    figures["seal_s"] = root_s + tree_s + build_s + write_s + torrent_s
    figures["cpu_s"] = time.process_time() - started_cpu
    return figures


def run_accounts(accounts: int, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    genesis, genesis_s = timed(
        lambda: b"".join(random_genesis_chunks(accounts, FAUCET, {}, accounts))
    )
    ids = GenesisIds(genesis)
    gc.freeze()  # the genesis' objects stay out of the measured seals' collections
    started = time.perf_counter()
    ledger = Ledger(genesis)
    load_s = time.perf_counter() - started
    _, first_root_s = timed(ledger.state_root)
    rng = random.Random(accounts)
    stores = {"stage_b": RoundStore(root / "stage-b"), "flat": RoundStore(root / "flat")}
    rows: list[dict[str, Any]] = []
    # Stage B's rounds first, then the flat layout's: a flat seal builds the whole balances
    # file, which compacts the table (new accounts merged, emptied ones dropped), and a
    # stage B seal right after one would find the tidy table a server finds only after a
    # checkpoint, not the one it holds up to 59 rounds later.
    plan = [("stage_b", False)] * args.rounds + [("stage_b", True)]
    plan += [("flat", False)] * args.flat_rounds + [("flat", True)]
    for number, (layout, idle) in enumerate(plan, start=1):
        count = 0 if idle else args.payments
        txs = payments(rng, ids, count, args.new_fraction, STAMP_MS + number * 1000)
        started = time.perf_counter()
        outcomes = ledger.apply(txs, STAMP_MS + number * 1000, [None] * len(txs))
        apply_s = time.perf_counter() - started
        raw = b"".join(tx.raw for tx in txs)
        every = args.checkpoint_every if layout == "stage_b" else 1
        figures = seal(ledger, stores[layout], number, every, raw)
        if layout == "flat":
            shutil.rmtree(stores[layout].path(number))  # keep the disk: its size is recorded
        accepted = sum(1 for o in outcomes if o.accepted)
        rows.append(
            {
                "round": number,
                "layout": layout,
                "idle": idle,
                "accepted": accepted,
                "apply_s": apply_s,
                layout: figures,
            }
        )
        print(
            f"{accounts:>11,} round {number:>2}{' idle' if idle else '     '} "
            f"accepted {accepted:>5}  {layout:>7} seal {figures['seal_s'] * 1e3:8.1f} ms "
            f"({figures['bytes'] / 1e3:10.1f} KB)",
            flush=True,
        )
    summary = summarize(rows, len(ledger.balances_file()), args)
    summary |= {
        "accounts": accounts,
        "genesis_s": genesis_s,
        "ledger_load_s": load_s,
        "first_root_s": first_root_s,
    }
    return {"summary": summary, "rounds": rows}


def summarize(
    rows: list[dict[str, Any]], state_bytes: int, args: argparse.Namespace
) -> dict[str, Any]:
    def busy(layout: str) -> list[dict[str, Any]]:
        return [r for r in rows if r["layout"] == layout and not r["idle"]]

    def idle(layout: str) -> dict[str, float]:
        found: dict[str, float] = next(
            r[layout] for r in rows if r["layout"] == layout and r["idle"]
        )
        return found

    def p50(layout: str, key: str) -> float:
        return float(statistics.median(r[layout][key] for r in busy(layout)))

    def top(layout: str, key: str) -> float:
        return float(max(r[layout][key] for r in busy(layout)))

    delta_bytes = statistics.mean(r["stage_b"]["bytes"] for r in busy("stage_b"))
    checkpoint_bytes = statistics.mean(r["flat"]["bytes"] for r in busy("flat"))
    kept = args.checkpoint_every + COMPACTION_LAG_ROUNDS
    summary = {
        "state_bytes": state_bytes,
        "apply_p50_s": statistics.median(r["apply_s"] for r in busy("stage_b")),
        "accepted_mean": statistics.mean(r["accepted"] for r in busy("stage_b")),
        "stage_b": {k: p50("stage_b", k) for k in busy("stage_b")[0]["stage_b"]},
        "stage_b_max_seal_s": top("stage_b", "seal_s"),
        "flat": {k: p50("flat", k) for k in busy("flat")[0]["flat"]},
        "flat_max_seal_s": top("flat", "seal_s"),
        "idle_stage_b": idle("stage_b"),
        "idle_flat": idle("flat"),
        "stage_b_seal_averaged_s": (
            (args.checkpoint_every - 1) * p50("stage_b", "seal_s") + p50("flat", "seal_s")
        )
        / args.checkpoint_every,
        "disk_minute_flat_bytes": 60 * checkpoint_bytes,
        "disk_minute_stage_b_bytes": 2 * checkpoint_bytes + kept * delta_bytes,
        "rss_max_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }
    summary["disk_minute_flat_x_state"] = summary["disk_minute_flat_bytes"] / state_bytes
    summary["disk_minute_stage_b_x_state"] = summary["disk_minute_stage_b_bytes"] / state_bytes
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--flat-rounds", type=int, default=3)
    parser.add_argument("--payments", type=int, default=2000)
    parser.add_argument("--new-fraction", type=float, default=0.1)
    parser.add_argument("--checkpoint-every", type=int, default=snapshot.CHECKPOINT_EVERY_DEFAULT)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if not 1 <= args.rounds <= 100 or not 0 <= args.payments <= 100_000:
        parser.error("--rounds 1..100 and --payments 0..100000 (a bounded run)")
    if not 1 <= args.flat_rounds <= 100:
        parser.error("--flat-rounds 1..100")
    base = Path(tempfile.mkdtemp(prefix="bench-seal-", dir=args.dir))
    results = []
    try:
        for accounts in args.accounts:
            work = base / str(accounts)
            work.mkdir()
            results.append(run_accounts(accounts, args, work))
            shutil.rmtree(work)
            print(json.dumps(results[-1]["summary"], indent=1), flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    "args": vars(args) | {"dir": str(args.dir)},
                    "loadavg": os.getloadavg(),
                    "results": results,
                },
                indent=1,
                default=str,
            )
        )


if __name__ == "__main__":
    main()
