"""The client operations' pure parts (protocol §10.5–§10.7): the checks before sending, the
history assembled from a real data directory, the status of each pointer, and the JSON
shapes both front ends print or serve (their keys and order are the command line's
``--json`` output and the wallet page's API)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from scryp.client.operations import (
    BadArguments,
    History,
    InsufficientFunds,
    PayResult,
    ServerState,
    Status,
    VerifiedBalance,
    assemble_history,
    check_funds,
    check_payee,
    parse_account,
    parse_amount,
    pointer_states,
)
from scryp.client.store import Store, read_balance
from scryp.client.verify import VerifiedRound, choose_certified
from scryp.core import snapshot
from scryp.core.balances import TOTAL_SUPPLY, encode_balances
from scryp.core.buckets import state_root
from scryp.core.certificate import Statement
from scryp.core.pointer import PointerRecord
from scryp.core.tx import AMOUNT_MAX, Transaction
from scryp.crypto import KeyPair
from scryp.errors import BadSignature
from tests.support.synthetic import certified_record, payer_keys, server_keys

ALICE, BOB, CAROL = payer_keys(3)
KEYS = server_keys(3)
QUORUM = [k.public for k in KEYS]
NETWORK = hashlib.sha256(b"operations test network").digest()

BALANCE_KEYS = [
    "account",
    "balance",
    "round",
    "state_root",
    "infohash",
    "network",
    "sync",
    "fell_back",
    "bytes_downloaded",
    "seconds",
    "signers",
    "servers",
    "verified_by",
]


def record(number: int, signers: list[int]) -> PointerRecord:
    state = hashlib.sha256(b"state %d" % number).digest()
    statement = Statement(NETWORK, number, state, hashlib.sha256(b"v2 %d" % number).digest())
    return certified_record(statement, hashlib.sha1(b"v1 %d" % number).digest(), KEYS, signers)


def verified(number: int = 5, signers: tuple[int, ...] = (0, 2)) -> VerifiedRound:
    return VerifiedRound(record(number, list(signers)), signers, len(QUORUM), (0, 1, 2))


def at(balance: int | None, account: bytes = ALICE.public) -> VerifiedBalance:
    return VerifiedBalance(account, balance, verified(), "incremental", "", 1234, 0.12345)


def test_what_the_user_typed_is_checked_before_anything_is_sent() -> None:
    assert parse_amount("1") == 1 and parse_amount(str(AMOUNT_MAX)) == AMOUNT_MAX
    for text in ("0", "-3", str(AMOUNT_MAX + 1), "1.5", "ten", ""):
        with pytest.raises(BadArguments, match="amount"):
            parse_amount(text)
    assert parse_account(ALICE.account_id.upper()) == ALICE.public
    for text in ("not-hex", ALICE.account_id[:-2], ALICE.account_id + "00"):
        with pytest.raises(BadArguments, match="64 hex digits"):
            parse_account(text)
    check_payee(ALICE.public, BOB.public)
    with pytest.raises(BadArguments, match="same account"):
        check_payee(ALICE.public, ALICE.public)


def test_a_payment_above_the_verified_balance_is_refused_with_where_it_was_read() -> None:
    check_funds(at(100), 100)  # exactly the balance: allowed
    with pytest.raises(InsufficientFunds) as refused:
        check_funds(at(99), 100)
    assert str(refused.value) == (
        "insufficient funds: 99 scryp at round 5 (verified by 2 of 3), paying 100; nothing was sent"
    )
    with pytest.raises(InsufficientFunds, match="insufficient funds: 0 scryp"):
        check_funds(at(None), 1)  # no balance read (an absent account has none)


def write_round(store: Store, number: int, txs: list[Transaction], balances: bytes = b"") -> None:
    round_dir = store.round_dir(number)
    round_dir.mkdir(parents=True, exist_ok=True)
    (round_dir / snapshot.TRANSACTIONS).write_bytes(b"".join(tx.raw for tx in txs))
    if balances:
        (round_dir / snapshot.BALANCES).write_bytes(balances)


def pay(payer: KeyPair, payee: KeyPair, amount: int, at_ms: int) -> Transaction:
    return Transaction.create(payer, payee.public, amount, 1_700_000_000_000 + at_ms)


def test_history_is_the_accounts_payments_in_the_synced_rounds_oldest_first(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path, NETWORK)
    first = [pay(ALICE, BOB, 700, 1), pay(ALICE, CAROL, 5, 2)]  # the second is not Bob's
    second = [pay(BOB, CAROL, 200, 3)]
    write_round(store, 3, first)
    write_round(store, 4, [])
    held = encode_balances(
        [(ALICE.public, TOTAL_SUPPLY - 705), (BOB.public, 500), (CAROL.public, 205)]
    )
    write_round(store, 5, second, held)
    before_holding = assemble_history(store, BOB.public, at(None, BOB.public))
    assert before_holding.at.balance is None  # nothing held yet: no whole state to read
    store.hold(5, state_root(held))

    history = assemble_history(store, BOB.public, at(None, BOB.public))
    assert history.at.balance == 500 and history.at.verified.round == 5
    assert [(p.round, p.outgoing, p.amount, p.counterparty) for p in history.payments] == [
        (3, False, 700, ALICE.public),
        (5, True, 200, CAROL.public),
    ]
    assert [p.tx_id for p in history.payments] == [first[0].tx_id, second[0].tx_id]
    shown = history.as_json()
    assert list(shown) == [*BALANCE_KEYS, "payments", "from_round", "archive_error"]
    assert shown["from_round"] == 3 and shown["archive_error"] is None  # no archive asked
    assert shown["balance"] == 500 and shown["account"] == BOB.account_id
    assert shown["payments"][0] == {
        "round": 3,
        "id": first[0].tx_id.hex(),
        "timestamp_ms": first[0].timestamp_ms,
        "direction": "in",
        "amount": 700,
        "counterparty": ALICE.account_id,
    }
    # The wallet page shows the newest first, at most so many.
    newest = history.as_json(newest_first=True, limit=1)["payments"]
    assert [(p["direction"], p["amount"]) for p in newest] == [("out", 200)]


def test_a_held_balance_is_read_in_place_present_absent_or_from_an_empty_file(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path, NETWORK)
    ids = sorted([ALICE.public, BOB.public, CAROL.public])
    held_file = encode_balances([(ids[0], 7), (ids[2], TOTAL_SUPPLY - 7)])
    write_round(store, 5, [], held_file)
    held = store.hold(5, state_root(held_file))
    assert read_balance(held, None) is None
    assert [read_balance(held, account) for account in ids] == [7, 0, TOTAL_SUPPLY - 7]
    assert read_balance(held, bytes(32)) == 0 and read_balance(held, b"\xff" * 32) == 0
    held.balances_path.write_bytes(b"")  # no account at all: nothing to map
    assert read_balance(held, ids[0]) == 0


def test_a_verified_balance_says_by_how_many_servers_and_how_it_was_synced() -> None:
    shown = at(42).as_json()
    assert list(shown) == BALANCE_KEYS
    assert shown["verified_by"] == "2 of 3 servers" and shown["signers"] == [0, 2]
    assert shown["seconds"] == 0.123 and shown["fell_back"] is None
    assert shown["round"] == 5 and shown["servers"] == 3 and shown["balance"] == 42


def test_each_pointer_is_shown_against_the_certified_round() -> None:
    good, ahead = record(5, [0, 2]), record(9, [1])  # server 1's lone claim is a minority
    records = {QUORUM[0]: good, QUORUM[1]: ahead}
    refused = {QUORUM[2]: BadSignature("BEP 44 signature does not verify")}
    chosen = choose_certified(records, QUORUM, NETWORK)
    assert chosen is not None and chosen.round == 5
    states = pointer_states(QUORUM, records, refused, chosen)
    assert [(s.index, s.agrees, s.refused) for s in states] == [
        (0, True, None),
        (1, False, None),
        (2, False, "BEP 44 signature does not verify"),
    ]
    assert states[2].as_json() == {
        "index": 2,
        "public_key": QUORUM[2].hex(),
        "round": None,
        "state_root": None,
        "infohash": None,
        "certified": False,
        "api": None,
        "refused": "BEP 44 signature does not verify",
        "agrees": False,
    }
    # "certified" means a certificate that verifies: server 1's one-signature claim is not one.
    assert states[0].as_json()["certified"]
    assert states[0].as_json()["infohash"] == records[QUORUM[0]].infohash.hex()  # v1, 40 hex
    assert not states[1].as_json()["certified"] and states[1].as_json()["round"] == 9

    # With no certified round nothing agrees, and the status says so.
    nothing = pointer_states(QUORUM, records, {}, None)
    assert not any(s.agrees for s in nothing)
    apis = (ServerState.of("http://127.0.0.1:1", None),)
    shown = Status(3, None, nothing, apis).as_json()
    assert list(shown) == [
        "servers",
        "certified_round",
        "state_root",
        "infohash",
        "bootstrap",
        "signers",
        "agreeing",
        "pointers",
        "apis",
    ]
    assert (shown["certified_round"], shown["signers"], shown["agreeing"]) == (None, [], [])


def test_server_states_and_payment_outcomes_keep_their_json_shape() -> None:
    up = ServerState.of("http://127.0.0.1:2", {"role": "leader", "round": 8, "extra": 1})
    assert up.as_json() == {
        "api": "http://127.0.0.1:2",
        "up": True,
        "role": "leader",
        "round": 8,
        "certified_round": None,
    }
    assert ServerState.of("http://127.0.0.1:3", None).as_json()["up"] is False
    paid = PayResult(b"\x07" * 32, ALICE.public, BOB.public, 12, False, "funds", 6, "http://x:1")
    assert paid.as_json() == {
        "id": "07" * 32,
        "payer": ALICE.account_id,
        "payee": BOB.account_id,
        "amount": 12,
        "status": "rejected",
        "reason": "funds",
        "round": 6,
        "submitted_to": "http://x:1",
    }


def test_history_json_is_the_balance_json_plus_payments() -> None:
    empty = History(at(7), ())
    assert empty.as_json() == {
        **at(7).as_json(),
        "payments": [],
        "from_round": None,
        "archive_error": None,
    }


def test_a_pointer_with_a_forged_certificate_is_not_shown_certified() -> None:
    """Regression: a real server's pointer carrying a two-signature certificate made with
    other keys showed "certified": true in `client status` (the balance ignored it)."""
    state = hashlib.sha256(b"forged").digest()
    statement = Statement(NETWORK, 11, state, hashlib.sha256(b"forged v2").digest())
    forgers = server_keys(5)[3:] + server_keys(5)[:1]  # signatures at indices 0 and 1
    forged = certified_record(statement, hashlib.sha1(b"forged").digest(), forgers, [0, 1])
    assert forged.certificate
    (shown,) = [s for s in pointer_states(QUORUM, {QUORUM[1]: forged}, {}, None) if s.record]
    assert not shown.as_json()["certified"]
