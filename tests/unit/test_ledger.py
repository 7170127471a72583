"""Ledger rules (§6), against a naive dict-based reference ledger written from the spec."""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field

import nacl.exceptions
import nacl.signing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scryp.core.balances import RECORD, TOTAL_SUPPLY
from scryp.core.buckets import BUCKET_BITS, leaf_hash, merkle_root, split
from scryp.core.changes import apply_changes, decode_changes
from scryp.core.genesis import Genesis
from scryp.core.ledger import Ledger, Outcome, Reason, precheck, precheck_all, precheck_fields
from scryp.core.tx import Transaction
from scryp.crypto import KeyPair

WINDOW_MS = 5_000
KEYS = [KeyPair.from_seed(hashlib.sha256(b"ledger-test-%d" % i).digest()) for i in range(4)]
STRANGER = hashlib.sha256(b"an account nobody funded").digest()


@dataclass
class ReferenceLedger:
    """Protocol §6 in the plainest Python: a dict, a loop, nothing clever."""

    balances: dict[bytes, int]
    window_ms: int
    stamp_ms: int = 0
    seen: dict[bytes, int] = field(default_factory=dict)

    def apply(self, raws: list[bytes], stamp_ms: int) -> list[str]:
        self.stamp_ms = max(self.stamp_ms, stamp_ms)
        stamp = self.stamp_ms
        self.seen = {i: t for i, t in self.seen.items() if t >= stamp - self.window_ms}
        results = []
        for raw in raws:
            timestamp, amount = struct.unpack(">QI", raw[:12])
            payee, payer, signature = raw[12:44], raw[44:76], raw[76:]
            try:
                nacl.signing.VerifyKey(payer).verify(raw[:76], signature)
                signed = True
            except (nacl.exceptions.BadSignatureError, ValueError):
                signed = False
            tx_id = hashlib.sha256(raw).digest()
            if not signed:
                results.append("bad signature")
            elif amount == 0:
                results.append("amount is zero")
            elif payer == payee:
                results.append("payer and payee are the same account")
            elif abs(timestamp - stamp) > self.window_ms:
                results.append("timestamp outside the accepted window")
            elif tx_id in self.seen:
                results.append("duplicate of a recent transaction")
            else:
                self.seen[tx_id] = timestamp
                if self.balances.get(payer, 0) < amount:
                    results.append("insufficient funds")
                else:
                    self.balances[payer] -= amount
                    self.balances[payee] = self.balances.get(payee, 0) + amount
                    results.append("accepted")
        return results

    def flat(self) -> bytes:
        """The balances file (§4.1) of this ledger, written out by hand."""
        return b"".join(
            account + balance.to_bytes(4, "big")
            for account, balance in sorted(self.balances.items())
            if balance
        )


def describe(outcome: Outcome) -> str:
    return "accepted" if outcome.accepted else str(outcome.reason)


def check_invariants(
    ledger: Ledger, accepted_ids: set[bytes], batch: list[Transaction], outcomes: list[Outcome]
) -> None:
    """What must hold after every apply: supply, file order, no payment applied twice."""
    ledger.check()
    assert ledger.total_supply() == TOTAL_SUPPLY
    file = ledger.balances_file()
    records = list(RECORD.iter_unpack(file))
    ids = [account for account, _ in records]
    assert ids == sorted(set(ids))
    assert all(balance != 0 for _, balance in records)
    for tx, outcome in zip(batch, outcomes, strict=True):
        if outcome.accepted:
            assert tx.tx_id not in accepted_ids, "a payment was applied twice"
            accepted_ids.add(tx.tx_id)


tx_specs = st.tuples(
    st.integers(0, len(KEYS) - 1),  # payer
    st.integers(0, len(KEYS)),  # payee (the last one is an unfunded stranger)
    st.sampled_from([0, 1, 2, 1000, 2**20, 2**31, 2**32 - 1]) | st.integers(0, 5000),
    st.integers(-7_000, 7_000),  # timestamp offset from the batch stamp
    st.sampled_from(["fresh", "fresh", "fresh", "replay", "forged"]),
)


