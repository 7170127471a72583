"""A synthetic certified network in one process, for the sync benchmark and tests.

Round 1: ``accounts`` records (ids = SHA-256 of a counter, plus ``payers`` real key pairs).
Round 2: round 1 after ``payments`` signed payments among the payers. Or, with
``build_checkpoint_rounds``, the layout servers write since stage B (protocol §4.4.4): a
checkpoint round holding the whole ``balances``, then delta rounds holding only ``changes``,
``transactions`` and ``window``, each made by the servers' own ``round_contents``. One
"server" session seeds the rounds and is the DHT's bootstrap node; each of the quorum's test
keys publishes its BEP 44 pointer (protocol §8.3) with a majority certificate (§8.4) for
round ``upto`` (the index, from 1, in the list of rounds). Nothing here runs the Raft
servers: the rounds and certificates are made directly with the servers' keys. Loopback
only.

The keys and records are pure; the torrents are made by the function the caller passes
(``scryp.swarm.build_round_torrent``), so a unit test that only needs certified records
does not load libtorrent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from scryp.core import snapshot
from scryp.core.balances import TOTAL_SUPPLY, encode_balances
from scryp.core.buckets import MerkleTree, state_root
from scryp.core.certificate import Certificate, Statement, majority
from scryp.core.ledger import Ledger
from scryp.core.pointer import RECENT_MAX, PointerRecord, encode_record
from scryp.core.tx import Transaction
from scryp.crypto import KeyPair
from scryp.random_genesis import random_genesis_chunks
from scryp.server.rounds import round_contents

if TYPE_CHECKING:
    from scryp.swarm import RoundTorrent, Swarm

TIMESTAMP_MS = 1_700_000_000_000


@dataclass(frozen=True, slots=True)
class SyntheticRound:
    round: int
    round_dir: Path
    torrent: RoundTorrent
    state_root: bytes
    transactions_bytes: int
    tree: MerkleTree | None = None  # the state tree (build_checkpoint_rounds), for proofs


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
    return encode_balances(filler.items())


def write_round(
    root: Path, number: int, balances: bytes | None, transactions: bytes, changes: bytes = b""
) -> Path:
    """A round directory (protocol §8.1): a checkpoint round's files when ``balances`` is
    given, else a delta round's (§4.4.4)."""
    round_dir = root / snapshot.round_dir_name(number)
    round_dir.mkdir(parents=True, exist_ok=True)
    if balances is not None:
        (round_dir / snapshot.BALANCES).write_bytes(balances)
    (round_dir / snapshot.CHANGES).write_bytes(changes)
    (round_dir / snapshot.TRANSACTIONS).write_bytes(transactions)
    window = snapshot.WINDOW if balances is not None else snapshot.REMEMBERED
    (round_dir / window).write_bytes(bytes(8))
    return round_dir


def build_rounds(
    root: Path,
    accounts: int,
    payers: list[KeyPair],
    payments: int,
    make_torrent: Callable[[Path], RoundTorrent],
    *,
    new_account_every: int = 0,
) -> list[SyntheticRound]:
    """Round 1 (``accounts`` accounts) and round 2 = round 1 after ``payments`` payments,
    every ``new_account_every``-th (if not 0) to a new account. Round 2 is built by the
    servers' ledger (``scryp.core.ledger.Ledger``), not by the clients' ``replay``, so a
    client's replay is checked against the other implementation."""
    first = genesis_balances(accounts, payers)

    def payee(i: int) -> bytes:
        if new_account_every and i % new_account_every == new_account_every - 1:
            return hashlib.sha256(b"synthetic new account %d" % i).digest()
        return payers[(i + 1) % len(payers)].public

    txs = [
        Transaction.create(payers[i % len(payers)], payee(i), 1 + i, TIMESTAMP_MS + i)
        for i in range(payments)
    ]
    ledger = Ledger(first)
    outcomes = ledger.apply(txs, TIMESTAMP_MS + max(payments - 1, 0))
    refused = [o for o in outcomes if not o.accepted]
    assert not refused, f"synthetic payments refused: {refused[:3]}"
    second = ledger.balances_file()
    changes = ledger.take_changes()
    rounds = []
    for number, (balances, transactions, changed) in enumerate(
        [(first, b"", b""), (second, b"".join(tx.raw for tx in txs), changes)], start=1
    ):
        round_dir = write_round(root, number, balances, transactions, changed)
        rounds.append(
            SyntheticRound(
                number,
                round_dir,
                make_torrent(round_dir),
                state_root(balances),
                len(transactions),
            )
        )
    return rounds


