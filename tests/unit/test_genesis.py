"""The genesis and the network id (§5)."""

from __future__ import annotations

import hashlib

import pytest

from scryp.core.balances import TOTAL_SUPPLY, encode_balances
from scryp.core.genesis import Genesis
from scryp.errors import MalformedInput


def test_single_gives_everything_to_one_account() -> None:
    faucet = b"\x07" * 32
    genesis = Genesis.single(faucet)
    assert genesis.encode() == faucet + b"\xff\xff\xff\xff"
    assert genesis.network_id == hashlib.sha256(genesis.encode()).digest()
    assert Genesis.decode(genesis.encode()) == genesis


def test_allocations_must_sum_to_the_supply() -> None:
    genesis = Genesis.from_allocations({b"\x01" * 32: 1, b"\x02" * 32: TOTAL_SUPPLY - 1})
    assert len(genesis.encode()) == 72
    with pytest.raises(MalformedInput, match="exactly"):
        Genesis.from_allocations({b"\x01" * 32: 1, b"\x02" * 32: 1})
    with pytest.raises(MalformedInput, match="exactly"):
        Genesis.decode(b"")
    with pytest.raises(MalformedInput):
        Genesis.decode(encode_balances([(b"\x01" * 32, TOTAL_SUPPLY)]) + b"\x00")


def test_different_genesis_different_network() -> None:
    assert Genesis.single(b"\x01" * 32).network_id != Genesis.single(b"\x02" * 32).network_id
