"""An implementation written only from docs/protocol.md verifies a real network (issue 13).

``tests/independent/verifier.py`` (hashlib, pynacl, its own bencode; no ``scryp`` import, as
checked here) reads each server's BEP 44 item from the DHT nodes itself (one KRPC ``get`` to
SHA-1(key + salt)), checks both signature layers (the item, the majority certificate of the
120-byte statement), then the round's torrent: the info dict hashes to the certified v2
infohash, every file matches the v1 piece hashes and v2 roots, and ``balances`` hashes to the
certified state and shows the payment. scryp is used only to run the network and to fetch
the torrent's files and info dict from the swarm. Then planted bugs: a forged item signature,
a wrong state root, a wrong infohash and a changed balance are each rejected.
"""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scryp.core.tx import Transaction
from scryp.crypto import KeyPair
from scryp.keyfile import read_quorum
from scryp.localnet import LocalNetwork
from scryp.swarm import Swarm, SwarmConfig
from tests.independent import verifier
from tests.independent.verifier import Rejected

pytestmark = pytest.mark.slow

ROUND_S = 0.5
DEADLINE_S = 60.0
AMOUNT = 4242
VERIFIER = Path(verifier.__file__)


def test_the_verifier_imports_nothing_of_scryp() -> None:
    tree = ast.parse(VERIFIER.read_text())
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert names and not [n for n in names if n.split(".")[0] in ("scryp", "tests")], names


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalNetwork, int]]:
    """A network where the faucet paid ``bob`` AMOUNT; (network, the round that took it)."""
    # Every round a checkpoint (protocol §4.4.4): the round verified holds ``balances``.
    network = LocalNetwork(
        tmp_path_factory.mktemp("net"),
        servers=3,
        round_interval_s=ROUND_S,
        server_args=["--checkpoint-every", "1"],
    )
    try:
        asyncio.run(network.start())
        assert network.faucet is not None
        tx = Transaction.create(network.faucet, bob().public, AMOUNT, int(time.time() * 1000))
        found: dict[str, object] = {}

        async def pay() -> None:
            async def decided() -> bool:
                code, body = await network.get(0, f"/tx/{tx.tx_id.hex()}")
                found.update(body if code == 200 else {})
                return bool(found.get("certified"))

            async def sent() -> bool:
                code, _ = await network.post(0, "/transact", tx.encode())
                return code == 202

            await network.wait_until(sent, DEADLINE_S, "a server taking the payment")
            await network.wait_until(decided, DEADLINE_S, "the payment certified")

        asyncio.run(pay())
        assert found["status"] == "accepted"
        yield network, int(str(found["round"]))
    finally:
        asyncio.run(network.stop())


def bob() -> KeyPair:
    return KeyPair.from_seed(hashlib.sha256(b"independent verifier bob").digest())


def dht_nodes(net: LocalNetwork) -> list[tuple[str, int]]:
    assert net.bootstrap is not None
    return [net.bootstrap] + [("127.0.0.1", s.torrent_port) for s in net.server_processes]


def read_items(net: LocalNetwork, round_min: int) -> dict[bytes, verifier.Item]:
    """Every server's item, read by the verifier itself, once each names round_min or later
    (puts lag the rounds by a little)."""
    quorum = read_quorum(net.files.quorum)
    deadline = time.monotonic() + DEADLINE_S
    items: dict[bytes, verifier.Item] = {}
    while time.monotonic() < deadline:
        for public in quorum:
            for node in dht_nodes(net):
                item = verifier.dht_get(node, public, timeout_s=1.0)
                if item is not None and item.seq >= items.get(public, item).seq:
                    items[public] = item
        rounds = [verifier.verify_item(i, quorum).round for i in items.values()]
        if len(rounds) == len(quorum) and min(rounds) >= round_min:
            return items
    raise AssertionError(f"items of round {round_min} not all found: {len(items)} found")


def fetch_round(net: LocalNetwork, record: verifier.Record, into: Path) -> bytes:
    """scryp's swarm fetches the round's files; the info dict as the swarm got it."""

    async def fetch() -> bytes:
        config = SwarmConfig(
            bootstrap=(net.bootstrap,) if net.bootstrap else (), dht_read_only=True
        )
        async with Swarm.start(config) as swarm:
            peers = [("127.0.0.1", s.torrent_port) for s in net.server_processes]
            await swarm.fetch(record.ih, into, timeout_s=DEADLINE_S, peers=peers)
            return swarm.info_dict(record.ih)

    return asyncio.run(fetch())


def test_a_pointer_certificate_and_round_verified_from_the_document(
    net: tuple[LocalNetwork, int], tmp_path: Path
) -> None:
    network, round_paid = net
    quorum = read_quorum(network.files.quorum)
    items = read_items(network, round_paid)
    records = {public: verifier.verify_item(item, quorum) for public, item in items.items()}
    certified = {p: r for p, r in records.items() if r.cert}
    record = max(certified.values(), key=lambda r: r.round)
    signers = verifier.verify_record(record, quorum)
    assert len(signers) >= 2
    # The network id a client trusting only .keys learns from the certified statement is
    # the genesis' SHA-256 (§5.2, §8.10.4).
    assert record.net == hashlib.sha256(network.files.genesis.read_bytes()).digest()

    info_dict = fetch_round(network, record, tmp_path)
    info = verifier.verify_torrent(info_dict, record.ih2, record.ih)
    name = info[b"name"].decode()
    assert name == f"round-{record.round:010d}"
    files = {path.name: path.read_bytes() for path in (tmp_path / name).iterdir() if path.is_file()}
    verifier.verify_files(info, files)
    table = verifier.verify_balances(files["balances"], record.state)
    assert table[bob().public] == AMOUNT

    # -- planted bugs: each must be rejected -------------------------------------------------
    item = items[next(iter(certified))]
    forged = dataclasses.replace(
        item, signature=item.signature[:-1] + bytes([item.signature[-1] ^ 1])
    )
    with pytest.raises(Rejected, match="item signature"):
        verifier.verify_item(forged, quorum)
    wrong_state = dataclasses.replace(record, state=hashlib.sha256(b"another state").digest())
    with pytest.raises(Rejected, match="does not verify"):
        verifier.verify_record(wrong_state, quorum)
    wrong_infohash = dataclasses.replace(record, ih2=hashlib.sha256(b"another torrent").digest())
    with pytest.raises(Rejected, match="does not verify"):
        verifier.verify_record(wrong_infohash, quorum)
    with pytest.raises(Rejected, match="v2 infohash"):
        verifier.verify_torrent(info_dict, wrong_infohash.ih2, record.ih)
    richer = bytearray(files["balances"])
    richer[35] ^= 1  # the last byte of the first record's balance
    with pytest.raises(Rejected, match="state root"):
        verifier.verify_balances(bytes(richer), record.state)
    with pytest.raises(Rejected, match="piece 0 does not match its v1 hash"):
        verifier.verify_v1_pieces(info, {**files, "balances": bytes(richer)})
    with pytest.raises(Rejected, match="balances does not match its v2 pieces root"):
        verifier.verify_v2_roots(info, {**files, "balances": bytes(richer)})
    minority = dataclasses.replace(record, cert=bytes([1]) + record.cert[1:66])
    with pytest.raises(Rejected, match="minority"):
        verifier.verify_record(minority, quorum)
