"""Network modes from outside (protocol §8.8, §9.6): real processes given contradictory or
unusable addresses say so in one line and exit with status 2 before any traffic; the DHT node
cache lets a restarted client read pointers with its bootstrap node gone.

Network safety: every refusal here happens before a socket is opened; the DHT is on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from scryp.core.certificate import Statement, majority
from scryp.core.pointer import encode_record
from scryp.keyfile import write_quorum
from scryp.netmode import DHT_STATE_FILE
from tests.support.synthetic import certified_record, server_keys

from .conftest import PrivateDHT

NETWORK = bytes(range(32))
ROUND = 7
PROCESS_TIMEOUT_S = 60.0
ACCOUNT = "cd" * 32


def run(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *argv],
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT_S,
        cwd=cwd,
        check=False,
    )


@pytest.fixture
def quorum_file(tmp_path: Path) -> Path:
    path = tmp_path / ".keys"
    write_quorum(path, [key.public for key in server_keys(3)])
    return path


def refusals(keys: Path, data: Path) -> list[tuple[list[str], str]]:
    client = ["--keys", str(keys), "--data", str(data)]
    return [
        # A client command given a non-loopback --bootstrap in loopback mode.
        (["scryp.client", "balance", ACCOUNT, "--bootstrap", "10.0.0.1:6881", *client], "loopback"),
        (["scryp.client", "status", "--network", "private", *client], "needs --bootstrap"),
        (["scryp.client", "ui", "--bootstrap", "10.0.0.1:6881", *client], "loopback"),
        (["scryp.client", "ab" * 20, "--bootstrap", "10.0.0.1:6881"], "loopback"),
        (["scryp.client", "ab" * 20, "--network", "private", "--peer", "0.0.0.0:1"], "unicast"),
        (["scryp.dhtnode", "--listen", "10.0.0.1"], "loopback"),
        (["scryp.dhtnode", "--network", "loopback", "--public-dht"], "contradicts"),
        (["scryp.seeder", "--keys", str(keys), "--network", "private"], "needs --bootstrap"),
        (["scryp.seeder", "--keys", str(keys), "--bootstrap", "10.0.0.1:1", "--archive"], "loop"),
        (["scryp.testnet", "--network", "private", "--bootstrap", "10.0.0.1:1"], "127.0.0.1"),
        # Servers: never advertise an unspecified address, nor loopback outside loopback mode.
        (["scryp.server", "--network", "private", "--bootstrap", "10.0.0.1:1"], "unspecified"),
        (["scryp.server", "--network", "private", "--listen", "127.0.0.1"], "needs --bootstrap"),
        (
            [
                "scryp.server",
                "--network",
                "private",
                "--listen",
                "127.0.0.1",
                "--bootstrap",
                "127.0.0.1:1",
            ],
            "loopback address",
        ),
        (["scryp.server", "--listen", "0.0.0.0"], "loopback"),
        (["scryp.server", "--host", "127.0.0.1", "--advertise", "0.0.0.0"], "unspecified"),
        (["scryp.server", "--bootstrap", "10.0.0.1:6881"], "loopback"),
        (["scryp.server", "--peer", "1=10.0.0.2:6882"], "loopback"),
    ]


def test_contradictions_exit_2_with_one_line(tmp_path: Path, quorum_file: Path) -> None:
    """Each process stops before it opens a socket: one line on stderr, status 2, and no
    traceback (a client command used to end in one)."""
    for argv, says in refusals(quorum_file, tmp_path / "client"):
        done = run(*argv, cwd=tmp_path)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2, (argv, done.stderr)
        assert len(lines) == 1 and says in lines[0], (argv, lines)
        assert "Traceback" not in done.stderr
    assert not (tmp_path / "data").exists()  # no server got as far as its data directory


def test_a_server_given_an_address_not_on_this_machine_exits_2(tmp_path: Path) -> None:
    """192.0.2.1 (TEST-NET-1, RFC 5737) is on no machine: the bind fails before any socket is
    connected, and that is a configuration problem, not a traceback nor a storage fault."""
    init = run("scryp.keytool", "init", str(tmp_path / "net"), "--servers", "1", cwd=tmp_path)
    assert init.returncode == 0, init.stderr
    argv = ["--network", "private", "--listen", "192.0.2.1", "--bootstrap", "127.0.0.1:1"]
    files = ["--key", "keys/server-0.seed", "--keys", ".keys", "--genesis", "genesis"]
    done = run("scryp.server", *argv, *files, cwd=tmp_path / "net")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and "cannot listen on 192.0.2.1" in lines[0], lines


async def client_status(keys: Path, data: Path, bootstrap: tuple[str, int]) -> dict[str, object]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "scryp.client",
        "status",
        "--json",
        "--keys",
        str(keys),
        "--data",
        str(data),
        "--bootstrap",
        f"{bootstrap[0]}:{bootstrap[1]}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), PROCESS_TIMEOUT_S)
    assert process.returncode in (0, 1), err.decode()
    result: dict[str, object] = json.loads(out)
    return result


def test_a_restarted_client_rejoins_from_its_dht_node_cache(
    dht: PrivateDHT, tmp_path: Path, quorum_file: Path
) -> None:
    """protocol §8.8: the client saved its DHT nodes at exit; started again with its only
    bootstrap node gone, it still reads the pointers, and a client without the cache does not."""
    keys = server_keys(3)
    statement = Statement(NETWORK, ROUND, bytes(32), bytes(32))
    record = certified_record(statement, bytes(20), keys, range(majority(3)))

    async def body() -> None:
        async with dht(4) as swarms:
            for key, swarm in zip(keys, swarms[1:], strict=True):
                await swarm.put_pointer(key, encode_record(record))
            boot = swarms[0].address
            data = tmp_path / "client"
            first = await client_status(quorum_file, data, boot)
            assert first["certified_round"] == ROUND
            assert (data / DHT_STATE_FILE).stat().st_size > 0
            await swarms[0].close()  # the bootstrap node is gone; the other nodes live on
            again = await client_status(quorum_file, data, boot)
            assert again["certified_round"] == ROUND
            fresh = await client_status(quorum_file, tmp_path / "fresh", boot)
            assert fresh["certified_round"] is None  # without the cache: nobody to ask

    asyncio.run(body())


def compact(host: str, port: int) -> bytes:
    return bytes(int(part) for part in host.split(".")) + port.to_bytes(2, "big")


def test_a_cache_file_never_brings_a_public_address_into_loopback_mode() -> None:
    """Checked on the file's bytes, never by starting a session on them (that would send)."""
    import libtorrent as lt

    from scryp.netmode import Mode, host_allowed
    from scryp.swarm import dhtstate

    nodes = [compact("8.8.8.8", 6881), compact("127.0.0.1", 7000), compact("10.1.2.3", 6881)]
    nodes += [compact("127.0.0.2", 0), b"short"]
    saved: Any = {b"dht state": {b"node-id": [bytes(24)], b"nodes": nodes}}
    state = lt.bencode(saved)
    loopback = dhtstate.filtered(bytes(state), lambda host: host_allowed(Mode.LOOPBACK, host))
    assert loopback is not None
    loaded: Any = lt.bdecode(loopback)
    assert loaded[b"dht state"][b"nodes"] == [compact("127.0.0.1", 7000)]
    private = dhtstate.filtered(bytes(state), lambda host: host_allowed(Mode.PRIVATE, host))
    assert private is not None and dhtstate.node_count(private) == 3
    assert dhtstate.filtered(b"not bencode", lambda host: True) is None


