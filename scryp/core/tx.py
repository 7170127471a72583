"""The 140-byte payment transaction (protocol §3).

Owns: the byte layout, its strict decoder, the signed prefix and the transaction id.
Invariants: ``Transaction.decode(t.encode()) == t`` for every transaction; ``encode`` is always
exactly ``TX_BYTES`` long; a decoded transaction has not been checked for validity (signature,
amount, balances): that is the ledger's job (protocol §6), so that signature checks can run
apart from ``Ledger.apply`` and in parallel.

Layout, all integers big-endian:

    offset  size  field
         0     8  timestamp, ms since 1970-01-01 UTC
         8     4  amount, scryp
        12    32  payee public key
        44    32  payer public key
        76    64  payer's ed25519 signature of bytes 0..75
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from scryp.crypto import KeyPair, verify
from scryp.errors import MalformedInput

TX_BYTES = 140
SIGNED_BYTES = 76
AMOUNT_MAX = 2**32 - 1
TIMESTAMP_MS_MAX = 2**64 - 1

_LAYOUT = struct.Struct(">QI32s32s64s")
assert _LAYOUT.size == TX_BYTES


@dataclass(frozen=True, slots=True)
class Transaction:
    """One payment, exactly as signed by its payer."""

    timestamp_ms: int
    amount: int
    payee: bytes
    payer: bytes
    signature: bytes
    # Carried along so the 140 bytes are hashed and kept once (the ledger's hot path).
    raw: bytes
    tx_id: bytes

    @classmethod
    def decode(cls, data: bytes) -> Transaction:
        """Parse exactly 140 bytes; MalformedInput for anything else."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise MalformedInput(f"a transaction is bytes, got {type(data).__name__}")
        raw = bytes(data)
        if len(raw) != TX_BYTES:
            raise MalformedInput(f"a transaction is {TX_BYTES} bytes, got {len(raw)}")
        timestamp_ms, amount, payee, payer, signature = _LAYOUT.unpack(raw)
        return cls(
            timestamp_ms=timestamp_ms,
            amount=amount,
            payee=payee,
            payer=payer,
            signature=signature,
            raw=raw,
            tx_id=hashlib.sha256(raw).digest(),
        )

    @classmethod
    def create(cls, payer: KeyPair, payee: bytes, amount: int, timestamp_ms: int) -> Transaction:
        """Build and sign a payment. Refuses values the layout cannot hold."""
        if len(payee) != 32:
            raise MalformedInput(f"a payee is a 32-byte public key, got {len(payee)} bytes")
        if not 0 <= amount <= AMOUNT_MAX:
            raise MalformedInput(f"amount {amount} does not fit in 4 bytes")
        if not 0 <= timestamp_ms <= TIMESTAMP_MS_MAX:
            raise MalformedInput(f"timestamp {timestamp_ms} does not fit in 8 bytes")
        signed = _LAYOUT.pack(timestamp_ms, amount, payee, payer.public, bytes(64))[:SIGNED_BYTES]
        return cls.decode(signed + payer.sign(signed))

    def encode(self) -> bytes:
        return self.raw

    @property
    def signed_bytes(self) -> bytes:
        """The 76 bytes the payer signs."""
        return self.raw[:SIGNED_BYTES]

    def signature_valid(self) -> bool:
        """Whether the payer's signature covers the first 76 bytes (protocol §3.2)."""
        return verify(self.payer, self.signed_bytes, self.signature)

    def describe(self) -> str:
        return (
            f"tx {self.tx_id.hex()[:16]} {self.amount} scryp "
            f"{self.payer.hex()[:8]}→{self.payee.hex()[:8]} at {self.timestamp_ms}"
        )


def decode_many(data: bytes, count_max: int) -> list[Transaction]:
    """Split a concatenation of 140-byte transactions (a batch on the wire or on disk)."""
    if len(data) % TX_BYTES:
        raise MalformedInput(
            f"a batch is a multiple of {TX_BYTES} bytes, got {len(data)} "
            f"({len(data) % TX_BYTES} bytes left over)"
        )
    count = len(data) // TX_BYTES
    if count > count_max:
        raise MalformedInput(f"a batch holds at most {count_max} transactions, got {count}")
    return [Transaction.decode(chunk) for chunk in _chunks(data)]


def encode_many(txs: list[Transaction]) -> bytes:
    return b"".join(tx.raw for tx in txs)


def verify_signatures(txs: list[Transaction]) -> list[bool]:
    """Each transaction's signature check, apart from ``Ledger.apply`` (protocol §6.1).

    Pure and independent per transaction, so callers may split a batch across processes.
    """
    return [tx.signature_valid() for tx in txs]


def _chunks(data: bytes) -> Iterator[bytes]:
    view = memoryview(data)
    for start in range(0, len(view), TX_BYTES):
        yield bytes(view[start : start + TX_BYTES])