@settings(max_examples=150, deadline=None)
@given(
    shares=st.lists(st.integers(1, 2**30), min_size=len(KEYS) - 1, max_size=len(KEYS) - 1),
    batches=st.lists(
        st.tuples(st.integers(-3_000, 8_000), st.lists(tx_specs, max_size=12)), max_size=8
    ),
)
def test_apply_matches_the_reference_ledger(
    shares: list[int], batches: list[tuple[int, list[tuple[int, int, int, int, str]]]]
) -> None:
    allocation = {key.public: share for key, share in zip(KEYS, shares, strict=False)}
    allocation[KEYS[-1].public] = TOTAL_SUPPLY - sum(shares)
    genesis = Genesis.from_allocations(allocation)
    ledger = Ledger.from_genesis(genesis, window_ms=WINDOW_MS)
    reference = ReferenceLedger(dict(allocation), WINDOW_MS)
    assert ledger.balances_file() == reference.flat() == genesis.balances_file
    stamp = 1_700_000_000_000
    history: list[Transaction] = []
    accepted_ids: set[bytes] = set()
    for stamp_step, specs in batches:
        stamp += stamp_step  # may go backwards: a new leader with a slower clock
        batch: list[Transaction] = []
        for payer, payee, amount, offset, kind in specs:
            if kind == "replay" and history:
                batch.append(history[(payer * 7 + amount) % len(history)])
                continue
            payee_id = KEYS[payee].public if payee < len(KEYS) else STRANGER
            tx = Transaction.create(KEYS[payer], payee_id, amount, max(0, stamp + offset))
            if kind == "forged":
                raw = bytearray(tx.raw)
                raw[100] ^= 1
                tx = Transaction.decode(bytes(raw))
            batch.append(tx)
        history.extend(batch)
        expected = reference.apply([tx.raw for tx in batch], stamp)
        outcomes = ledger.apply(batch, stamp)
        assert [describe(o) for o in outcomes] == expected
        assert ledger.balances_file() == reference.flat()
        check_invariants(ledger, accepted_ids, batch, outcomes)


# Ids from a few 16-bit prefixes (buckets, §4.4.2) so that payments insert, change and empty
# records inside shared buckets, plus the first and last buckets' edges.
_PREFIXES = [b"\x00\x00", b"\x00\x01", b"\x7f\xff", b"\xff\xff"]
account_ids = st.builds(
    lambda prefix, rest: prefix + rest,
    st.sampled_from(_PREFIXES),
    st.binary(min_size=30, max_size=30),
)


def unsigned(payer: bytes, payee: bytes, amount: int, timestamp_ms: int) -> Transaction:
    """A payment whose signature the test vouches for (``prechecked``): any account pays."""
    raw = struct.pack(">QI32s32s64s", timestamp_ms, amount, payee, payer, b"\x00" * 64)
    return Transaction.decode(raw)


@settings(max_examples=25, deadline=None)
@given(
    ids=st.lists(account_ids, min_size=2, max_size=12, unique=True),
    batches=st.lists(
        st.lists(st.tuples(st.integers(0, 11), st.integers(0, 12), st.integers(1, 2**31))),
        max_size=6,
    ),
)
def test_incremental_state_root_matches_the_naive_root(
    ids: list[bytes], batches: list[list[tuple[int, int, int]]]
) -> None:
    """§4.4.3: the root a server seals, updated bucket by bucket, is merkle_root over the
    buckets of the naive ledger's flat file, after every batch."""
    stranger = b"\x7f\xff" + b"\x55" * 30  # unfunded: payments create it in a shared bucket
    accounts = [*ids, stranger]
    allocation = {ids[0]: TOTAL_SUPPLY - (len(ids) - 1), **{i: 1 for i in ids[1:]}}
    ledger = Ledger.from_genesis(Genesis.from_allocations(allocation))
    reference = ReferenceLedger(dict(allocation), WINDOW_MS)

    def naive_root() -> bytes:
        return merkle_root([leaf_hash(b) for b in split(reference.flat(), BUCKET_BITS)])

    assert ledger.state_root() == naive_root()
    for number, specs in enumerate(batches):
        stamp = NOW + number
        txs = [
            unsigned(accounts[p % len(accounts)], accounts[q % len(accounts)], amount, stamp)
            for p, q, amount in specs
        ]
        outcomes = ledger.apply(txs, stamp, prechecked=[precheck_fields(tx) for tx in txs])
        for tx, outcome in zip(txs, outcomes, strict=True):  # the reference: a dict of ints
            if outcome.accepted:
                reference.balances[tx.payer] -= tx.amount
                reference.balances[tx.payee] = reference.balances.get(tx.payee, 0) + tx.amount
            elif outcome.reason is Reason.INSUFFICIENT_FUNDS:
                assert reference.balances.get(tx.payer, 0) < tx.amount
        assert ledger.state_root() == naive_root()


