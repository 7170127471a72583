"""The chaos checker (protocol §11.4) on planted records: each kind of wrong the bank test
exists to catch is reported, and an honest record passes."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

from scryp.chaos.checker import FinalAnswer, Observed, RoundOnDisk, check
from scryp.chaos.run import rounds_on_disk
from scryp.chaos.workload import History, Kind, Seen
from scryp.core import snapshot
from scryp.core.balances import TOTAL_SUPPLY, encode_balances
from scryp.core.changes import encode_changes
from scryp.core.genesis import Genesis
from scryp.core.raft.entries import SnapshotMeta
from scryp.core.tx import Transaction
from scryp.crypto import KeyPair
from scryp.server.rounds import RoundStore

ALICE, BOB = (KeyPair.from_seed(hashlib.sha256(n).digest()) for n in (b"alice", b"bob"))
GENESIS = Genesis.single(ALICE.public).balances_file


def round_on_disk(number: int, balances: dict[bytes, int], txs: list[Transaction]) -> RoundOnDisk:
    encoded = encode_balances(sorted((a, b) for a, b in balances.items() if b))
    return RoundOnDisk(
        number,
        hashlib.sha256(encoded).digest(),
        sum(balances.values()),
        b"".join(t.encode() for t in txs),
        True,
    )


def honest() -> tuple[dict[int, list[RoundOnDisk]], History, Transaction, Transaction]:
    pay = Transaction.create(ALICE, BOB.public, 10, 1_000)
    refused = Transaction.create(BOB, ALICE.public, 999, 1_001)  # bob has 10 then
    history = History()
    history.record(pay, Kind.PAY).seen.append(Seen(0, 1.0, "accepted", "", 1, True))
    history.record(refused, Kind.PAY).seen.append(
        Seen(1, 1.0, "rejected", "insufficient funds", 1, True)
    )
    r1 = round_on_disk(1, {ALICE.public: TOTAL_SUPPLY - 10, BOB.public: 10}, [pay])
    return {0: [r1], 1: [r1]}, history, pay, refused


def observed(history: History, final: dict[bytes, dict[int, FinalAnswer]]) -> Observed:
    return Observed(history, final, {0: (1, "h"), 1: (1, "h")}, [0.0, 1.0, 2.5])


def answers(**by_server: FinalAnswer) -> dict[int, FinalAnswer]:
    return {int(k[1:]): v for k, v in by_server.items()}


def test_an_honest_record_passes() -> None:
    copies, history, pay, refused = honest()
    final = {
        pay.tx_id: answers(s0=FinalAnswer(200, "accepted"), s1=FinalAnswer(200, "accepted")),
        refused.tx_id: answers(s0=FinalAnswer(200, "rejected"), s1=FinalAnswer(200, "rejected")),
    }
    report = check(GENESIS, copies, observed(history, final))
    assert report.ok, report.violations
    assert (report.rounds, report.payments_applied, report.longest_stall_s) == (1, 1, 1.5)


def test_an_outcome_that_lies_is_caught() -> None:
    copies, history, pay, _ = honest()
    history.sent[pay.tx_id].seen.append(Seen(2, 3.0, "rejected", "timestamp", 5, True))
    report = check(GENESIS, copies, observed(history, {}))
    assert "outcome lied" in report.violations


def test_a_forgotten_outcome_is_caught() -> None:
    copies, history, pay, _ = honest()
    final = {pay.tx_id: answers(s0=FinalAnswer(200, "accepted"), s1=FinalAnswer(404))}
    assert "outcome forgotten" in check(GENESIS, copies, observed(history, final)).violations


def test_a_404_before_a_servers_horizon_is_unknown_not_forgotten() -> None:
    """A server that caught up from a round after the payment's says it does not know
    (protocol §6.5); one whose horizon is earlier has forgotten it."""
    copies, history, pay, _ = honest()
    final = {pay.tx_id: answers(s0=FinalAnswer(200, "accepted"), s1=FinalAnswer(404))}
    seen = Observed(history, final, {0: (1, "h"), 1: (1, "h")}, [], {1: 1_000 + 5_001})
    report = check(GENESIS, copies, seen)
    assert report.ok and report.unknown_after_catch_up == 1
    early = Observed(history, final, {0: (1, "h"), 1: (1, "h")}, [], {1: 1_000 - 5_000})
    assert "outcome forgotten" in check(GENESIS, copies, early).violations


def test_an_overdraft_and_a_bad_replay_are_caught() -> None:
    _, history, pay, refused = honest()
    wrong = round_on_disk(1, {ALICE.public: TOTAL_SUPPLY - 10, BOB.public: 10}, [pay, refused])
    assert "overdraft" in check(GENESIS, {0: [wrong]}, observed(history, {})).violations
    minted = round_on_disk(1, {ALICE.public: TOTAL_SUPPLY - 10, BOB.public: 11}, [pay])
    assert "replay differs" in check(GENESIS, {0: [minted]}, observed(history, {})).violations


def test_differing_copies_and_a_changed_supply_are_caught() -> None:
    copies, history, pay, _ = honest()
    minted = round_on_disk(1, {ALICE.public: TOTAL_SUPPLY, BOB.public: 10}, [pay])
    report = check(GENESIS, {0: copies[0], 1: [minted]}, observed(history, {}))
    assert {"round copies differ", "supply"} <= set(report.violations)


def test_two_payments_of_a_double_spend_group_applied_are_caught() -> None:
    first = Transaction.create(ALICE, BOB.public, 5, 2_000)
    second = Transaction.create(ALICE, BOB.public, 6, 2_001)
    history = History()
    history.record(first, Kind.DOUBLE, group=3)
    history.record(second, Kind.DOUBLE, group=3)
    r1 = round_on_disk(1, {ALICE.public: TOTAL_SUPPLY - 11, BOB.public: 11}, [first, second])
    assert "double spend" in check(GENESIS, {0: [r1]}, observed(history, {})).violations


def test_a_payment_applied_twice_and_a_gap_in_rounds_are_caught() -> None:
    _, history, pay, _ = honest()
    r1 = round_on_disk(1, {ALICE.public: TOTAL_SUPPLY - 10, BOB.public: 10}, [pay])
    r2 = round_on_disk(2, {ALICE.public: TOTAL_SUPPLY - 20, BOB.public: 20}, [pay])
    assert "applied twice" in check(GENESIS, {0: [r1, r2]}, observed(history, {})).violations
    r3 = round_on_disk(3, {ALICE.public: TOTAL_SUPPLY - 10, BOB.public: 10}, [])
    assert "rounds missing" in check(GENESIS, {0: [r1, r3]}, observed(history, {})).violations


def test_servers_that_end_apart_are_caught() -> None:
    copies, history, _, _ = honest()
    seen = Observed(history, {}, {0: (1, "h"), 1: (2, "g")}, [])
    assert "final state" in check(GENESIS, copies, seen).violations


def test_a_cluster_that_stopped_certifying_does_not_pass() -> None:
    """Review finding: a stall running to the end of the load, a server that does not answer
    at the end, and no agreement after healing are each caught."""
    copies, history, pay, _ = honest()
    final = {pay.tx_id: answers(s0=FinalAnswer(200, "accepted"), s1=FinalAnswer(0))}
    base = {0: (1, "h"), 1: (1, "h")}
    stalled = Observed(history, {}, base, [0.0, 1.0], load_ended_s=300.0)
    assert check(GENESIS, copies, stalled).longest_stall_s == 299.0
    assert "outcome unanswered" in check(GENESIS, copies, observed(history, final)).violations
    unsettled = Observed(history, {}, base, [], settled=False)
    assert "final state" in check(GENESIS, copies, unsettled).violations


def test_unknown_balances_are_not_compared_and_changes_that_differ_are_caught() -> None:
    """A copy whose balances its server could not rebuild (no round before it on disk, not a
    checkpoint, protocol §4.4.4) is compared by its transactions only; the replay compares
    with a copy that knows them. A checkpoint whose changes disagree is a violation."""
    copies, history, _, _ = honest()
    r1 = copies[0][0]
    unknown = dataclasses.replace(r1, balances_sha256=None, supply=None)
    report = check(GENESIS, {0: [unknown], 1: [r1]}, observed(history, {}))
    assert "round copies differ" not in report.violations and report.payments_applied == 1
    wrong = dataclasses.replace(r1, balances_sha256=bytes(32))
    report = check(GENESIS, {0: [unknown], 1: [wrong]}, observed(history, {}))
    assert "replay differs" in report.violations
    report = check(GENESIS, {0: [unknown]}, observed(history, {}))
    assert "replay differs" not in report.violations and report.payments_applied == 1
    torn = dataclasses.replace(r1, changes_agree=False)
    assert "changes differ" in check(GENESIS, {0: [torn]}, observed(history, {})).violations


def test_rounds_on_disk_rebuilds_balances_from_the_newest_checkpoint(tmp_path: Path) -> None:
    """Rounds 0 and 3 hold balances; 1, 2 and 5 only changes (4 is not on disk: 5 is
    unknown); round 3's changes disagree with its balances."""
    store = RoundStore(tmp_path)
    states = [
        {ALICE.public: TOTAL_SUPPLY},
        {ALICE.public: TOTAL_SUPPLY - 10, BOB.public: 10},
        {ALICE.public: TOTAL_SUPPLY},  # bob pays everything back: his record leaves
        {ALICE.public: TOTAL_SUPPLY - 5, BOB.public: 5},
    ]

    def write(number: int, changes: dict[bytes, int], balances: dict[bytes, int] | None) -> None:
        contents = {} if balances is None else {snapshot.BALANCES: flat(balances)}
        contents[snapshot.CHANGES] = encode_changes(changes.items())
        contents[snapshot.TRANSACTIONS] = b""
        contents[snapshot.WINDOW if balances is not None else snapshot.REMEMBERED] = b""
        store.write(SnapshotMeta(number, 1, number, 0, bytes(32)), contents)

    write(0, {}, states[0])
    write(1, {ALICE.public: TOTAL_SUPPLY - 10, BOB.public: 10}, None)
    write(2, {ALICE.public: TOTAL_SUPPLY, BOB.public: 0}, None)
    write(3, {BOB.public: 7}, states[3])  # not what its balances say
    write(5, {BOB.public: 6}, None)
    held = rounds_on_disk(store)
    assert [r.round for r in held] == [0, 1, 2, 3, 5]
    expected = [hashlib.sha256(flat(s)).digest() for s in states]
    assert [r.balances_sha256 for r in held[:4]] == expected
    assert [r.supply for r in held] == [TOTAL_SUPPLY] * 4 + [None]
    assert held[4].balances_sha256 is None
    assert [r.changes_agree for r in held] == [True, True, True, False, True]


def flat(balances: dict[bytes, int]) -> bytes:
    return encode_balances(sorted((a, b) for a, b in balances.items() if b))
