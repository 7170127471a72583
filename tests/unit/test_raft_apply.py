"""Applying committed entries to the ledger (protocol §7.2): each kind does what it says.

Method: a one-account genesis, a signed payment in a payments entry, the same payment again
in a later entry (a duplicate), then a seal, whose hash must be the ledger's state root.
"""

from __future__ import annotations

import hashlib

from scryp.core.genesis import Genesis
from scryp.core.ledger import Ledger, Reason
from scryp.core.raft.apply import apply_entry
from scryp.core.raft.entries import Entry, NoOp, Payments, Seal
from scryp.core.tx import Transaction
from scryp.crypto import KeyPair


def test_entries_move_the_ledger_and_a_seal_reports_the_state_root() -> None:
    payer = KeyPair.from_seed(hashlib.sha256(b"payer").digest())
    payee = KeyPair.from_seed(hashlib.sha256(b"payee").digest())
    ledger = Ledger.from_genesis(Genesis.single(payer.public))
    genesis_hash = ledger.state_root()
    tx = Transaction.create(payer, payee.public, 1_000, timestamp_ms=10_000).encode()

    noop = apply_entry(ledger, Entry(1, 1, 10_000, NoOp()))
    assert noop.outcomes == () and noop.sealed_round is None
    assert ledger.last_stamp_ms == 10_000

    paid = apply_entry(ledger, Entry(1, 2, 10_050, Payments((tx,))))
    assert [o.accepted for o in paid.outcomes] == [True]
    assert ledger.balance(payee.public) == 1_000

    again = apply_entry(ledger, Entry(1, 3, 10_060, Payments((tx,))))
    assert [o.reason for o in again.outcomes] == [Reason.DUPLICATE]

    sealed = apply_entry(ledger, Entry(1, 4, 11_000, Seal(1)))
    assert sealed.sealed_round == 1
    assert sealed.state_root == ledger.state_root() != genesis_hash
    assert ledger.total_supply() == 2**32 - 1
