"""Replay rounds' transactions onto a verified balances file: incremental sync, and a
server filling in the outcomes of the rounds it skipped by catching up
(protocol §10.4, §6.5). Pure.

A round's ``transactions`` file holds only the payments the servers accepted, in log order,
so replaying them needs no clock and no duplicate window: each must carry a valid signature,
move at least 1 scryp between two different accounts, and find the payer's funds sufficient.
Anything else means the file is not what the servers accepted (MalformedInput/BadSignature),
and the final state must give the certified state root anyway (protocol §4.4.3).

Only the accounts the transactions touch are read (one bisection each, ``lookup``), and the
file after them is one ``apply_changes``: O(k log n) for k touched accounts plus one copy of
the file. Decoding every record into a dict cost 23 s of a one-round incremental sync at 10M
accounts, where the transfer took 0.2 s (docs/BENCHMARKS.md, client sync at 10M).
"""

from __future__ import annotations

from collections.abc import Iterable

from scryp.core.balances import lookup
from scryp.core.buckets import state_root
from scryp.core.changes import apply_changes, encode_changes
from scryp.core.tx import Transaction
from scryp.errors import BadSignature, MalformedInput


def replay(balances_file: bytes, transactions: Iterable[Transaction]) -> bytes:
    """The balances file (canonical: a verified one) after applying ``transactions`` in
    order."""
    touched: dict[bytes, int] = {}  # account -> balance now, of every account touched

    def balance(account: bytes) -> int:
        found = touched.get(account)
        return lookup(balances_file, account) if found is None else found

    for tx in transactions:
        if not tx.signature_valid():
            raise BadSignature(f"{tx.describe()}: bad signature in a round's transactions")
        if tx.amount < 1 or tx.payer == tx.payee:
            raise MalformedInput(f"{tx.describe()}: not a payment a server would accept")
        funds = balance(tx.payer)
        if funds < tx.amount:
            raise MalformedInput(f"{tx.describe()}: payer has {funds}, replay cannot apply it")
        touched[tx.payer] = funds - tx.amount
        touched[tx.payee] = balance(tx.payee) + tx.amount
    # Balance 0 leaves the file (§4.1); an overflow is impossible (§4.3) and would fail here.
    return apply_changes(balances_file, encode_changes(touched.items()))


def replay_to(balances_file: bytes, transactions: Iterable[Transaction], expect: bytes) -> bytes:
    """``replay``, then require the result's root (protocol §4.4.3) to be the certified
    state root ``expect``."""
    result = replay(balances_file, transactions)
    if state_root(result) != expect:
        raise MalformedInput("replayed rounds do not give the certified state root")
    return result
