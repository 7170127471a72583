"""GET /proof/ID on a real server process (protocol §4.4.6 in stage A of issue 10): the
bucket's bytes, cut from the certified round's ``balances`` at the range the server names,
and the 16 sibling hashes give the certified state root; a tampered sibling or bucket does
not; a malformed id is a 400 with a reason, and the server carries on. A client's light sync
checks the proof too when its pieces hold the whole bucket."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import time
from pathlib import Path

import pytest

from scryp.client.network import load_testnet
from scryp.client.session import open_client
from scryp.core import snapshot
from scryp.core.balances import lookup
from scryp.core.buckets import BUCKET_BITS, bucket_of, verify_proof
from scryp.core.certificate import Certificate, Statement, verify_certificate
from scryp.core.tx import Transaction
from scryp.crypto import KeyPair
from scryp.keyfile import read_quorum
from scryp.localnet import LocalNetwork

from .http import serving

pytestmark = pytest.mark.slow

ALICE = KeyPair.from_seed(hashlib.sha256(b"proof alice").digest())
NOBODY = KeyPair.from_seed(hashlib.sha256(b"proof nobody").digest())
DEADLINE_S = 60.0


def test_a_proof_gives_the_certified_root_and_a_tampered_one_does_not(tmp_path: Path) -> None:
    async def scenario() -> None:
        # 2 s rounds: the server keeps the trees of its newest 3 sealed rounds, so the round a
        # client verifies (pointers may lag a round or two) is still there to prove.
        # Every round a checkpoint (protocol §4.4.4): the lying helper's case below falls
        # back to the certified torrent's pieces of ``balances``.
        net = LocalNetwork(
            tmp_path / "net",
            servers=1,
            round_interval_s=2.0,
            server_args=["--checkpoint-every", "1"],
        )
        await net.start()
        try:
            assert net.faucet is not None and net.genesis is not None

            async def certified() -> bool:
                return (await net.get(0, "/record"))[0] == 200

            await net.wait_until(certified, DEADLINE_S, "a certified round")
            code, proof = await net.get(0, f"/proof/{ALICE.account_id}")
            assert code == 200, proof
            await _check(net, proof, ALICE.public, 0)  # before the payment: absent
            faucet = net.faucet

            async def paid() -> bool:  # 503 until a leader is elected
                tx = Transaction.create(faucet, ALICE.public, 1_234, _now_ms())
                return (await net.post(0, "/transact", tx.encode()))[0] == 202

            await net.wait_until(paid, DEADLINE_S, "the payment taken")

            async def alice_certified() -> bool:
                code, body = await net.get(0, f"/query/{ALICE.account_id}")
                return code == 200 and body["balance"] == 1_234

            await net.wait_until(alice_certified, DEADLINE_S, "Alice's payment certified")
            for account, balance in ((ALICE, 1_234), (NOBODY, 0)):
                code, proof = await net.get(0, f"/proof/{account.account_id}")
                assert code == 200, proof
                await _check(net, proof, account.public, balance)
            for bad in ("xyz", "00" * 31, "zz" * 32, "00" * 33, f"{'00' * 32}?round=x"):
                code, body = await net.get(0, f"/proof/{bad}")
                assert code == 400 and body["error"], (bad, body)
            code, body = await net.get(0, f"/proof/{ALICE.account_id}?round=999999")
            assert code == 404 and "not kept" in body["error"]
            async with open_client(load_testnet(net.root), tmp_path / "client") as client:
                verified = await client.latest()
                light = await client.sync(verified, "light", ALICE.public)
                assert (light.mode, light.balance, light.proof_checked) == ("light", 1_234, True)
                assert light.bytes_downloaded == 0  # the proof's records alone (§4.4.6)
                # A lying helper (the true proof, one byte of the records changed) is the only
                # server the client asks: no proof verifies, the pieces give the balance.
                code, true_proof = await net.get(0, f"/proof/{ALICE.account_id}")
                assert code == 200 and true_proof["records"]
                lying = dict(true_proof, records=_flip_last_byte(true_proof["records"]))
                async with serving("/proof/{account}", lying) as liar:
                    client.network = dataclasses.replace(client.network, apis=(liar,))
                    client.pointer_apis = ()
                    light = await client.sync(verified, "light", ALICE.public)
                assert (light.mode, light.balance) == ("light", 1_234)
                assert light.bytes_downloaded > 0  # from the certified torrent instead
            code, _ = await net.get(0, "/status")
            assert code == 200  # no crash on any of it
        finally:
            await net.stop()

    asyncio.run(scenario())


def _flip_last_byte(records_hex: str) -> str:
    records = bytearray.fromhex(records_hex)
    records[-1] ^= 1
    return records.hex()


async def _check(net: LocalNetwork, proof: dict[str, object], account: bytes, balance: int) -> None:
    assert net.genesis is not None
    root = bytes.fromhex(str(proof["state_root"]))
    number = proof["round"]
    assert isinstance(number, int)
    # The root is the one a majority signed (§8.4): the certificate of that round says so.
    code, record = await net.get(0, "/record")
    assert code == 200 and record["round"] >= number
    if record["round"] == number:
        statement = Statement(
            net.genesis.network_id, number, root, bytes.fromhex(record["infohash_v2"])
        )
        certificate = Certificate.from_bytes(bytes.fromhex(record["certificate"]))
        verify_certificate(certificate, statement, read_quorum(net.files.quorum))
    index = proof["bucket"]
    start, end = proof["start"], proof["end"]
    assert isinstance(index, int)
    assert index == bucket_of(account, BUCKET_BITS)
    listed = proof["siblings"]
    assert isinstance(listed, list) and len(listed) == BUCKET_BITS
    siblings = [bytes.fromhex(str(s)) for s in listed]
    bucket = bytes.fromhex(str(proof["records"]))
    round_dir = net.root / "data" / "server-0" / "rounds" / snapshot.round_dir_name(number)
    if (round_dir / snapshot.BALANCES).is_file():  # a checkpoint round (§4.4.4): the bytes
        assert isinstance(start, int) and isinstance(end, int)
        assert (round_dir / snapshot.BALANCES).read_bytes()[start:end] == bucket
    else:
        assert start is None and end is None
    assert verify_proof(root, index, bucket, siblings, BUCKET_BITS)
    assert lookup(bucket, account) == balance
    for level in (0, 7, BUCKET_BITS - 1):  # any tampered sibling fails the root
        tampered = list(siblings)
        tampered[level] = bytes(32)
        assert not verify_proof(root, index, bucket, tampered, BUCKET_BITS)
    forged = bucket + bytes(36) if not bucket else bucket[:-1] + bytes([bucket[-1] ^ 1])
    assert not verify_proof(root, index, forged, siblings, BUCKET_BITS)


def _now_ms() -> int:
    return int(time.time() * 1000)