def round_payments(
    payers: list[KeyPair], count: int, stamp_ms: int, new_account_every: int, salt: int
) -> list[Transaction]:
    """``count`` signed payments among ``payers`` (every ``new_account_every``-th, if not 0,
    to a new account named by ``salt``), timestamped at most ``count // 1000`` ms before
    ``stamp_ms``: distinct, and inside the window of a seal at ``stamp_ms``."""
    txs = []
    for i in range(count):
        if new_account_every and i % new_account_every == new_account_every - 1:
            payee = hashlib.sha256(b"synthetic new account %d %d" % (salt, i)).digest()
        else:
            payee = payers[(i + 1) % len(payers)].public
        payer = payers[i % len(payers)]
        txs.append(Transaction.create(payer, payee, 1 + i % 1000, stamp_ms - i // 1000))
    return txs


def build_checkpoint_rounds(
    root: Path,
    accounts: int,
    payers: list[KeyPair],
    payments: int,
    make_torrent: Callable[[Path], RoundTorrent],
    *,
    checkpoint_every: int,
    delta_rounds: int,
    new_account_every: int = 0,
) -> list[SyntheticRound]:
    """Rounds C..C+``delta_rounds`` (C = ``checkpoint_every``) as servers write them
    (protocol §4.4.4): a random genesis of ``accounts`` accounts (``random_genesis``; payer
    0 holds the rest of the supply, the others a fortieth of it each), then per round
    ``payments`` payments applied by the servers' ``Ledger`` and the round's files made by
    the servers' ``round_contents``: round C is a checkpoint (it holds ``balances``), the
    others hold ``changes``, ``transactions`` and ``window``. Each round keeps its state
    tree (4 MB), so a stand-in server can answer ``GET /proof``."""
    if not 0 <= delta_rounds < checkpoint_every:
        raise ValueError("delta rounds must stay before the next checkpoint")
    fixed = {key.public: TOTAL_SUPPLY // 40 for key in payers[1:]}
    genesis = b"".join(random_genesis_chunks(accounts, payers[0].public, fixed, accounts))
    ledger = Ledger(genesis)
    del genesis
    rounds = []
    for number in range(checkpoint_every, checkpoint_every + delta_rounds + 1):
        stamp_ms = TIMESTAMP_MS + number * 1000
        txs = round_payments(payers, payments, stamp_ms, new_account_every, number)
        outcomes = ledger.apply(txs, stamp_ms, [None] * len(txs))  # signed here: valid
        refused = [o for o in outcomes if not o.accepted]
        assert not refused, f"synthetic payments refused: {refused[:3]}"
        raw = b"".join(tx.raw for tx in txs)
        contents = round_contents(number, checkpoint_every, ledger, raw)
        round_dir = root / snapshot.round_dir_name(number)
        round_dir.mkdir(parents=True, exist_ok=True)
        for name, data in contents.items():
            (round_dir / name).write_bytes(data)
        tree = ledger.state_tree()
        torrent = make_torrent(round_dir)
        rounds.append(SyntheticRound(number, round_dir, torrent, tree.root, len(raw), tree))
    return rounds


def certified_record(
    statement: Statement,
    infohash: bytes,
    keys: Sequence[KeyPair],
    signers: Sequence[int],
    recent: tuple[bytes, ...] = (),
) -> PointerRecord:
    """The pointer record of ``statement`` (v1 ``infohash``) with a certificate signed by the
    ``keys`` at positions ``signers`` (a majority of them or not: the caller decides)."""
    certificate = Certificate(tuple((i, statement.sign(keys[i])) for i in sorted(signers)))
    return PointerRecord(
        network=statement.network,
        round=statement.round,
        state_root=statement.state_root,
        infohash=infohash,
        infohash_v2=statement.infohash_v2,
        recent=recent,
        certificate=certificate.to_bytes(),
    )


async def publish(
    swarm: Swarm, network: bytes, rounds: list[SyntheticRound], keys: list[KeyPair], upto: int
) -> None:
    """Every key's pointer names round ``upto`` with a majority certificate."""
    chosen = rounds[upto - 1]
    torrent = chosen.torrent
    statement = Statement(network, chosen.round, chosen.state_root, torrent.infohash_v2)
    signers = range(majority(len(keys)))
    recent = tuple(r.torrent.infohash for r in reversed(rounds[: upto - 1]))[:RECENT_MAX]
    record = certified_record(statement, torrent.infohash, keys, signers, recent)
    for key in keys:
        await swarm.put_pointer(key, encode_record(record))
