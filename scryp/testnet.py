"""The local test network on 127.0.0.1, in one command (protocol §9.1).

    python -m scryp.testnet [--dir DIR] [--servers 3|5|7] [--seeders M] [--archives A]
                            [--round-interval S] [--demo-payments N] [--duration-s S]
    python -m scryp.testnet kill|restart|pause|resume N [--dir DIR]   # fail server N
    python -m scryp.testnet list [--dir DIR]                          # each server's process

Creates keys, ``.keys`` and a genesis in DIR on first run (the whole supply goes to a faucet
whose seed is ``DIR/keys/faucet.seed``), starts a private DHT bootstrap node, the servers and
the seeders as separate processes on free ports, writes ``DIR/testnet.json``, and shows the
network's state live. Logs go to ``DIR/logs/<name>.log``. Ctrl-C stops everything cleanly; a
second run with the same DIR resumes the same network from its disks.

Failing a server while it runs: in the live view, press k (kill, SIGKILL), r (restart), p
(pause, SIGSTOP) or c (resume, SIGCONT), then the server's number; or, from another terminal,
``python -m scryp.testnet kill 1 --dir DIR`` (``scryp.testnet_control``: the running command
supervises the servers and takes these requests on a loopback endpoint named in
``DIR/control.json``). The view is drawn with rich.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import os
import sys
import termios
import time
import tty
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from scryp import netmode
from scryp.core.tx import Transaction
from scryp.crypto import KeyPair
from scryp.keyfile import QUORUM_SIZES
from scryp.localnet import LocalNetwork
from scryp.logformat import add_log_arguments, setup_logging
from scryp.stopping import stop_event
from scryp.testnet_control import ACTIONS, ControlServer, NotRunning, Refused, apply, request

DEMO_AMOUNT_MAX = 1_000
STATUS_PERIOD_S = 1.0
STATUS_TIMEOUT_S = 0.8
PLAIN_WIDTH = 140  # columns of the view when it goes to a file or a pipe
AGREEMENT = "agreement: every server reports the same certified state"
KEYS_HELP = "keys: k N kill · r N restart · p N pause · c N resume · q quit"


@dataclass(slots=True)
class KeyCommands:
    """The live view's keys, one at a time: an action letter, then a server's digit."""

    LETTERS = {"k": "kill", "r": "restart", "p": "pause", "c": "resume"}  # noqa: RUF012
    pending: str | None = None

    def feed(self, char: str) -> tuple[str, int] | None:
        """``("quit", -1)``, ``(action, server)`` once both keys are in, else None."""
        if char in ("q", "\x03"):
            return ("quit", -1)
        if char in self.LETTERS:
            self.pending = self.LETTERS[char]
            return None
        if char.isdigit() and self.pending is not None:
            action, self.pending = self.pending, None
            return (action, int(char))
        self.pending = None
        return None


def rows(statuses: list[dict[str, Any] | None], states: list[str]) -> list[tuple[str, ...]]:
    """One row of text cells per server: what its process is and what its API reports."""
    table: list[tuple[str, ...]] = []
    for index, (status, process) in enumerate(zip(statuses, states, strict=True)):
        if status is None:
            table.append((str(index), process, "-", "-", "-", "-", "-", "-", "-"))
            continue
        certified = status["certified_round"]
        table.append(
            (
                str(index),
                process,
                str(status["role"]),
                str(status["term"]),
                str(status["round"]),
                "-" if certified is None else str(certified),
                (status.get("certified_state_root") or "-")[:16],
                status.get("infohash") or "-",
                f"{len(status['peers_out'])}/{len(statuses) - 1}",
            )
        )
    return table


def agreement(statuses: list[dict[str, Any] | None]) -> bool:
    """Every server answers and reports one certified round with one state."""
    if not all(s and s["certified_round"] is not None for s in statuses):
        return False
    found = {(s["certified_round"], s["certified_state_root"]) for s in statuses if s}
    return len(found) == 1


def render(
    table_rows: list[tuple[str, ...]], agreed: bool, up_s: float, footer: list[str]
) -> RenderableType:
    table = Table(title=f"scryp testnet, up {up_s:.0f} s   (Ctrl-C stops it)", title_justify="left")
    for name in ("server", "process", "role", "term", "round", "certified", "state"):
        table.add_column(
            name, justify="right" if name in ("term", "round", "certified") else "left"
        )
    table.add_column("infohash (v1, for python -m scryp.client INFOHASH)", no_wrap=True)
    table.add_column("peers")
    for row in table_rows:
        style = {"down": "red", "paused": "yellow"}.get(row[1])
        table.add_row(*row, style=style)
    lines = [Text(AGREEMENT, style="green")] if agreed else []
    return Group(table, *lines, *(Text(line) for line in footer))


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


@contextlib.contextmanager
def keys_read(on_char: Callable[[str], None]) -> Iterator[bool]:
    """Single key presses from a terminal on stdin, each passed to ``on_char``; yields whether
    stdin is a terminal (if not, there are no keys). The terminal's mode is restored."""
    fd = sys.stdin.fileno() if sys.stdin is not None else -1
    if fd < 0 or not os.isatty(fd):
        yield False
        return
    saved = termios.tcgetattr(fd)
    loop = asyncio.get_running_loop()
    tty.setcbreak(fd)

    def readable() -> None:
        for char in os.read(fd, 64).decode(errors="ignore"):
            on_char(char)

    loop.add_reader(fd, readable)
    try:
        yield True
    finally:
        loop.remove_reader(fd)
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