def test_private_mode_dht_works_with_production_settings_on_loopback_addresses() -> None:
    """protocol §8.8.3: libtorrent's own DHT defences on (one node per address in a routing
    table, BEP 42 node ids), so each node gets its own 127.0.N.1 address; pointers put by three
    are read by a fifth."""
    from scryp.netmode import Mode
    from scryp.swarm import Swarm, SwarmConfig

    keys = server_keys(3)
    statement = Statement(NETWORK, ROUND, bytes(32), bytes(32))
    record = certified_record(statement, bytes(20), keys, range(majority(3)))

    async def body() -> None:
        swarms: list[Swarm] = []
        try:
            for n in range(1, 6):
                bootstrap = (swarms[0].address,) if swarms else ()
                config = SwarmConfig(f"127.0.{n}.1", bootstrap=bootstrap, network=Mode.PRIVATE)
                assert config.production
                swarms.append(Swarm(config))
                await swarms[-1].wait_listening()
            for swarm in swarms[1:]:
                await swarm.wait_dht_ready()
            for key, swarm in zip(keys, swarms[1:4], strict=True):
                put = await swarm.put_pointer(key, encode_record(record))
                assert put.num_success > 0
            found, refused = await swarms[4].get_pointers([key.public for key in keys])
            assert not refused and {r.round for r in found.values()} == {ROUND}
            assert len(found) == 3
        finally:
            for swarm in reversed(swarms):
                await swarm.close()

    asyncio.run(body())


def test_a_server_learns_from_pointers_only_addresses_its_mode_allows() -> None:
    """protocol §9.6.3: a verified pointer naming an address off 127.0.0.0/8 (or an
    unspecified one) teaches a loopback-mode server nothing; private mode takes a unicast one."""
    from scryp.core.pointer import PointerRecord
    from scryp.netmode import Mode
    from scryp.server.pointers import PointerWatch

    quorum = [key.public for key in server_keys(3)]

    def learnt(mode: Mode, api: str) -> dict[int, str]:
        watch = PointerWatch(quorum, 0, NETWORK, given=[])
        watch.mode = mode
        record = PointerRecord(NETWORK, 1, bytes(32), bytes(20), bytes(32), api=api)
        watch.learn(1, record, 0.0)
        assert watch.latest[1] == record  # the pointer itself is still read and logged
        return watch.addresses

    assert learnt(Mode.LOOPBACK, "127.0.0.1:6882") == {1: "127.0.0.1:6882"}
    assert learnt(Mode.LOOPBACK, "10.61.0.2:6882") == {}
    assert learnt(Mode.LOOPBACK, "0.0.0.0:6882") == {}
    assert learnt(Mode.PRIVATE, "10.61.0.2:6882") == {1: "10.61.0.2:6882"}
    assert learnt(Mode.PRIVATE, "0.0.0.0:6882") == {}
    assert learnt(Mode.PRIVATE, "scryp.example.org:6882") == {}
