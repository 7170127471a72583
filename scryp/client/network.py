"""Where a client finds the network: the quorum, DHT bootstrap nodes, server addresses
(protocol §10.1).

``describe`` is the one place a ``Network`` is built, from ``--testnet DIR`` (``DIR/testnet.json``,
protocol §9.1, and its quorum file) and/or the flags ``--keys``, ``--bootstrap`` and
``--server``, in the network mode of ``--network`` (``scryp.netmode``); every command and the
wallet page go through it. Only the quorum keys are trusted; addresses are just places to ask,
and each must be one the mode allows (in loopback mode, the default, 127.0.0.0/8; protocol
§8.8).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scryp.core.pointer import PointerRecord
from scryp.errors import ConfigError
from scryp.hostport import split_hostport
from scryp.keyfile import read_quorum
from scryp.netmode import Mode, check_address, host_allowed

TESTNET_JSON = "testnet.json"
TESTNET_JSON_BYTES_MAX = 1 << 20
QUORUM_FILE = ".keys"  # next to testnet.json when the file names none


@dataclass(frozen=True, slots=True)
class Network:
    quorum: tuple[bytes, ...]
    bootstrap: tuple[tuple[str, int], ...] = ()
    apis: tuple[str, ...] = ()  # "http://host:port" of servers' HTTP APIs
    torrent_peers: tuple[tuple[str, int], ...] = ()  # servers' BitTorrent ports, dialled too
    network_id: bytes | None = None  # when known; else the certified records name it
    faucet_seed_file: Path | None = None
    mode: Mode = Mode.LOOPBACK
    archives: tuple[str, ...] = ()  # archives' HTTP APIs (protocol §10.8), untrusted
    archive_peers: tuple[tuple[str, int], ...] = ()  # their BitTorrent ports, dialled too


@dataclass(frozen=True, slots=True)
class NetworkFile:
    """What ``DIR/testnet.json`` says (written by ``scryp.localnet``), not yet merged with flags."""

    quorum_file: Path
    bootstrap: tuple[tuple[str, int], ...]
    apis: tuple[str, ...]
    torrent_peers: tuple[tuple[str, int], ...]
    network_id: bytes | None
    faucet_seed_file: Path | None
    archives: tuple[str, ...] = ()
    archive_peers: tuple[tuple[str, int], ...] = ()


def parse_hostport(text: str) -> tuple[str, int]:
    """``split_hostport`` for what the user gave: a malformed address is a ConfigError."""
    try:
        return split_hostport(text)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def api_url(text: str) -> str:
    """``http://host:port`` from a URL or a bare ``host:port`` (a pointer's ``api`` field);
    ValueError if it is neither: the caller knows whether a user or a server wrote it."""
    host, port = split_hostport(text.removeprefix("http://").rstrip("/"))
    return f"http://{host}:{port}"


def api_allowed(url: str, mode: Mode) -> bool:
    """Whether the network mode lets us ask the API at ``url`` (protocol §8.8)."""
    host, _ = split_hostport(url.removeprefix("http://"))
    return host_allowed(mode, host)


def pointer_apis(records: Iterable[PointerRecord], mode: Mode) -> list[str]:
    """The API addresses that verified pointers name and the network mode lets us ask, in
    order, once each; a pointer naming no usable address is its server's fault: skipped."""
    apis = []
    for record in records:
        try:
            url = api_url(record.api) if record.api else ""
        except ValueError:
            continue
        if url and api_allowed(url, mode):
            apis.append(url)
    return list(dict.fromkeys(apis))


def read_testnet(directory: Path) -> NetworkFile:
    """``directory/testnet.json``; ConfigError if it cannot be read or is not what
    ``scryp.localnet`` writes."""
    path = directory / TESTNET_JSON
    try:
        raw = path.read_bytes()[:TESTNET_JSON_BYTES_MAX]
        description: Any = json.loads(raw)
    except (OSError, ValueError) as error:
        raise ConfigError(f"cannot read {path}: {error}") from None
    if not isinstance(description, dict):
        raise ConfigError(f"{path} is not a JSON object")
    bootstrap = description.get("bootstrap")
    servers = description.get("servers") or []
    network_id = description.get("network_id")
    faucet = description.get("faucet_seed_file")
    archives = description.get("archives") or []
    try:
        return NetworkFile(
            quorum_file=Path(description.get("quorum_file") or directory / QUORUM_FILE),
            bootstrap=(parse_hostport(bootstrap),) if bootstrap else (),
            apis=tuple(api_url(str(s["api"])) for s in servers),
            torrent_peers=tuple(("127.0.0.1", int(s["torrent_port"])) for s in servers),
            network_id=bytes.fromhex(network_id) if network_id else None,
            faucet_seed_file=Path(faucet) if faucet else None,
            archives=tuple(api_url(str(a["api"])) for a in archives),
            archive_peers=tuple(("127.0.0.1", int(a["torrent_port"])) for a in archives),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ConfigError(f"{path}: unexpected content ({error})") from None


def describe(
    *,
    testnet: Path | None = None,
    keys: Path | None = None,
    bootstrap: Sequence[str] = (),
    servers: Sequence[str] = (),
    archives: Sequence[str] = (),
    mode: Mode = Mode.LOOPBACK,
    cached: bool = False,
) -> Network:
    """The network a client talks to: ``--keys`` and ``--bootstrap`` replace what
    ``testnet.json`` says, ``--server`` URLs are asked before its servers. ConfigError when
    the quorum or a DHT node to join is missing, or an address is malformed or not one the
    mode allows (protocol §8.8). ``cached``: a DHT node cache can stand in for ``--bootstrap``
    (as can the routers of public mode)."""
    base = read_testnet(testnet) if testnet is not None else None
    if keys is not None:
        quorum = tuple(read_quorum(keys))
    else:
        quorum = tuple(read_quorum(base.quorum_file)) if base else ()
    if not quorum:
        raise ConfigError("give --testnet DIR or --keys FILE: the servers' public keys")
    nodes = tuple(parse_hostport(b) for b in bootstrap) or (base.bootstrap if base else ())
    if not nodes and not cached and mode is not Mode.PUBLIC:
        raise ConfigError("give --testnet DIR or --bootstrap HOST:PORT (a DHT node to join)")
    try:
        apis = tuple(api_url(s) for s in servers) + (base.apis if base else ())
        archive_apis = tuple(api_url(a) for a in archives) + (base.archives if base else ())
    except ValueError as error:
        raise ConfigError(f"--server/--archive: {error}") from None
    network = Network(
        quorum=quorum,
        bootstrap=nodes,
        apis=apis,
        torrent_peers=base.torrent_peers if base else (),
        network_id=base.network_id if base else None,
        faucet_seed_file=base.faucet_seed_file if base else None,
        archives=archive_apis,
        archive_peers=base.archive_peers if base else (),
        mode=mode,
    )
    check_addresses(network)
    return network


def check_addresses(network: Network) -> None:
    """Refuse, before any traffic, an address the mode does not allow (protocol §8.8, §10.1)."""
    for host, port in network.bootstrap:
        check_address(network.mode, host, port, "--bootstrap")
    for host, port in network.torrent_peers + network.archive_peers:
        check_address(network.mode, host, port, "peer")
    for url in network.apis + network.archives:
        host, port = split_hostport(url.removeprefix("http://"))
        check_address(network.mode, host, port, "--server/--archive")


def load_testnet(directory: Path) -> Network:
    """The network ``directory/testnet.json`` describes, with no flags."""
    return describe(testnet=directory)
