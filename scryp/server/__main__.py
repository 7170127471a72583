"""``python -m scryp.server [torrentPort [serverPort]]``: run one Scryp server.

The torrent port (default 6881) carries BitTorrent over TCP and the DHT over UDP; the server
port (default 6882) carries the HTTP API and the links to the other servers. In loopback mode
(the default) everything listens on 127.0.0.1 and uses only the DHT bootstrap nodes given;
--network private binds --listen ADDR, tells peers and clients --advertise HOST, and joins the
DHT through the --bootstrap nodes given (README, "Running across machines"; protocol §8.8).

First start in a fresh checkout: the server makes its key (keys/server.seed), prints its public
id and the exact commands that write the quorum (.keys) and the genesis, and exits with status
2 (protocol §9.11; README, "Running a server").
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

from scryp import logthrottle, netmode
from scryp.core.snapshot import CHECKPOINT_EVERY_DEFAULT
from scryp.errors import ConfigError, StorageCorrupt
from scryp.hostport import hostport_arg
from scryp.logformat import add_log_arguments, setup_logging
from scryp.server.api import LINGERING_S, make_app
from scryp.server.config import ServerConfig, ServerLimits
from scryp.server.firststart import load_setup
from scryp.server.node import ServerNode

log = logging.getLogger("scryp.server")


# Decision (protocol §7.4): a server started by hand seals every 10 s; the test network 1 s.
ROUND_INTERVAL_S = 10.0


class Help(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module's docstring as written, and each option's default."""


def peer(text: str) -> tuple[int, str]:
    index, sep, address = text.partition("=")
    if not sep or not index.isdigit():
        raise argparse.ArgumentTypeError(f"expected INDEX=HOST:PORT, got {text!r}")
    hostport_arg(address)
    return int(index), address


def add_retention(parser: argparse.ArgumentParser) -> None:
    """How long a server keeps rounds and log entries (protocol §9.4, §9.5)."""
    parser.add_argument("--rounds-kept", type=int, default=8, help="newest rounds kept on disk")
    parser.add_argument(
        "--rounds-kept-s",
        type=float,
        default=60.0,
        metavar="S",
        help="...and the rounds of at least this many seconds (older ones: an archive's)",
    )
    parser.add_argument(
        "--compaction-lag",
        type=float,
        default=10.0,
        metavar="S",
        help="keep Raft entries this long for followers that fall behind",
    )
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        default=CHECKPOINT_EVERY_DEFAULT,
        metavar="ROUNDS",
        help="rounds whose number is a multiple of this hold the whole balances file; "
        "the same on every server of a network (protocol §4.4.4)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m scryp.server",
        description=__doc__,
        formatter_class=Help,
    )
    parser.add_argument(
        "torrent_port", type=int, nargs="?", default=6881, help="BitTorrent (TCP) and DHT (UDP)"
    )
    parser.add_argument(
        "server_port", type=int, nargs="?", default=6882, help="HTTP API and server links"
    )
    parser.add_argument(
        "--key", type=Path, default=Path("keys/server.seed"), help="seed file; made if missing"
    )
    parser.add_argument("--keys", type=Path, default=Path(".keys"), help="the quorum file")
    parser.add_argument("--genesis", type=Path, default=Path("genesis"), help="round 0")
    parser.add_argument(
        "--data", type=Path, default=Path("data"), help="rounds and the write-ahead log"
    )
    netmode.add_arguments(parser, listen=True)
    parser.add_argument(
        "--advertise",
        default=None,
        metavar="HOST",
        help="the address peers and clients reach this server at, published in its pointer "
        "(default: the --listen address)",
    )
    parser.add_argument(
        "--peer",
        type=peer,
        action="append",
        default=[],
        metavar="INDEX=HOST:PORT",
        help="a server's address (repeatable)",
    )
    parser.add_argument(
        "--round-interval",
        type=float,
        default=ROUND_INTERVAL_S,
        metavar="S",
        help="seconds between rounds; the same on every server of a quorum (protocol §7.4)",
    )
    add_retention(parser)
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
    mode = netmode.parse_or_exit(parser, args, needs_bootstrap=True, data_dir=args.data)
    advertise = args.advertise or mode.listen
    problem = netmode.advertise_problem(mode.mode, advertise)
    for index, address in args.peer:
        try:
            netmode.check_address(mode.mode, *hostport_arg(address), f"--peer {index}=")
        except ConfigError as error:
            problem = problem or str(error)
    if problem:
        netmode.fail(parser.prog, problem)
    setup_logging(args, args.log_level.upper())
    logthrottle.install()  # clients' malformed HTTP: one line per client a minute
    return ServerConfig(
        key_file=args.key,
        quorum_file=args.keys,
        genesis_file=args.genesis,
        data_dir=args.data,
        host=mode.listen,
        advertise=advertise,
        torrent_port=args.torrent_port,
        server_port=args.server_port,
        bootstrap=mode.bootstrap,
        network=mode.mode,
        peers=dict(args.peer),
        round_interval_s=args.round_interval,
        rounds_kept=args.rounds_kept,
        rounds_kept_s=args.rounds_kept_s,
        compaction_lag_s=args.compaction_lag,
        checkpoint_every=args.checkpoint_every,
        limits=replace(
            ServerLimits(),
            signatures_per_s=args.client_signatures_per_s,
            signature_burst=max(ServerLimits().signature_burst, int(args.client_signatures_per_s)),
        ),
    )


async def serve(config: ServerConfig, argv: list[str]) -> None:
    # A fresh checkout: the key is made here, and NotSetUp says what else to run (§9.11).
    setup = load_setup(config, argv)
    key, quorum = setup.key, setup.quorum
    if setup.key_made:
        log.info("made this server's key in %s", config.key_file)
    node = ServerNode(config, key, quorum, setup.genesis)
    del setup  # the node lets the genesis go once it has booted
    runner = web.AppRunner(make_app(node), access_log=None, lingering_time=LINGERING_S)
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, config.host, config.server_port).start()
        except OSError as error:  # an address not on this machine, a port in use
            where = f"{config.host}:{config.server_port}"
            raise ConfigError(f"cannot listen on {where}: {error.strerror}") from None
        log.info(
            "server %d of %d (id %s) listening on %s: api http://%s:%d, torrents %d, rounds "
            "every %g s",
            node.index,
            len(quorum),
            key.account_id,
            config.host,
            config.advertise,
            config.server_port,
            config.torrent_port,
            config.round_interval_s,
        )
        await node.run()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    config = parse_args(argv)

    async def run() -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await serve(config, argv)
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