class LiveView:
    """The supervisor's screen: the table, redrawn every second, and the keys' results."""

    def __init__(self, net: LocalNetwork, stop: asyncio.Event, tasks: asyncio.TaskGroup) -> None:
        self.net = net
        self.stop = stop
        self.tasks = tasks
        self.keys = KeyCommands()
        self.message = ""
        self.started_s = time.monotonic()

    def on_char(self, char: str) -> None:
        command = self.keys.feed(char)
        if command is None:
            self.message = f"{self.keys.pending} which server?" if self.keys.pending else ""
        elif command[0] == "quit":
            self.stop.set()
        else:
            self.tasks.create_task(self._act(*command))

    async def _act(self, action: str, index: int) -> None:
        self.message = f"{action} server {index}..."
        try:
            done = await apply(self.net, index, action)
            self.message = f"{action} server {index}: {done['state']}"
        except Refused as refused:
            self.message = f"{action} server {index} refused: {refused}"

    async def frame(self, keys: bool) -> tuple[list[tuple[str, ...]], RenderableType]:
        # Short: a paused server never answers, and the view must not wait for it.
        statuses = await self.net.statuses(timeout_s=STATUS_TIMEOUT_S)
        states = [self.net.state(i) for i in range(self.net.servers)]
        table_rows = rows(statuses, states)
        footer = [KEYS_HELP, self.message] if keys else []
        up_s = time.monotonic() - self.started_s
        return table_rows, render(table_rows, agreement(statuses), up_s, footer)


async def run(args: argparse.Namespace) -> None:
    net = LocalNetwork(
        args.dir,
        servers=args.servers,
        seeders=args.seeders,
        round_interval_s=args.round_interval,
        archives=args.archives,
        log_format=args.log_format,
        bootstrap=args.netmode.bootstrap[0] if args.netmode.bootstrap else None,
    )
    control = ControlServer(net)
    stop = stop_event()
    console = Console() if sys.stdout.isatty() else Console(width=PLAIN_WIDTH)
    try:
        await net.start()
        await control.start()
        console.print(
            f"network {net.genesis.network_id.hex() if net.genesis else '?'}; "
            f"description in {args.dir / 'testnet.json'}, logs in {args.dir / 'logs'}/; "
            f"fail a server: python -m scryp.testnet kill|restart|pause|resume N --dir {args.dir}",
            soft_wrap=True,
        )
        async with asyncio.TaskGroup() as tasks:
            demo = (
                tasks.create_task(demo_payments(net, args.demo_payments, args.round_interval))
                if args.demo_payments
                else None
            )
            await show(LiveView(net, stop, tasks), console, args.duration_s)
            if demo is not None:
                demo.cancel()
    finally:
        print("stopping the network...", flush=True)
        await control.stop()
        await net.stop()
        print("stopped.")


async def show(view: LiveView, console: Console, duration_s: float | None) -> None:
    """Redraw in place on a terminal; elsewhere print the table each time a row changes."""
    with keys_read(view.on_char) as keys:
        previous: list[tuple[str, ...]] = []
        live = Live(console=console, auto_refresh=False) if console.is_terminal else None
        with live if live is not None else contextlib.nullcontext():
            while not view.stop.is_set():
                if duration_s is not None and time.monotonic() - view.started_s > duration_s:
                    break
                table_rows, drawing = await view.frame(keys)
                if live is not None:
                    live.update(drawing, refresh=True)
                elif table_rows != previous:
                    console.print(drawing)
                previous = table_rows
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(view.stop.wait(), STATUS_PERIOD_S)


def control_main(argv: list[str]) -> int:
    """``python -m scryp.testnet ACTION N --dir DIR`` (or ``list``): ask the running one."""
    parser = argparse.ArgumentParser(
        prog=f"python -m scryp.testnet {argv[0]}",
        description="Ask the test network running in DIR to "
        + ("list its servers" if argv[0] == "list" else f"{argv[0]} a server"),
    )
    if argv[0] != "list":
        parser.add_argument("server", type=int, help="the server's number (0-based)")
    parser.add_argument("--dir", type=Path, default=Path("testnet"))
    parser.add_argument("--json", action="store_true", help="print the answer as JSON")
    args = parser.parse_args(argv[1:])
    try:
        answer = asyncio.run(request(args.dir, argv[0], getattr(args, "server", None)))
    except (NotRunning, Refused) as problem:
        print(f"scryp testnet: {problem}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(answer))
    else:
        for server in answer.get("servers", [answer]):
            pid = f", pid {server['pid']}" if server["pid"] else ""
            print(f"server {server['server']}: {server['state']}{pid}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in (*ACTIONS, "list"):
        return control_main(argv)
    parser = argparse.ArgumentParser(
        prog="python -m scryp.testnet",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dir", type=Path, default=Path("testnet"))
    parser.add_argument("--servers", type=int, default=3, choices=QUORUM_SIZES)
    parser.add_argument("--seeders", type=int, default=1)
    parser.add_argument(
        "--archives", type=int, default=1, help="archival seeders: history from the genesis"
    )
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
    netmode.add_arguments(parser)
    args = parser.parse_args(argv)
    args.netmode = netmode.parse_or_exit(parser, args)
    if args.netmode.mode is not netmode.Mode.LOOPBACK:
        netmode.fail(
            parser.prog,
            f"the local test network runs on 127.0.0.1 only, not --network {args.netmode.mode} "
            "(README, 'Running across machines')",
        )
    setup_logging(args, logging.INFO)
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
