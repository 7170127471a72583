"""Incremental sync's replay (protocol §10.4) and the certificate rule (§10.2)."""

from __future__ import annotations

import hashlib
import random

import pytest

from scryp.client.verify import choose_certified
from scryp.core.balances import TOTAL_SUPPLY, decode_balances, encode_balances, lookup
from scryp.core.buckets import state_root
from scryp.core.certificate import Certificate, Statement
from scryp.core.pointer import (
    PointerRecord,
    SignedItem,
    UnknownKey,
    encode_record,
    signed_bytes,
    verify_item,
)
from scryp.core.replay import replay, replay_to
from scryp.core.tx import Transaction
from scryp.crypto import KeyPair
from scryp.errors import BadSignature, MalformedInput
from tests.support.synthetic import certified_record, payer_keys, server_keys

A, B = payer_keys(2)
GENESIS = encode_balances([(A.public, TOTAL_SUPPLY)])
NETWORK = hashlib.sha256(GENESIS).digest()


def pay(payer: KeyPair, payee: KeyPair, amount: int, at: int = 0) -> Transaction:
    return Transaction.create(payer, payee.public, amount, 1_700_000_000_000 + at)


def test_replay_moves_funds_and_checks_the_certified_hash() -> None:
    txs = [pay(A, B, 100), pay(B, A, 40, 1)]
    after = replay(GENESIS, txs)
    assert lookup(after, B.public) == 60 and lookup(after, A.public) == TOTAL_SUPPLY - 60
    assert replay_to(GENESIS, txs, state_root(after)) == after
    with pytest.raises(MalformedInput, match="certified state root"):
        replay_to(GENESIS, txs[:1], state_root(after))
    with pytest.raises(MalformedInput, match="certified state root"):  # not SHA-256 (§4.4.3)
        replay_to(GENESIS, txs, hashlib.sha256(after).digest())


def test_replay_refuses_what_no_server_would_have_accepted() -> None:
    forged = bytearray(pay(A, B, 5).raw)
    forged[8:12] = (6).to_bytes(4, "big")  # amount changed after signing
    with pytest.raises(BadSignature):
        replay(GENESIS, [Transaction.decode(bytes(forged))])
    with pytest.raises(MalformedInput, match="payer has 0"):
        replay(GENESIS, [pay(B, A, 1)])
    with pytest.raises(MalformedInput):
        replay(GENESIS, [pay(A, A, 1)])


def oracle(balances_file: bytes, txs: list[Transaction]) -> bytes:
    """Every record decoded, the payments applied to a dict, re-encoded: what replay did
    before it read only the accounts touched."""
    table = dict(decode_balances(balances_file))
    for tx in txs:
        table[tx.payer] -= tx.amount
        table[tx.payee] = table.get(tx.payee, 0) + tx.amount
    return encode_balances(table.items())


@pytest.mark.parametrize("seed", range(20))
def test_replay_reads_only_touched_accounts_yet_gives_the_whole_file(seed: int) -> None:
    """Against a decode-everything oracle: payments to new accounts (records inserted),
    accounts emptied (records removed), the first and last records, several payments of one
    account in a row."""
    rng = random.Random(seed)
    keys = payer_keys(6)
    filler = {rng.randbytes(32): rng.randint(1, 50) for _ in range(rng.randint(0, 40))}
    shares = {key.public: 1000 + rng.randint(0, 100) for key in keys}
    shares[keys[0].public] += TOTAL_SUPPLY - sum(filler.values()) - sum(shares.values())
    before = encode_balances([*filler.items(), *shares.items()])
    table = dict(shares)
    txs = []
    for i in range(rng.randint(1, 30)):
        payer = rng.choice(keys)
        others = [k.public for k in keys if k is not payer]
        payee = rng.choice([*others, rng.randbytes(32), bytes(32), b"\xff" * 32])
        funds = table[payer.public]
        if not funds:
            continue
        amount = funds if rng.random() < 0.2 else rng.randint(1, funds)  # emptied: removed
        txs.append(Transaction.create(payer, payee, amount, 1_700_000_000_000 + i))
        table[payer.public] -= amount
        if payee in table:
            table[payee] += amount
    assert replay(before, txs) == oracle(before, txs)


def record(number: int, signers: list[int], keys: list[KeyPair]) -> PointerRecord:
    state = hashlib.sha256(b"state %d" % number).digest()
    statement = Statement(NETWORK, number, state, hashlib.sha256(b"ih %d" % number).digest())
    return certified_record(statement, hashlib.sha1(b"%d" % number).digest(), keys, signers)


def test_the_client_follows_only_majority_certificates_of_its_quorum() -> None:
    keys = server_keys(3)
    quorum = [k.public for k in keys]
    good = record(5, [0, 2], keys)
    minority = record(9, [1], keys)  # a lone server claims a later round
    chosen = choose_certified({quorum[0]: good, quorum[1]: minority}, quorum, NETWORK)
    assert chosen is not None and chosen.round == 5 and chosen.signers == (0, 2)
    assert choose_certified({quorum[1]: minority}, quorum, NETWORK) is None
    # A certificate made with keys outside .keys, even a "majority" of them, is refused.
    strangers = server_keys(6)[3:]
    forged = record(12, [0, 1, 2], strangers)
    assert choose_certified({quorum[0]: forged, quorum[2]: good}, quorum, NETWORK).round == 5  # type: ignore[union-attr]
    # Another network's certified record does not count.
    assert choose_certified({quorum[0]: good}, quorum, bytes(32)) is None
    # Uncertified records are not followed, however many agree.
    bare = PointerRecord(
        NETWORK, 20, good.state_root, good.infohash, good.infohash_v2, certificate=b""
    )
    assert choose_certified(dict.fromkeys(quorum, bare), quorum, NETWORK) is None
    assert Certificate.from_bytes(good.certificate).signatures[0][0] == 0


def test_an_item_signed_by_a_key_outside_the_quorum_is_refused() -> None:
    keys = server_keys(3)
    stranger = server_keys(4)[3]
    value = encode_record(record(5, [0, 1], keys))
    signature = stranger.sign(signed_bytes(b"scryp1", 1, value))
    item = SignedItem(stranger.public, b"scryp1", 1, value, signature)
    with pytest.raises(UnknownKey):
        verify_item(item, [k.public for k in keys])
