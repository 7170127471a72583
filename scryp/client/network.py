"""Where a client finds the network: the quorum, DHT bootstrap nodes, server addresses
(protocol §10.1).

Everything comes from ``--testnet DIR`` (``DIR/testnet.json`` and its ``.keys``) or from
``--keys``, ``--bootstrap`` and ``--server``. Only the quorum keys are trusted; addresses are
just places to ask.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scryp.errors import ConfigError
from scryp.hostport import is_loopback, split_hostport
from scryp.keyfile import read_quorum

TESTNET_JSON = "testnet.json"
TESTNET_JSON_BYTES_MAX = 1 << 20


@dataclass(frozen=True, slots=True)
class Network:
    quorum: tuple[bytes, ...]
    bootstrap: tuple[tuple[str, int], ...] = ()
    apis: tuple[str, ...] = ()  # "http://host:port" of servers' HTTP APIs
    torrent_peers: tuple[tuple[str, int], ...] = ()  # servers' BitTorrent ports, dialled too
    network_id: bytes | None = None  # when known; else the certified records name it
    faucet_seed_file: Path | None = None
    public_dht: bool = False


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


def api_allowed(url: str, public_dht: bool) -> bool:
    """Only loopback addresses unless the user opted out of the loopback rule (DESIGN §6)."""
    host, _ = split_hostport(url.removeprefix("http://"))
    return public_dht or is_loopback(host)


def load_testnet(directory: Path) -> Network:
    path = directory / TESTNET_JSON
    try:
        raw = path.read_bytes()[:TESTNET_JSON_BYTES_MAX]
        description: Any = json.loads(raw)
    except (OSError, ValueError) as error:
        raise ConfigError(f"cannot read {path}: {error}") from None
    if not isinstance(description, dict):
        raise ConfigError(f"{path} is not a JSON object")
    quorum_file = Path(description.get("quorum_file") or directory / ".keys")
    quorum = tuple(read_quorum(quorum_file))
    bootstrap = description.get("bootstrap")
    servers = description.get("servers") or []
    network_id = description.get("network_id")
    faucet = description.get("faucet_seed_file")
    try:
        return Network(
            quorum=quorum,
            bootstrap=(parse_hostport(bootstrap),) if bootstrap else (),
            apis=tuple(api_url(str(s["api"])) for s in servers),
            torrent_peers=tuple(("127.0.0.1", int(s["torrent_port"])) for s in servers),
            network_id=bytes.fromhex(network_id) if network_id else None,
            faucet_seed_file=Path(faucet) if faucet else None,
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ConfigError(f"{path}: unexpected content ({error})") from None
