"""The server's parallel signature checks (protocol §6.1) give the verdicts ``precheck_all``
gives, in the payments' order, whatever the number of threads: a verdict merged into the
wrong place would accept a forged payment and refuse a good one."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random

import pytest

from scryp.core.ledger import Reason, precheck_all
from scryp.core.tx import Transaction
from scryp.crypto import KeyPair
from scryp.server.verify import CHUNK_TXS_MIN, Verified, precheck_parallel


def key(name: str) -> KeyPair:
    return KeyPair.from_seed(hashlib.sha256(name.encode()).digest())


def payments(count: int, rng: random.Random) -> list[Transaction]:
    """Good payments with forged ones (a flipped signature byte) at random places."""
    payer, payee = key("payer"), key("payee")
    txs = []
    for i in range(count):
        tx = Transaction.create(payer, payee.public, 1 + i, 1_700_000_000_000 + i)
        if rng.random() < 0.2:
            raw = bytearray(tx.encode())
            raw[-1 - rng.randrange(64)] ^= 1 << rng.randrange(8)
            tx = Transaction.decode(bytes(raw))
        txs.append(tx)
    return txs


@pytest.mark.parametrize("cores", [2, 3, 4, 8])
def test_parallel_verdicts_are_the_serial_ones_in_order(
    cores: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    rng = random.Random(cores)
    txs = payments(CHUNK_TXS_MIN * cores + rng.randrange(CHUNK_TXS_MIN), rng)
    expected = precheck_all(txs)
    assert Reason.BAD_SIGNATURE in expected and None in expected
    assert asyncio.run(precheck_parallel(txs)) == expected


def test_a_payment_the_api_passed_is_not_checked_again_when_applied(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``Verified``: the verdicts at apply are ``precheck_all``'s, in order, for a mix of
    payments the API took (good ones remembered), forged ones and ones it never saw; only
    those it did not pass are checked again; a forgotten one (the bound) is checked again."""
    rng = random.Random(3)
    taken, unseen = payments(40, rng), payments(80, rng)[40:]
    entry = taken + unseen
    rng.shuffle(entry)
    checked: list[int] = []

    async def counting(txs: list[Transaction]) -> list[Reason | None]:
        checked.append(len(txs))
        return precheck_all(txs)

    monkeypatch.setattr("scryp.server.verify.precheck_parallel", counting)
    verified = Verified(kept_max=1_000)
    assert asyncio.run(verified.taken(taken)) == precheck_all(taken)
    passed = sum(reason is None for reason in precheck_all(taken))
    assert len(verified) == passed
    assert asyncio.run(verified.applying(entry)) == precheck_all(entry)
    assert checked == [len(taken), len(entry) - passed]  # the passed ones: not again
    assert len(verified) == 0  # applied: forgotten
    small = Verified(kept_max=3)
    asyncio.run(small.taken(taken))
    assert len(small) == 3  # the newest three passed
    assert asyncio.run(small.applying(taken)) == precheck_all(taken)
