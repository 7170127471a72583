"""The downloader: fetch a round's snapshot by infohash from the swarm (protocol §8.6).

``python -m scryp.client INFOHASH [--network MODE] [--bootstrap HOST:PORT ...] [--out DIR]
[--timeout-s S]``

A run of several 40-hex infohashes pasted together means the last one (as in the original).
A progress bar (rich) goes to stderr; stdout gets one ``<sha256>  <path>`` line per file (the format
of ``sha256sum``), so scripts can check what they got. If the torrent cannot be found and
fetched within the timeout, it says so on stderr and exits with status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TextIO

from rich import filesize
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from scryp import netmode
from scryp.core.infohash import parse_infohash
from scryp.core.snapshot import PIECE_BYTES
from scryp.errors import ConfigError, MalformedInput, RemoteError, TimedOut
from scryp.files import file_sha256
from scryp.hostport import hostport_arg
from scryp.swarm import Progress as SwarmProgress
from scryp.swarm import Swarm, SwarmConfig

EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_USAGE = 2
DEFAULT_TIMEOUT_S = 120.0
TIMEOUT_MAX_S = 24 * 3600.0


class ProgressBar:
    """A rich progress bar of the wanted pieces, redrawn in place on a terminal; elsewhere
    (a file, a pipe) one line each time another tenth is done, ending with 100%."""

    def __init__(self, stream: TextIO, piece_bytes: int) -> None:
        self.piece_bytes = piece_bytes
        self.console = Console(file=stream, highlight=False)
        self.bar = Progress(
            TextColumn("fetching"),
            BarColumn(),
            TaskProgressColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
            disable=not self.console.is_terminal,
        )
        self.task: TaskID | None = None
        self.last_tenth = -1

    def __enter__(self) -> ProgressBar:
        self.bar.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.bar.stop()

    def __call__(self, progress: SwarmProgress) -> None:
        total = progress.pieces_wanted * self.piece_bytes
        done = min(progress.pieces_done * self.piece_bytes, total)
        if self.task is None:
            self.task = self.bar.add_task("fetch", total=max(total, 1))
        self.bar.update(self.task, completed=done, total=max(total, 1))
        if self.console.is_terminal:
            return
        percent = 100 * progress.pieces_done // max(progress.pieces_wanted, 1)
        if percent // 10 > self.last_tenth:
            self.last_tenth = percent // 10
            sizes = f"{filesize.decimal(done)}/{filesize.decimal(total)}"
            self.console.print(f"fetched {percent:3d}%  {sizes}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m scryp.client",
        description="Download a Scryp round snapshot by infohash from the swarm.",
    )
    parser.add_argument("infohash", help="40 hex digits; a run of several means the last one")
    netmode.add_arguments(parser)
    parser.add_argument(
        "--peer",
        type=hostport_arg,
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="a peer known to seed the torrent, dialled besides the DHT (repeatable)",
    )
    parser.add_argument("--out", type=Path, default=Path("."), help="directory to save into")
    parser.add_argument("--timeout-s", type=float, default=DEFAULT_TIMEOUT_S)
    parser.add_argument("--port", type=int, default=0, help="listen port (0: any)")
    return parser


async def download(
    infohash: bytes,
    *,
    out: Path,
    config: SwarmConfig,
    timeout_s: float,
    peers: list[tuple[str, int]],
    stderr: TextIO,
) -> list[tuple[Path, bytes]]:
    async with Swarm.start(config) as swarm:
        if config.bootstrap:
            await swarm.wait_dht_ready(timeout_s)
        with ProgressBar(stderr, PIECE_BYTES) as bar:
            result = await swarm.fetch(
                infohash, out, timeout_s=timeout_s, on_progress=bar, peers=peers
            )
        return [(path, await asyncio.to_thread(file_sha256, path)) for path in result.files]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        infohash = parse_infohash(args.infohash)
    except MalformedInput as error:
        parser.error(str(error))
    if not 0 < args.timeout_s <= TIMEOUT_MAX_S:
        parser.error(f"--timeout-s must be in (0, {TIMEOUT_MAX_S:.0f}]")
    mode = netmode.parse_or_exit(parser, args, needs_bootstrap=not args.peer)
    if not mode.bootstrap and not args.peer and mode.mode is not netmode.Mode.PUBLIC:
        netmode.fail(parser.prog, "give --bootstrap HOST:PORT (a DHT node to join) or --peer")
    try:
        for host, port in args.peer:
            netmode.check_address(mode.mode, host, port, "--peer")
    except ConfigError as error:
        netmode.fail(parser.prog, str(error))
    config = SwarmConfig(
        listen_host=mode.listen,
        listen_port=args.port,
        bootstrap=mode.bootstrap,
        network=mode.mode,
        dht_read_only=True,  # a one-shot downloader leaves no node behind (protocol §8.6)
    )
    try:
        files = asyncio.run(
            download(
                infohash,
                out=args.out,
                config=config,
                timeout_s=args.timeout_s,
                peers=args.peer,
                stderr=sys.stderr,
            )
        )
    except TimedOut as error:
        print(
            f"\nscryp: could not fetch torrent {infohash.hex()} within {args.timeout_s:g} s "
            f"({error}); is it seeded, and are the --bootstrap nodes up?",
            file=sys.stderr,
        )
        return EXIT_NOT_FOUND
    except RemoteError as error:
        print(f"\nscryp: refused torrent {infohash.hex()}: {error}", file=sys.stderr)
        return EXIT_NOT_FOUND
    for path, digest in files:
        print(f"{digest.hex()}  {path}")
    return EXIT_OK
