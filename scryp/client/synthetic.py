"""A synthetic certified network in one process, for the sync benchmark and tests.

Round 1: ``accounts`` records (ids = SHA-256 of a counter, plus ``payers`` real key pairs).
Round 2: round 1 after ``payments`` signed payments among the payers. One "server" session
seeds both rounds and is the DHT's bootstrap node; each of the quorum's test keys publishes
its BEP 44 pointer (protocol §8.3) with a majority certificate (§8.4) for round 2 (round 1
for ``certify_round=1``). Nothing here runs the Raft servers: the rounds and certificates are
made directly with the servers' keys. Loopback only.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

from scryp.client.replay import replay
from scryp.core import snapshot
from scryp.core.balances import TOTAL_SUPPLY, state_hash
from scryp.core.certificate import Certificate, Statement, majority
from scryp.core.pointer import PointerRecord, encode_record
from scryp.core.tx import Transaction
from scryp.crypto import KeyPair
from scryp.swarm import RoundTorrent, Swarm, build_round_torrent

RECORD = struct.Struct(">32sI")
TIMESTAMP_MS = 1_700_000_000_000


@dataclass(frozen=True, slots=True)
class SyntheticRound:
    round: int
    round_dir: Path
    torrent: RoundTorrent
    state_hash: bytes
    transactions_bytes: int


def server_keys(count: int) -> list[KeyPair]:
    return [KeyPair.from_seed(hashlib.sha256(b"server %d" % i).digest()) for i in range(count)]


def payer_keys(count: int) -> list[KeyPair]:
    return [KeyPair.from_seed(hashlib.sha256(b"payer %d" % i).digest()) for i in range(count)]


def genesis_balances(accounts: int, payers: list[KeyPair]) -> bytes:
    """``accounts`` filler accounts of 1..1000 scryp; the payers share the rest of the supply."""
    filler = {hashlib.sha256(b"account %d" % i).digest(): 1 + i % 1000 for i in range(accounts)}
    rest = TOTAL_SUPPLY - sum(filler.values())
    for number, key in enumerate(payers):
        filler[key.public] = rest // len(payers) + (rest % len(payers) if number == 0 else 0)
    ordered = sorted(filler.items())
    return b"".join(RECORD.pack(account, balance) for account, balance in ordered)


def write_round(root: Path, number: int, balances: bytes, transactions: bytes) -> Path:
    round_dir = root / snapshot.round_dir_name(number)
    round_dir.mkdir(parents=True, exist_ok=True)
    (round_dir / snapshot.BALANCES).write_bytes(balances)
    (round_dir / snapshot.TRANSACTIONS).write_bytes(transactions)
    (round_dir / snapshot.WINDOW).write_bytes(bytes(8))
    return round_dir


def build_rounds(
    root: Path, accounts: int, payers: list[KeyPair], payments: int
) -> list[SyntheticRound]:
    first = genesis_balances(accounts, payers)
    txs = [
        Transaction.create(
            payers[i % len(payers)],
            payers[(i + 1) % len(payers)].public,
            1 + i,
            TIMESTAMP_MS + i,
        )
        for i in range(payments)
    ]
    second = replay(first, txs)
    rounds = []
    for number, (balances, transactions) in enumerate(
        [(first, b""), (second, b"".join(tx.raw for tx in txs))], start=1
    ):
        round_dir = write_round(root, number, balances, transactions)
        rounds.append(
            SyntheticRound(
                number,
                round_dir,
                build_round_torrent(round_dir),
                state_hash(balances),
                len(transactions),
            )
        )
    return rounds


def certified_record(
    network: bytes,
    chosen: SyntheticRound,
    earlier: list[SyntheticRound],
    keys: list[KeyPair],
    signers: list[int],
) -> PointerRecord:
    statement = Statement(network, chosen.round, chosen.state_hash, chosen.torrent.infohash_v2)
    certificate = Certificate(tuple((i, statement.sign(keys[i])) for i in sorted(signers)))
    return PointerRecord(
        network=network,
        round=chosen.round,
        state_hash=chosen.state_hash,
        infohash=chosen.torrent.infohash,
        infohash_v2=chosen.torrent.infohash_v2,
        recent=tuple(r.torrent.infohash for r in reversed(earlier)),
        certificate=certificate.to_bytes(),
    )


async def publish(
    swarm: Swarm, network: bytes, rounds: list[SyntheticRound], keys: list[KeyPair], upto: int
) -> None:
    """Every key's pointer names round ``upto`` with a majority certificate."""
    chosen = rounds[upto - 1]
    signers = list(range(majority(len(keys))))
    record = certified_record(network, chosen, rounds[: upto - 1], keys, signers)
    for key in keys:
        await swarm.put_pointer(key, encode_record(record))
