"""The network a client talks to, described in one place (protocol §10.1): from
``--testnet DIR``, from flags, or both; only loopback addresses (protocol §8.8)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from scryp.client.network import describe, load_testnet
from scryp.crypto import KeyPair
from scryp.errors import ConfigError
from scryp.keyfile import format_quorum

KEYS = [KeyPair.from_seed(hashlib.sha256(b"net %d" % i).digest()).public for i in range(5)]
NETWORK_ID = hashlib.sha256(b"network").digest()


def write_testnet(root: Path, **changes: object) -> Path:
    """A ``testnet.json`` like the one ``scryp.localnet`` writes, with its ``.keys``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / ".keys").write_text(format_quorum(KEYS[:3]))
    description: dict[str, object] = {
        "network_id": NETWORK_ID.hex(),
        "bootstrap": "127.0.0.1:7000",
        "faucet_seed_file": str(root / "faucet.seed"),
        "servers": [
            {"index": i, "api": f"127.0.0.1:{7100 + i}", "torrent_port": 7200 + i} for i in range(3)
        ],
        **changes,
    }
    (root / "testnet.json").write_text(json.dumps(description))
    return root


def test_a_testnet_directory_describes_the_whole_network(tmp_path: Path) -> None:
    network = load_testnet(write_testnet(tmp_path))
    assert network == describe(testnet=tmp_path)
    assert network.quorum == tuple(KEYS[:3])
    assert network.bootstrap == (("127.0.0.1", 7000),)
    assert network.apis == tuple(f"http://127.0.0.1:{7100 + i}" for i in range(3))
    assert network.torrent_peers == tuple(("127.0.0.1", 7200 + i) for i in range(3))
    assert network.network_id == NETWORK_ID
    assert network.faucet_seed_file == tmp_path / "faucet.seed"


def test_flags_replace_the_quorum_and_bootstrap_and_add_servers_first(tmp_path: Path) -> None:
    wider = tmp_path / "wider.keys"
    wider.write_text(format_quorum(KEYS))
    network = describe(
        testnet=write_testnet(tmp_path / "net"),
        keys=wider,
        bootstrap=["127.0.0.2:9000"],
        servers=["http://127.0.0.3:9100/"],
    )
    assert network.quorum == tuple(KEYS)
    assert network.bootstrap == (("127.0.0.2", 9000),)
    assert network.apis[0] == "http://127.0.0.3:9100" and len(network.apis) == 4
    # Flags alone: no servers' torrent ports or network id, which only testnet.json knows.
    alone = describe(keys=wider, bootstrap=["127.0.0.1:9000"])
    assert (alone.apis, alone.torrent_peers, alone.network_id) == ((), (), None)


def test_what_is_missing_or_malformed_is_a_configuration_error(tmp_path: Path) -> None:
    keys = tmp_path / "q.keys"
    keys.write_text(format_quorum(KEYS[:3]))
    with pytest.raises(ConfigError, match="--keys FILE"):
        describe(bootstrap=["127.0.0.1:9000"])
    with pytest.raises(ConfigError, match="--bootstrap HOST:PORT"):
        describe(keys=keys)
    with pytest.raises(ConfigError, match="HOST:PORT"):
        describe(keys=keys, bootstrap=["127.0.0.1"])
    with pytest.raises(ConfigError, match="--server"):
        describe(keys=keys, bootstrap=["127.0.0.1:9000"], servers=["http://nowhere"])
    with pytest.raises(ConfigError, match="cannot read"):
        describe(testnet=tmp_path / "absent")
    with pytest.raises(ConfigError, match="unexpected content"):
        describe(testnet=write_testnet(tmp_path / "bad", servers=[{"api": "127.0.0.1:1"}]))


def test_every_address_must_be_on_this_machine(tmp_path: Path) -> None:
    """protocol §8.8, §10.1: refused before any traffic, as a usage error (exit status 2)."""
    keys = tmp_path / "q.keys"
    keys.write_text(format_quorum(KEYS[:3]))
    loopback = ["127.0.0.1:9000"]
    for bootstrap, servers in (
        (["192.0.2.1:6881"], []),
        (["localhost:6881"], []),  # a name could resolve anywhere
        (loopback, ["http://192.0.2.1:6882"]),
        (loopback, ["http://example.org:80"]),
    ):
        with pytest.raises(ConfigError, match="not a loopback address"):
            describe(keys=keys, bootstrap=bootstrap, servers=servers)
    with pytest.raises(ConfigError, match="not a loopback address"):
        describe(testnet=write_testnet(tmp_path / "net", bootstrap="10.0.0.1:7000"))
    assert describe(keys=keys, bootstrap=["127.1.1.1:9000"]).bootstrap == (("127.1.1.1", 9000),)
