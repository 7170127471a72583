"""``python -m scryp.server [torrentPort [serverPort]]``: run one Scryp server.

The torrent port (default 6881) carries BitTorrent over TCP and the DHT over UDP; the server
port (default 6882) carries the HTTP API and the links to the other servers. Everything
listens on 127.0.0.1 and uses only the DHT bootstrap nodes given, unless --public-dht.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from dataclasses import replace
from pathlib import Path

from aiohttp import web

from scryp import logthrottle
from scryp.core.genesis import Genesis
from scryp.crypto import KeyPair
from scryp.errors import ConfigError, MalformedInput, StorageCorrupt
from scryp.hostport import hostport_arg
from scryp.keyfile import read_quorum, read_seed
from scryp.logformat import add_log_arguments, setup_logging
from scryp.server.api import LINGERING_S, make_app
from scryp.server.config import ServerConfig, ServerLimits
from scryp.server.node import ServerNode

log = logging.getLogger("scryp.server")


def peer(text: str) -> tuple[int, str]:
    index, sep, address = text.partition("=")
    if not sep or not index.isdigit():
        raise argparse.ArgumentTypeError(f"expected INDEX=HOST:PORT, got {text!r}")
    hostport_arg(address)
    return int(index), address


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m scryp.server", description=__doc__)
    parser.add_argument("torrent_port", type=int, nargs="?", default=6881)
    parser.add_argument("server_port", type=int, nargs="?", default=6882)
    parser.add_argument("--key", type=Path, default=Path("keys/server.seed"))
    parser.add_argument("--keys", type=Path, default=Path(".keys"), help="the quorum file")
    parser.add_argument("--genesis", type=Path, default=Path("genesis"))
    parser.add_argument("--data", type=Path, default=Path("data"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--bootstrap",
        type=hostport_arg,
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="a DHT node to join (repeatable)",
    )
    parser.add_argument(
        "--peer",
        type=peer,
        action="append",
        default=[],
        metavar="INDEX=HOST:PORT",
        help="a server's address (repeatable)",
    )
    parser.add_argument("--round-interval", type=float, default=10.0, metavar="S")
    parser.add_argument("--rounds-kept", type=int, default=8)
    parser.add_argument(
        "--compaction-lag",
        type=float,
        default=10.0,
        metavar="S",
        help="keep Raft entries this long for followers that fall behind",
    )
    parser.add_argument(
        "--public-dht",
        action="store_true",
        help="join the public Mainline DHT (never used in tests)",
    )
    parser.add_argument(
        "--client-signatures-per-s",
        type=float,
        default=ServerLimits().signatures_per_s,
        metavar="N",
        help="signature checks one client address may cause each second (protocol §9.9)",
    )
    parser.add_argument("--log-level", default=os.environ.get("SCRYP_LOG_LEVEL", "INFO"))
    add_log_arguments(parser)
    return parser


def parse_args(argv: list[str] | None) -> ServerConfig:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.client_signatures_per_s <= 0:
        parser.error("--client-signatures-per-s must be positive")
    setup_logging(args, args.log_level.upper())
    logthrottle.install()  # clients' malformed HTTP: one line per client a minute
    return ServerConfig(
        key_file=args.key,
        quorum_file=args.keys,
        genesis_file=args.genesis,
        data_dir=args.data,
        host=args.host,
        torrent_port=args.torrent_port,
        server_port=args.server_port,
        bootstrap=tuple(args.bootstrap),
        public_dht=args.public_dht,
        peers=dict(args.peer),
        round_interval_s=args.round_interval,
        rounds_kept=args.rounds_kept,
        compaction_lag_s=args.compaction_lag,
        limits=replace(
            ServerLimits(),
            signatures_per_s=args.client_signatures_per_s,
            signature_burst=max(ServerLimits().signature_burst, int(args.client_signatures_per_s)),
        ),
    )


async def serve(config: ServerConfig) -> None:
    key = KeyPair.from_seed(read_seed(config.key_file))
    quorum = read_quorum(config.quorum_file)
    try:
        genesis = Genesis.decode(config.genesis_file.read_bytes())
    except (OSError, MalformedInput) as problem:
        raise ConfigError(f"genesis {config.genesis_file}: {problem}") from None
    if key.public not in quorum:
        raise ConfigError(f"{config.key_file} is not one of the servers in {config.quorum_file}")
    node = ServerNode(config, key, quorum, genesis)
    runner = web.AppRunner(make_app(node), access_log=None, lingering_time=LINGERING_S)
    await runner.setup()
    try:
        await web.TCPSite(runner, config.host, config.server_port).start()
        log.info(
            "server %d of %d listening: api http://%s:%d, torrents %d",
            node.index,
            len(quorum),
            config.host,
            config.server_port,
            config.torrent_port,
        )
        await node.run()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)

    async def run() -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await serve(config)
        log.info("stopped")

    try:
        asyncio.run(run())
    except ConfigError as problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    except Exception as problem:
        fault = _storage_fault(problem)
        if fault is None:
            raise  # our bug: fail loudly, with the traceback
        print(
            f"error: stopping on a storage fault: {fault}. Nothing was signed for the round "
            "being written. Fix the disk (free space, replace the file), then restart: the "
            "server resumes from its write-ahead log, or, with its data directory removed, "
            "catches up through the swarm (protocol §9.10).",
            file=sys.stderr,
        )
        return 1
    return 0


def _storage_fault(problem: BaseException) -> BaseException | None:
    """The disk error (full, unwritable, a corrupt or missing file) behind ``problem``, if
    that is what stopped the server; found inside the TaskGroup's exception groups."""
    if isinstance(problem, BaseExceptionGroup):
        for inner in problem.exceptions:
            found = _storage_fault(inner)
            if found is not None:
                return found
        return None
    if isinstance(problem, OSError | StorageCorrupt):
        return problem
    return None


if __name__ == "__main__":
    sys.exit(main())