@settings(max_examples=40, deadline=None)
@given(
    ids=st.lists(account_ids, min_size=2, max_size=10, unique=True),
    rounds=st.lists(
        st.lists(  # a round: its batches, each with whether a state root follows it
            st.tuples(
                st.lists(st.tuples(st.integers(0, 10), st.integers(0, 10), st.integers(1, 2**31))),
                st.booleans(),
            ),
            max_size=3,
        ),
        min_size=1,
        max_size=5,
    ),
)
def test_take_changes_turns_each_round_into_the_next(
    ids: list[bytes], rounds: list[list[tuple[list[tuple[int, int, int]], bool]]]
) -> None:
    """protocol §4.4.4: the previous seal's balances file with the round's ``changes``
    applied is the new balances file, round after round, whether or not state roots were
    computed in between (they fold the touched accounts into the changes); each record holds
    the account's balance now, only accounts a payment moved are named, and asking again
    with no payment gives an empty file."""
    stranger = b"\x7f\xff" + b"\x55" * 30  # unfunded: payments create (and may empty) it
    accounts = [*ids, stranger]
    allocation = {ids[0]: TOTAL_SUPPLY - (len(ids) - 1), **{i: 1 for i in ids[1:]}}
    ledger = Ledger.from_genesis(Genesis.from_allocations(allocation))
    assert ledger.take_changes() == b""  # the genesis is round 0's balances: nothing changed
    stamp = NOW
    for batches in rounds:
        previous = ledger.balances_file()
        before = {a: ledger.balance(a) for a in accounts}
        moved: set[bytes] = set()
        for specs, root_after in batches:
            stamp += 1
            txs = [
                unsigned(accounts[p % len(accounts)], accounts[q % len(accounts)], amount, stamp)
                for p, q, amount in specs
            ]
            outcomes = ledger.apply(txs, stamp, prechecked=[precheck_fields(tx) for tx in txs])
            for tx, outcome in zip(txs, outcomes, strict=True):
                if outcome.accepted:
                    moved |= {tx.payer, tx.payee}
            if root_after:
                ledger.state_root()
        changes = ledger.take_changes()
        assert apply_changes(previous, changes) == ledger.balances_file()
        records = decode_changes(changes)
        assert all(balance == ledger.balance(account) for account, balance in records)
        named = {account for account, _ in records}
        assert {a for a in accounts if ledger.balance(a) != before[a]} <= named <= moved
        assert ledger.take_changes() == b""
        ledger.check()


@pytest.fixture
def funded() -> Ledger:
    return Ledger.from_genesis(
        Genesis.from_allocations({KEYS[0].public: 1_000, KEYS[1].public: TOTAL_SUPPLY - 1_000}),
        window_ms=WINDOW_MS,
    )


NOW = 1_700_000_000_000


def pay(
    payer: int, amount: int, timestamp_ms: int = NOW, payee: bytes | None = None
) -> Transaction:
    return Transaction.create(
        KEYS[payer], payee if payee is not None else KEYS[2].public, amount, timestamp_ms
    )


def test_each_rejection_reason(funded: Ledger) -> None:
    good = pay(0, 10)
    forged = Transaction.decode(good.raw[:-1] + bytes([good.raw[-1] ^ 1]))
    cases = [
        (good, None),
        (good, Reason.DUPLICATE),
        (forged, Reason.BAD_SIGNATURE),
        (pay(0, 0), Reason.ZERO_AMOUNT),
        (pay(0, 1, payee=KEYS[0].public), Reason.SELF_PAYMENT),
        (pay(0, 1, NOW - WINDOW_MS - 1), Reason.TIMESTAMP_OUT_OF_WINDOW),
        (pay(0, 1, NOW + WINDOW_MS + 1), Reason.TIMESTAMP_OUT_OF_WINDOW),
        (pay(0, 991), Reason.INSUFFICIENT_FUNDS),
        (pay(0, 990), None),
        (pay(0, 1, NOW + 1), Reason.INSUFFICIENT_FUNDS),
    ]
    outcomes = funded.apply([tx for tx, _ in cases], NOW)
    assert [o.reason for o in outcomes] == [reason for _, reason in cases]
    assert [o.accepted for o in outcomes] == [r is None for _, r in cases]
    assert funded.balance(KEYS[0].public) == 0
    assert funded.balance(KEYS[2].public) == 1_000
    assert funded.account_count() == 2
    funded.check()


def test_window_edges_are_inclusive(funded: Ledger) -> None:
    early, late = pay(0, 1, NOW - WINDOW_MS), pay(0, 1, NOW + WINDOW_MS)
    assert funded.apply([early, late], NOW) == [Outcome(True), Outcome(True)]


def test_a_rejected_payment_cannot_be_replayed_into_acceptance(funded: Ledger) -> None:
    big = pay(0, 2_000)
    assert funded.apply([big], NOW)[0].reason is Reason.INSUFFICIENT_FUNDS
    top_up = Transaction.create(KEYS[1], KEYS[0].public, 5_000, NOW)
    assert funded.apply([top_up, big], NOW + 1)[1].reason is Reason.DUPLICATE


