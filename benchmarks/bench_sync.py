"""Bytes downloaded and time of each client sync mode (protocol §10.3–§10.4).

    .venv/bin/python -m benchmarks.bench_sync [--accounts 1000000] [--payments 1000]
                                              [--json PATH]
    .venv/bin/python -m benchmarks.bench_sync --checkpoint-every 60 [--delta-rounds 59]
        [--accounts 10000000] [--cap-bytes-per-s 12500000] [--seed-profile server] ...

With ``--checkpoint-every K`` the rounds are laid out as servers write them since stage B
(protocol §4.4.4: a checkpoint round, then delta rounds), a stand-in server API answers
``GET /rounds`` and ``GET /proof``, the seeding session's upload can be capped, and a plain
copy of the same bytes over the same cap is measured in the same run: see
``benchmarks/sync_stageb.py``. Without it, the layout below (two rounds that both hold
``balances``, as before stage B):

One process, 127.0.0.1 only. A synthetic network (``tests.support.synthetic``): round 1 holds
``--accounts`` accounts, round 2 is round 1 after ``--payments`` signed payments (every
``--new-account-every``-th to a new account, which shifts every later record of the flat file),
built by the servers' ledger, not by the clients' replay. A "server"
libtorrent session seeds both rounds and is the private DHT's bootstrap node; three test server
keys publish BEP 44 pointers with a 2-of-3 certificate (made directly with the keys, not by
running Raft servers). Then a fresh client session per mode runs the real client code
(``scryp.client.sync.Client``): it reads the pointers, verifies the certificate and syncs:
- full: the whole round-2 snapshot, nothing held;
- light: one account's balance (a payer's and a filler account's);
- incremental: from a held, verified round 1, round 2's transactions, replayed;
- full-reuse: round 2 in full while holding round 1 (unchanged pieces reused).
Bytes are libtorrent's payload bytes (pieces; no protocol overhead); the torrent's metadata
(its info dict, which every client fetches once per round by BEP 9 before any piece) is
reported beside them and added in ``bytes_with_metadata``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks import sync_stageb
from scryp.client.network import Network
from scryp.client.session import open_client
from scryp.core import bencode
from scryp.core.balances import RECORD
from scryp.swarm import Swarm, SwarmConfig, build_round_torrent
from tests.support.synthetic import build_rounds, payer_keys, publish, server_keys

FETCH_BUDGET_S = 300.0
NETWORK_ID = sync_stageb.NETWORK_ID


def info_dict(torrent: bytes) -> bencode.Value:
    """The .torrent's info dict: what BEP 9 carries as the torrent's metadata."""
    decoded = bencode.decode(torrent)
    assert isinstance(decoded, dict)
    return decoded[b"info"]


async def client_run(
    network: Network, data: Path, mode: str, account: bytes | None
) -> dict[str, Any]:
    """One client, as ``python -m scryp.client balance`` runs it: its own read-only session
    (protocol §8.6), closed at the end; a client that leaves stalls nobody's lookups."""
    async with open_client(network, data) as client:
        started = time.monotonic()
        verified = await client.latest()
        synced = await asyncio.wait_for(client.sync(verified, mode, account), FETCH_BUDGET_S)
        return {
            "mode": synced.mode,
            "round": verified.round,
            "balance": synced.balance,
            "bytes_downloaded": synced.bytes_downloaded,
            "sync_seconds": round(synced.seconds, 3),
            "seconds_with_pointer_lookup": round(time.monotonic() - started, 3),
        }


async def main_async(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    keys = server_keys(3)
    payers = payer_keys(10)
    started = time.monotonic()
    rounds = await asyncio.to_thread(
        partial(build_rounds, new_account_every=args.new_account_every),
        work / "server",
        args.accounts,
        payers,
        args.payments,
        build_round_torrent,
    )
    build_s = time.monotonic() - started
    snapshot_bytes = (rounds[1].round_dir / "balances").stat().st_size

    def plain(boot: Swarm) -> SwarmConfig:
        return SwarmConfig(bootstrap=(boot.address,))

    async with sync_stageb.seeding(rounds, keys, plain) as (server, network):
        await publish(server, NETWORK_ID, rounds, keys, upto=1)
        held = await client_run(network, work / "incremental", "full", None)
        await publish(server, NETWORK_ID, rounds, keys, upto=2)
        shutil.copytree(work / "incremental", work / "reuse")
        filler, _ = RECORD.unpack_from((rounds[1].round_dir / "balances").read_bytes())
        results: dict[str, dict[str, Any]] = {
            "full": await client_run(network, work / "full", "full", payers[0].public),
            "light_payer": await client_run(network, work / "l1", "light", payers[0].public),
            "light_filler": await client_run(network, work / "l2", "light", filler),
            "incremental": await client_run(
                network, work / "incremental", "incremental", payers[0].public
            ),
            "full_reuse": await client_run(network, work / "reuse", "full", payers[0].public),
        }
    metadata = len(bencode.encode(info_dict(rounds[1].torrent.torrent)))
    for result in results.values():
        result["bytes_with_metadata"] = result["bytes_downloaded"] + metadata
    balances = {r["balance"] for k, r in results.items() if k != "light_filler"}
    return {
        "round_layout": "both rounds are checkpoint rounds (whole balances file)",
        "new_account_every": args.new_account_every,
        "metadata_bytes": metadata,
        "accounts": args.accounts + len(payers),
        "payments": args.payments,
        "snapshot_balances_bytes": snapshot_bytes,
        "round_transactions_bytes": rounds[1].transactions_bytes,
        "build_seconds": round(build_s, 1),
        "held_round_1_full_sync": held,
        "results": results,
        "modes_agree_on_payer_balance": len(balances) == 1,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_sync")
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--payments", type=int, default=1000)
    parser.add_argument("--new-account-every", type=int, default=10, help="0: no new account")
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        default=0,
        help="lay rounds out as servers do since stage B (0: two rounds holding balances)",
    )
    parser.add_argument("--delta-rounds", type=int, default=59, help="rounds after the checkpoint")
    parser.add_argument(
        "--cap-bytes-per-s", type=int, default=0, help="cap the seeding session's upload (0: none)"
    )
    parser.add_argument("--seed-profile", choices=("server", "default"), default="server")
    parser.add_argument(
        "--no-changes-range",
        action="store_true",
        help="the stand-in API does not answer GET /changes: one torrent per round's changes",
    )
    parser.add_argument("--dir", type=Path, help="work here (default: a temporary directory)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.cap_bytes_per_s and not args.checkpoint_every:
        parser.error("--cap-bytes-per-s needs --checkpoint-every (the stage B layout)")
    run = sync_stageb.main_async if args.checkpoint_every else main_async
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-sync-", dir=args.dir) as tmp:
        report = asyncio.run(run(args, Path(tmp)))
    report["loadavg_before"], report["loadavg_after"] = load_before, os.getloadavg()
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0 if report["modes_agree_on_payer_balance"] else 1


if __name__ == "__main__":
    sys.exit(main())
