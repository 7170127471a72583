"""Real server processes on 127.0.0.1 (issue 5): payments, certificates, faults, bad input.

Each test starts a local network of 3 ``python -m scryp.server`` processes, a DHT bootstrap
node process, all on free loopback ports, and kills servers with real signals.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from scryp.core.certificate import Certificate, Statement, verify_certificate
from scryp.core.pointer import verify_item
from scryp.core.tx import Transaction
from scryp.crypto import KeyPair
from scryp.keyfile import read_quorum
from scryp.localnet import LocalNetwork
from scryp.netmode import DHT_STATE_FILE
from scryp.peers import PeerLimits
from scryp.swarm import Swarm, SwarmConfig, dhtstate

pytestmark = pytest.mark.slow

ROUND_S = 0.5
DEADLINE_S = 60.0
ALICE = KeyPair.from_seed(hashlib.sha256(b"alice").digest())
BOB = KeyPair.from_seed(hashlib.sha256(b"bob").digest())
CAROL = KeyPair.from_seed(hashlib.sha256(b"carol").digest())
DAVE = KeyPair.from_seed(hashlib.sha256(b"dave").digest())


@asynccontextmanager
async def network(root: Path, *server_args: str) -> AsyncIterator[LocalNetwork]:
    net = LocalNetwork(root, servers=3, round_interval_s=ROUND_S, server_args=list(server_args))
    try:
        await net.start()
        await wait_certified(net, 1)
        yield net
    finally:
        await net.stop()


async def wait_certified(
    net: LocalNetwork, round_number: int, servers: list[int] | None = None
) -> list[dict[str, Any]]:
    indices = servers if servers is not None else list(range(net.servers))
    found: list[dict[str, Any]] = []

    async def reached() -> bool:
        nonlocal found
        statuses = await net.statuses()
        found = [s for i, s in enumerate(statuses) if i in indices and s is not None]
        return len(found) == len(indices) and all(
            (s["certified_round"] or 0) >= round_number for s in found
        )

    await net.wait_until(reached, DEADLINE_S, f"certified round {round_number}")
    return found


def pay(payer: KeyPair, payee: KeyPair, amount: int) -> Transaction:
    return Transaction.create(payer, payee.public, amount, int(time.time() * 1000))


async def settle(net: LocalNetwork, tx: Transaction, via: int = 0) -> dict[str, Any]:
    """Wait until ``tx`` is decided in a certified round; return its status."""
    result: dict[str, Any] = {}

    async def decided() -> bool:
        nonlocal result
        code, body = await net.get(via, f"/tx/{tx.tx_id.hex()}")
        result = body if code == 200 else {}
        return bool(result.get("certified"))

    await net.wait_until(decided, DEADLINE_S, f"payment {tx.tx_id.hex()[:16]}")
    return result


async def balances(net: LocalNetwork, account: KeyPair) -> list[tuple[int, int, str]]:
    replies = [await net.get(i, f"/query/{account.account_id}") for i in range(net.servers)]
    return [(b["balance"], b["round"], b["state_root"]) for code, b in replies if code == 200]


async def follower(net: LocalNetwork) -> int:
    statuses = await net.statuses()
    return next(i for i, s in enumerate(statuses) if s is not None and s["role"] != "leader")


def test_a_payment_is_certified_on_every_server(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with network(tmp_path) as net:
            assert net.faucet is not None
            via = await follower(net)  # a follower forwards to the leader
            tx = pay(net.faucet, ALICE, 1_000)
            code, body = await net.post(via, "/transact", tx.encode())
            assert code == 202, body
            assert body["results"] == [{"id": tx.tx_id.hex(), "status": "pending"}]
            status = await settle(net, tx, via)
            assert status["status"] == "accepted"
            await wait_certified(net, status["round"])
            seen = await balances(net, ALICE)
            assert len(seen) == 3 and {b for b, _, _ in seen} == {1_000}
            # Every server answers from the same certified state for the same round.
            by_round = {r: h for _, r, h in seen}
            assert len(by_round) >= 1
            for round_number, state in by_round.items():
                codes = [await net.get(i, f"/rounds?from={round_number}") for i in range(3)]
                hashes = {
                    next(x["state_root"] for x in b["rounds"] if x["round"] == round_number)
                    for c, b in codes
                    if c == 200
                }
                assert hashes == {state}

    asyncio.run(scenario())


def test_the_record_and_the_dht_pointer_verify_against_keys(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with network(tmp_path) as net:
            quorum = read_quorum(net.files.quorum)
            assert net.genesis is not None
            code, record = await net.get(0, "/record")
            assert code == 200
            statement = Statement(
                net.genesis.network_id,
                record["round"],
                bytes.fromhex(record["state_root"]),
                bytes.fromhex(record["infohash_v2"]),
            )
            verify_certificate(
                Certificate.from_bytes(bytes.fromhex(record["certificate"])), statement, quorum
            )
            # A plain libtorrent DHT get of each server's pointer, checked with pynacl.
            assert net.bootstrap is not None
            swarm = Swarm(SwarmConfig(bootstrap=(net.bootstrap,)))
            try:
                await swarm.wait_listening()
                await swarm.wait_dht_ready()
                verified = {}

                async def every_pointer() -> bool:
                    items = await swarm.get_items(quorum, timeout_s=5.0)
                    for public, item in items.items():
                        verified[public] = verify_item(item, quorum)
                    return len(verified) == len(quorum)

                await net.wait_until(every_pointer, DEADLINE_S, "every server's pointer")
            finally:
                await swarm.close()
            for public, pointer in verified.items():
                assert pointer.network == net.genesis.network_id
                verify_certificate(
                    Certificate.from_bytes(pointer.certificate), pointer.statement, quorum
                )
                owner = net.server_processes[quorum.index(public)]
            assert pointer.api == owner.api.removeprefix("http://")

    asyncio.run(scenario())


def test_servers_find_each_other_through_their_dht_pointers(tmp_path: Path) -> None:
    async def scenario() -> None:
        net = LocalNetwork(tmp_path, servers=3, round_interval_s=ROUND_S, give_peers=False)
        try:
            await net.start()
            await wait_certified(net, 1)

            async def linked() -> bool:  # a majority certifies before the third link is up
                statuses = await net.statuses()
                return all(s is not None and len(s["peers_out"]) == 2 for s in statuses)

            await net.wait_until(linked, DEADLINE_S, "every server linked to both others")
        finally:
            await net.stop()
        # Each saved its DHT node cache at stop (protocol §8.8.7), with nodes in it.
        for index in range(3):
            state = (tmp_path / "data" / f"server-{index}" / DHT_STATE_FILE).read_bytes()
            assert dhtstate.node_count(state) > 0

    asyncio.run(scenario())


def test_bad_requests_get_4xx_and_change_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with network(tmp_path) as net:
            assert net.faucet is not None
            faucet_id = net.faucet.account_id
            before = await net.get(0, f"/query/{faucet_id}")
            good = pay(net.faucet, ALICE, 5)
            forged = Transaction.decode(
                good.raw[:100] + bytes([good.raw[100] ^ 1]) + good.raw[101:]
            )
            code, body = await net.post(0, "/transact", forged.encode())
            assert code == 400 and body["results"][0]["reason"] == "bad signature"
            code, body = await net.post(0, "/transact", good.encode()[:139])
            assert code == 400 and "140" in body["error"]
            code, body = await net.post(0, "/transact", bytes(2 * 1024 * 1024))
            assert code == 413
            code, body = await net.post(0, "/transact", b"{not json", "application/json")
            assert code == 400
            code, body = await net.post(0, "/transact", b"zz", "text/plain")
            assert code == 400 and "hexadecimal" in body["error"]
            stale = Transaction.create(
                net.faucet, ALICE.public, 5, int(time.time() * 1000) - 60_000
            )
            code, body = await net.post(0, "/transact", stale.encode())
            assert code == 400 and "window" in body["results"][0]["reason"]
            code, body = await net.get(0, "/query/not-an-account")
            assert code == 400
            code, body = await net.get(0, f"/tx/{'00' * 32}")
            assert code == 404
            code, body = await net.get(0, "/tx/xyz")
            assert code == 400
            code, body = await net.get(0, "/rounds?from=abc")
            assert code == 400
            # Nothing moved: a round later, the faucet still holds everything.
            statuses = await net.statuses()
            newest = max(s["certified_round"] for s in statuses if s)
            await wait_certified(net, newest + 1)
            after = await net.get(0, f"/query/{faucet_id}")
            assert before[1]["balance"] == after[1]["balance"] == 2**32 - 1
            for server in range(3):
                code, _ = await net.get(server, "/status")
                assert code == 200  # no server crashed on any of it

    asyncio.run(scenario())


def test_the_same_funds_spent_twice_through_two_servers_apply_once(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with network(tmp_path) as net:
            assert net.faucet is not None
            funding = pay(net.faucet, ALICE, 1_000)
            assert (await net.post(0, "/transact", funding.encode()))[0] == 202
            assert (await settle(net, funding))["status"] == "accepted"
            to_bob, to_carol = pay(ALICE, BOB, 800), pay(ALICE, CAROL, 800)
            replies = await asyncio.gather(
                net.post(1, "/transact", to_bob.encode()),
                net.post(2, "/transact", to_carol.encode()),
            )
            assert [code for code, _ in replies] == [202, 202]
            outcomes = [await settle(net, to_bob), await settle(net, to_carol)]
            accepted = [o for o in outcomes if o["status"] == "accepted"]
            rejected = [o for o in outcomes if o["status"] == "rejected"]
            assert len(accepted) == 1 and len(rejected) == 1
            assert rejected[0]["reason"] == "insufficient funds"
            await wait_certified(net, max(o["round"] for o in outcomes))
            alice = {b for b, _, _ in await balances(net, ALICE)}
            paid = {b for b, _, _ in await balances(net, BOB)} | {
                b for b, _, _ in await balances(net, CAROL)
            }
            assert alice == {200} and paid == {0, 800}

            # Replays of one payment through all three servers at once: it applies once, a
            # copy already remembered is refused at the door, and a copy that reached the log
            # does not replace the recorded outcome (api.md, GET /tx).
            gift = pay(net.faucet, DAVE, 50)
            replays = await asyncio.gather(
                *(net.post(i, "/transact", gift.encode()) for i in range(3))
            )
            for code, body in replays:
                assert code == 202 or (
                    code == 400
                    and body["results"][0]["reason"] == "duplicate of a recent transaction"
                ), body
            decided = await settle(net, gift)
            assert decided["status"] == "accepted"
            await wait_certified(net, decided["round"])
            again = await net.post(1, "/transact", gift.encode())
            assert again[0] == 400
            assert again[1]["results"][0]["reason"] == "duplicate of a recent transaction"
            for i in range(3):
                code, body = await net.get(i, f"/tx/{gift.tx_id.hex()}")
                assert code == 200 and body["status"] == "accepted", body
            assert {b for b, _, _ in await balances(net, DAVE)} == {50}

    asyncio.run(scenario())


def test_kill_9_one_server_rounds_go_on_and_it_catches_up(tmp_path: Path) -> None:
    """Down for longer than the leader keeps its log: it must catch up through the swarm."""

    async def scenario() -> None:
        # Raft compacts only to checkpoint rounds (protocol §9.5): one every 4 rounds here.
        async with network(tmp_path, "--compaction-lag", "3", "--checkpoint-every", "4") as net:
            assert net.faucet is not None
            victim = await follower(net)
            others = [i for i in range(3) if i != victim]
            net.kill(victim, signal.SIGKILL)
            statuses = await net.statuses()
            assert statuses[victim] is None
            start = max(s["certified_round"] for s in statuses if s)
            # The two others keep sealing and certifying, and take payments.
            tx = pay(net.faucet, ALICE, 77)
            assert (await net.post(others[0], "/transact", tx.encode()))[0] == 202
            assert (await settle(net, tx, others[0]))["status"] == "accepted"
            # Wait until both have compacted their logs past every round the victim saw, and
            # then for longer than a queued peer frame may wait (2 s, protocol §9.2): the
            # entries it lacks are then gone from every log and every queue, and only the
            # swarm can help it.
            queued_frame_rounds = math.ceil(PeerLimits().frame_age_max_s / ROUND_S) + 2
            seen_by_victim = max(s["round"] for s in statuses if s) + 1 + queued_frame_rounds

            async def compacted_past_the_victim() -> bool:
                found = await net.statuses()
                return all(
                    (status := found[i]) is not None and status["compacted_round"] > seen_by_victim
                    for i in others
                )

            await net.wait_until(compacted_past_the_victim, DEADLINE_S, "compaction")
            await net.restart(victim)
            caught_up = await wait_certified(net, start + 10)
            # The restarted server agrees with the others on a common round.
            # A round each has certified, so each seeds and lists it (a sealed round is listed
            # only once seeded: taking the newest sealed one raced with its seeding).
            common = min(s["certified_round"] for s in caught_up)
            hashes = set()
            for server in range(3):
                code, body = await net.get(server, f"/rounds?from={common}")
                assert code == 200
                hashes.add(next(r["state_root"] for r in body["rounds"] if r["round"] == common))
            assert len(hashes) == 1
            assert {b for b, _, _ in await balances(net, ALICE)} == {77}
            # It came back through the torrent swarm, not from a server's upload of the state.
            log_text = net.server_processes[victim].child.log_path.read_text()
            assert "caught up from round" in log_text

    asyncio.run(scenario())


def test_a_restarted_server_resumes_from_its_own_disk(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with network(tmp_path) as net:
            assert net.faucet is not None
            tx = pay(net.faucet, BOB, 5)
            assert (await net.post(0, "/transact", tx.encode()))[0] == 202
            decided = await settle(net, tx)
            for index in range(3):  # every server in turn, the leader too
                net.kill(index, signal.SIGKILL)
                await net.restart(index)
                await wait_certified(net, decided["round"] + 2)
            statuses = await wait_certified(net, decided["round"] + 4)
            # No payment since: every certified round since has the same balances.
            assert len({s["certified_state_root"] for s in statuses}) == 1
            assert {b for b, _, _ in await balances(net, BOB)} == {5}
            for process in net.server_processes:
                log_text = process.child.log_path.read_text()
                assert log_text.count("resuming at round") == 2  # started, then restarted

    asyncio.run(scenario())
