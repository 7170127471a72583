"""The local test network on 127.0.0.1, in one command (protocol §9.1).

    python -m scryp.testnet [--dir DIR] [--servers 3|5|7] [--seeders M] [--round-interval S]
                            [--demo-payments N] [--duration-s S]

Creates keys, ``.keys`` and a genesis in DIR on first run (the whole supply goes to a faucet
whose seed is ``DIR/keys/faucet.seed``), starts a private DHT bootstrap node, the servers and
the seeders as separate processes on free ports, writes ``DIR/testnet.json``, and shows the
network's state live. Logs go to ``DIR/logs/<name>.log``. Ctrl-C stops everything cleanly; a
second run with the same DIR resumes the same network from its disks.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

from scryp.core.tx import Transaction
from scryp.crypto import KeyPair
from scryp.keyfile import QUORUM_SIZES
from scryp.localnet import LocalNetwork
from scryp.logformat import add_log_arguments, setup_logging

DEMO_AMOUNT_MAX = 1_000
STATUS_PERIOD_S = 1.0


def render(statuses: list[dict[str, Any] | None], started_s: float) -> str:
    lines = [f"scryp testnet, up {time.monotonic() - started_s:5.0f} s   (Ctrl-C stops it)"]
    lines.append(
        "server  role       term  round  certified  state             infohash"
        "                                  peers"
    )
    for index, status in enumerate(statuses):
        if status is None:
            lines.append(f"{index:>6}  (down)")
            continue
        state = (status.get("certified_state_hash") or "")[:16]
        lines.append(
            f"{index:>6}  {status['role']:<9} {status['term']:>5} {status['round']:>6}"
            f"  {status['certified_round'] if status['certified_round'] is not None else '-':>9}"
            f"  {state:<16}  {status.get('infohash') or '-':<40}"
            f"  {len(status['peers_out'])}/{len(statuses) - 1}"
        )
    certified = {s["certified_state_hash"] for s in statuses if s and s["certified_state_hash"]}
    rounds = {s["certified_round"] for s in statuses if s and s["certified_round"] is not None}
    if len(rounds) == 1 and len(certified) == 1:
        lines.append("agreement: every server reports the same certified state")
    return "\n".join(lines)


async def demo_payments(net: LocalNetwork, count: int, period_s: float) -> None:
    """A bounded stream of payments from the faucet to a few demo accounts."""
    assert net.faucet is not None
    payees = [KeyPair.from_seed(hashlib.sha256(b"demo-%d" % i).digest()) for i in range(5)]
    for number in range(count):
        payee = payees[number % len(payees)]
        tx = Transaction.create(
            net.faucet, payee.public, 1 + number % DEMO_AMOUNT_MAX, int(time.time() * 1000)
        )
        with contextlib.suppress(Exception):  # a server may be down: the demo goes on
            await net.post(number % net.servers, "/transact", tx.encode())
        await asyncio.sleep(period_s)  # pacing the demo, not waiting for an event


async def run(args: argparse.Namespace) -> None:
    net = LocalNetwork(
        args.dir,
        servers=args.servers,
        seeders=args.seeders,
        round_interval_s=args.round_interval,
        log_format=args.log_format,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    started = time.monotonic()
    try:
        await net.start()
        print(
            f"network {net.genesis.network_id.hex() if net.genesis else '?'}; "
            f"description in {args.dir / 'testnet.json'}, logs in {args.dir / 'logs'}/"
        )
        async with asyncio.TaskGroup() as tasks:
            demo = (
                tasks.create_task(demo_payments(net, args.demo_payments, args.round_interval))
                if args.demo_payments
                else None
            )
            interactive = sys.stdout.isatty()
            previous = ""
            while not stop.is_set():
                if args.duration_s is not None and time.monotonic() - started > args.duration_s:
                    break
                view = render(await net.statuses(), started)
                if interactive:
                    print("\x1b[2J\x1b[H" + view, flush=True)
                elif view.splitlines()[2:] != previous.splitlines()[2:]:
                    print(view, flush=True)
                previous = view
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), STATUS_PERIOD_S)
            if demo is not None:
                demo.cancel()
    finally:
        print("stopping the network...", flush=True)
        await net.stop()
        print("stopped.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scryp.testnet",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dir", type=Path, default=Path("testnet"))
    parser.add_argument("--servers", type=int, default=3, choices=QUORUM_SIZES)
    parser.add_argument("--seeders", type=int, default=1)
    parser.add_argument("--round-interval", type=float, default=1.0, metavar="S")
    parser.add_argument(
        "--demo-payments",
        type=int,
        default=0,
        metavar="N",
        help="send N payments from the faucet, one per round",
    )
    parser.add_argument(
        "--duration-s", type=float, default=None, help="stop by itself after this long"
    )
    add_log_arguments(parser)  # this process's and every child's log lines
    args = parser.parse_args(argv)
    setup_logging(args, logging.INFO)
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