def test_the_window_never_moves_back(funded: Ledger) -> None:
    tx = pay(0, 5)
    assert funded.apply([tx], NOW)[0].accepted
    # Ten seconds on, the id has been forgotten and the timestamp is stale...
    assert funded.apply([tx], NOW + 10_000)[0].reason is Reason.TIMESTAMP_OUT_OF_WINDOW
    # ...and a leader stamping an earlier time cannot bring it back: stamps are made monotonic.
    assert funded.apply([tx], NOW)[0].reason is Reason.TIMESTAMP_OUT_OF_WINDOW
    assert funded.last_stamp_ms == NOW + 10_000


def test_advance_stamp_expires_the_window(funded: Ledger) -> None:
    funded.apply([pay(0, 5)], NOW)
    assert len(funded.recent()) == 1
    funded.advance_stamp(NOW + WINDOW_MS)
    assert len(funded.recent()) == 1
    funded.advance_stamp(NOW + WINDOW_MS + 1)
    assert funded.recent() == []


def test_prechecked_results_are_used_as_given(funded: Ledger) -> None:
    tx = pay(0, 5)
    assert precheck(tx) is None
    # A caller that checked signatures elsewhere passes the verdicts in; apply trusts them.
    outcome = funded.apply([tx], NOW, prechecked=[Reason.BAD_SIGNATURE])
    assert outcome[0].reason is Reason.BAD_SIGNATURE
    assert funded.apply([tx], NOW, prechecked=precheck_all([tx]))[0].accepted


def test_a_checkpoint_restores_the_same_future(funded: Ledger) -> None:
    first = [pay(0, 3), pay(0, 4, NOW - 100)]
    funded.apply(first, NOW)
    restored = Ledger.from_checkpoint(
        funded.balances_file(), funded.encode_window(), window_ms=WINDOW_MS
    )
    assert restored.last_stamp_ms == funded.last_stamp_ms
    assert restored.recent() == funded.recent()
    later = [first[0], pay(0, 5, NOW + 50), first[1]]
    assert restored.apply(later, NOW + 10) == funded.apply(later, NOW + 10)
    assert restored.state_root() == funded.state_root()
    restored.check()


def test_malformed_window_file_is_refused() -> None:
    from scryp.core.ledger import decode_window
    from scryp.errors import MalformedInput

    assert decode_window(bytes(8)) == (0, [])
    for size in (0, 7, 8 + 39, 8 + 41):
        with pytest.raises(MalformedInput):
            decode_window(bytes(size))
    entry = (5).to_bytes(8, "big") + bytes(32)
    with pytest.raises(MalformedInput, match="increasing"):
        decode_window(bytes(8) + entry + entry)


@settings(max_examples=40, deadline=None)
@given(
    rounds=st.lists(  # a round: stamp step (ms), then payments (payee, amount, timestamp offset)
        st.tuples(
            st.integers(0, 3 * WINDOW_MS),
            st.lists(
                st.tuples(st.integers(0, 3), st.integers(1, 3), st.integers(-6_000, 6_000)),
                max_size=6,
            ),
        ),
        min_size=1,
        max_size=8,
    ),
)
def test_a_checkpoint_window_and_the_remembered_files_since_give_each_window(
    rounds: list[tuple[int, list[tuple[int, int, int]]]],
) -> None:
    """protocol §6.4: a round that is not a checkpoint writes only its ``remembered``
    records; the checkpoint's window with every ``remembered`` file since is exactly the
    window the ledger holds at each later seal (expired, duplicate and refused payments
    included), so the full window need not be rewritten every round."""
    from scryp.core.ledger import window_at

    payer, payees = b"\x01" * 32, [bytes([2 + i]) * 32 for i in range(4)]
    ledger = Ledger.from_genesis(Genesis.from_allocations({payer: TOTAL_SUPPLY}))
    stamp = NOW
    ledger.apply([unsigned(payer, payees[0], 1, stamp)], stamp, prechecked=[None])
    checkpoint = ledger.encode_window()
    ledger.take_remembered()  # the checkpoint's round: its window holds these
    remembered: list[bytes] = []
    for step, specs in rounds:
        stamp += step
        txs = [unsigned(payer, payees[p], amount, stamp + dt) for p, amount, dt in specs]
        txs += txs[:1]  # a replay inside the same batch: refused, not remembered twice
        ledger.apply(txs, stamp, prechecked=[precheck_fields(tx) for tx in txs])
        ledger.advance_stamp(stamp)  # the seal
        remembered.append(ledger.take_remembered())
        assert window_at(checkpoint, remembered, WINDOW_MS) == ledger.encode_window()


def test_window_at_refuses_a_stamp_that_goes_back() -> None:
    from scryp.core.ledger import window_at
    from scryp.errors import MalformedInput

    later, earlier = struct.pack(">Q", NOW), struct.pack(">Q", NOW - 1)
    with pytest.raises(MalformedInput, match="stamp"):
        window_at(later, [earlier], WINDOW_MS)
