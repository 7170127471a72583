"""Options every subcommand shares, and opening a client session from them (protocol §10.1)."""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

from scryp import netmode
from scryp.client.network import Network, describe
from scryp.client.sync import Client
from scryp.crypto import KeyPair
from scryp.errors import ConfigError, TimedOut
from scryp.keyfile import read_seed
from scryp.swarm import Swarm, SwarmConfig

# The first DHT bootstrap can stall on nodes that left (earlier clients); the servers'
# own DHT nodes are added directly, so a late bootstrap is waited for only this long.
DHT_READY_TIMEOUT_S = 3.0
KEY_FILE = "key.seed"


def default_data_dir() -> Path:
    return Path(os.environ.get("SCRYP_DATA") or Path.home() / ".scryp")


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--testnet", type=Path, metavar="DIR", help="a local test network's DIR")
    parser.add_argument("--keys", type=Path, metavar="FILE", help="the quorum's .keys file")
    netmode.add_arguments(parser)
    parser.add_argument(
        "--server", action="append", default=[], metavar="URL", help="a server's HTTP API"
    )
    parser.add_argument(
        "--archive",
        action="append",
        default=[],
        metavar="URL",
        help="an archive's HTTP API: history from the genesis (untrusted: checked)",
    )
    parser.add_argument(
        "--data", type=Path, default=None, metavar="DIR", help="client data (~/.scryp)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def network_from(args: argparse.Namespace) -> Network:
    """The network the common options describe (``network.describe``, protocol §10.1); a
    contradiction in the network mode's flags is a ConfigError (exit status 2)."""
    mode = netmode.from_args(args, needs_bootstrap=args.testnet is None, data_dir=data_dir(args))
    return describe(
        testnet=args.testnet,
        keys=args.keys,
        bootstrap=args.bootstrap,
        servers=args.server,
        archives=args.archive,
        mode=mode.mode,
        cached=netmode.has_dht_state(data_dir(args)),
    )


def data_dir(args: argparse.Namespace) -> Path:
    return args.data if args.data is not None else default_data_dir()


def load_key(args: argparse.Namespace) -> KeyPair:
    """``--key FILE``, else the data directory's ``key.seed`` (``new-key``)."""
    path = args.key if getattr(args, "key", None) else data_dir(args) / KEY_FILE
    if not path.is_file():
        raise ConfigError(f"no key at {path}: run `python -m scryp.client new-key` or give --key")
    return KeyPair.from_seed(read_seed(path))


@contextlib.asynccontextmanager
async def open_client(network: Network, data: Path) -> AsyncIterator[Client]:
    """A read-only session in the network's mode, with the DHT node cache of ``data``."""
    config = SwarmConfig(
        listen_host=netmode.default_listen(network.mode),
        bootstrap=network.bootstrap,
        network=network.mode,
        dht_read_only=True,
        dht_state_file=data / netmode.DHT_STATE_FILE,
    )
    async with Swarm.start(config) as swarm:
        for host, port in network.torrent_peers:  # servers run DHT nodes on these ports
            swarm.add_dht_node(host, port)
        with contextlib.suppress(TimedOut):
            await swarm.wait_dht_ready(DHT_READY_TIMEOUT_S)
        yield Client(network, data, swarm)
