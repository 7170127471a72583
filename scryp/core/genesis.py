"""The genesis: round 0's balances, which fix the supply and name the network (protocol §5).

Owns: validation of a genesis file and the network id.
Invariants: a genesis is a canonical balances file (protocol §4.1) whose balances sum to exactly
``TOTAL_SUPPLY`` = 2**32-1; the network id is its SHA-256 (protocol §5.2); round 0's state
root is the Merkle root of its buckets (protocol §4.4.3).
There is no minting, so every later state sums to the same total.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from scryp.core.balances import (
    ACCOUNT_ID_BYTES,
    TOTAL_SUPPLY,
    check_balances_file,
    encode_balances,
)
from scryp.core.buckets import state_root
from scryp.errors import MalformedInput


@dataclass(frozen=True, slots=True)
class Genesis:
    """A validated genesis file."""

    balances_file: bytes

    @classmethod
    def decode(cls, data: bytes) -> Genesis:
        total = check_balances_file(data)
        if total != TOTAL_SUPPLY:
            raise MalformedInput(
                f"a genesis hands out exactly {TOTAL_SUPPLY} scryp, this one {total}"
            )
        return cls(balances_file=bytes(data))

    @classmethod
    def from_allocations(cls, allocations: Mapping[bytes, int]) -> Genesis:
        """A genesis from initial balances, which must sum to 2**32-1."""
        return cls.decode(encode_balances(allocations.items()))

    @classmethod
    def single(cls, account: bytes) -> Genesis:
        """The whole supply to one account (the local test network's faucet, protocol §5.2)."""
        if len(account) != ACCOUNT_ID_BYTES:
            raise MalformedInput(f"an account id is 32 bytes, got {len(account)}")
        return cls.from_allocations({account: TOTAL_SUPPLY})

    @property
    def network_id(self) -> bytes:
        """SHA-256 of the genesis file: names the network in every signed statement."""
        return hashlib.sha256(self.balances_file).digest()

    @property
    def state_root(self) -> bytes:
        """Round 0's state root: the root of the genesis's buckets (protocol §4.4.3)."""
        return state_root(self.balances_file)

    def encode(self) -> bytes:
        return self.balances_file
