"""Replay rounds' transactions onto a verified balances file: incremental sync, and a
server filling in the outcomes of the rounds it skipped by catching up
(protocol §10.4, §6.5). Pure.

A round's ``transactions`` file holds only the payments the servers accepted, in log order,
so replaying them needs no clock and no duplicate window: each must carry a valid signature,
move at least 1 scryp between two different accounts, and find the payer's funds sufficient.
Anything else means the file is not what the servers accepted (MalformedInput/BadSignature),
and the final state must give the certified state root anyway (protocol §4.4.3).
"""

from __future__ import annotations

from collections.abc import Iterable

from scryp.core.balances import decode_balances, encode_balances
from scryp.core.buckets import state_root
from scryp.core.tx import Transaction
from scryp.errors import BadSignature, MalformedInput


def replay(balances_file: bytes, transactions: Iterable[Transaction]) -> bytes:
    """The balances file after applying ``transactions`` in order."""
    table = dict(decode_balances(balances_file))
    for tx in transactions:
        if not tx.signature_valid():
            raise BadSignature(f"{tx.describe()}: bad signature in a round's transactions")
        if tx.amount < 1 or tx.payer == tx.payee:
            raise MalformedInput(f"{tx.describe()}: not a payment a server would accept")
        funds = table.get(tx.payer, 0)
        if funds < tx.amount:
            raise MalformedInput(f"{tx.describe()}: payer has {funds}, replay cannot apply it")
        table[tx.payer] = funds - tx.amount
        table[tx.payee] = table.get(tx.payee, 0) + tx.amount
    return encode_balances(table.items())


def replay_to(balances_file: bytes, transactions: Iterable[Transaction], expect: bytes) -> bytes:
    """``replay``, then require the result's root (protocol §4.4.3) to be the certified
    state root ``expect``."""
    result = replay(balances_file, transactions)
    if state_root(result) != expect:
        raise MalformedInput("replayed rounds do not give the certified state root")
    return result
