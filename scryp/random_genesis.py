"""Random genesis files for test and benchmark networks (issue 10; protocol §5).

Owns: ``random_genesis_chunks`` (the records of a genesis of N random accounts plus fixed
allocations, in canonical order, as a stream of byte chunks) and ``write_random_genesis``
(the file, written atomically and fsynced, protocol §2.5).

How: the 32-byte id space is cut into 2**b ranges by the id's first b bits (b from
``range_bits``: 0 for small N, up to 16, so a range holds ~65k accounts at most); the
number of random accounts in each range is drawn first (a multinomial), then each range's ids
are drawn uniformly inside it, sorted with numpy and written in order. So the ids are uniform
over the whole space, the file is produced range by range in bounded memory (about 36 bytes
an account of one range at a time, plus 4 bytes an account for the balances drawn first:
~0.5 GB for 100M accounts), and the same seed gives
byte-identical files.

Invariants: the output is a canonical balances file (protocol §4.1: strictly increasing ids,
no zero balance) summing to exactly 2**32-1: every random account gets 1..``balance_max``
scryp, where ``balance_max`` is chosen so that they hold at most half the supply, and the
faucet keeps the rest. Random ids are not ed25519 keys anyone holds: they fill a ledger; the
faucet (and the fixed allocations) are the accounts that can pay.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from scryp.core.balances import ACCOUNT_ID_BYTES, RECORD, TOTAL_SUPPLY
from scryp.errors import ConfigError, invariant
from scryp.keyfile import fsync_directory

RANGE_BITS_MAX = 16  # the id space is generated in at most 2**16 ranges, one at a time
RANGE_ACCOUNTS = 1 << 16  # about this many random accounts per range, at most twice that
RANDOM_BALANCE_MAX = 1000  # a random account holds 1..1000 scryp (fewer for huge N)
_RECORD_DTYPE = np.dtype([("id", "S32"), ("balance", ">u4")])


def random_balance_max(accounts: int) -> int:
    """The largest balance a random account gets: N of them hold at most half the supply."""
    return max(1, min(RANDOM_BALANCE_MAX, TOTAL_SUPPLY // (2 * max(1, accounts))))


def range_bits(accounts: int) -> int:
    """How many leading id bits name a range: a function of N alone, so a seed's file is fixed."""
    return min(RANGE_BITS_MAX, (accounts // RANGE_ACCOUNTS).bit_length())


def random_genesis_chunks(
    accounts: int, faucet: bytes, fixed: Mapping[bytes, int], seed: int
) -> Iterator[bytes]:
    """The genesis file's bytes in order: ``accounts`` random accounts, ``fixed`` allocations,
    and ``faucet`` holding the rest of the supply (see the module header)."""
    if accounts < 0 or accounts > TOTAL_SUPPLY // 2:
        raise ConfigError(f"--random-accounts must be 0..{TOTAL_SUPPLY // 2}, got {accounts}")
    if faucet in fixed:
        raise ConfigError("the faucet also has a fixed allocation")
    rng = np.random.Generator(np.random.PCG64(seed))
    bits = range_bits(accounts)
    ranges = 1 << bits
    counts = rng.multinomial(accounts, [1 / ranges] * ranges)
    # Balances first (4 bytes an account), so the faucet's amount, the rest of the supply, is
    # known before its range is written; ids are drawn range by range after.
    balances = rng.integers(1, random_balance_max(accounts) + 1, size=accounts, dtype=np.uint32)
    faucet_amount = TOTAL_SUPPLY - int(balances.sum(dtype=np.uint64)) - sum(fixed.values())
    if faucet_amount <= 0:
        raise ConfigError(f"the fixed allocations leave the faucet {faucet_amount} scryp")
    by_prefix: dict[int, list[tuple[bytes, int]]] = {}
    for account, amount in {**fixed, faucet: faucet_amount}.items():
        prefix = int.from_bytes(account[:2], "big") >> (RANGE_BITS_MAX - bits)
        by_prefix.setdefault(prefix, []).append((account, amount))
    start = 0
    for prefix in range(ranges):
        count = int(counts[prefix])
        records = _random_range(rng, prefix, bits, balances[start : start + count])
        start += count
        extra = by_prefix.get(prefix)
        if extra:
            records = _merge(records, extra)
        _check_strictly_increasing(records["id"])
        invariant(records.dtype == _RECORD_DTYPE, "record layout changed")
        yield records.tobytes()


def _random_range(
    rng: np.random.Generator, prefix: int, bits: int, balances: np.ndarray
) -> np.ndarray:
    """Random records whose ids start with the ``bits``-bit ``prefix``, sorted by id."""
    count = len(balances)
    records = np.empty(count, dtype=_RECORD_DTYPE)
    raw = rng.integers(0, 256, size=(count, ACCOUNT_ID_BYTES), dtype=np.uint8)
    free = RANGE_BITS_MAX - bits  # low bits of the first two bytes left random
    head = (raw[:, 0].astype(np.uint32) << 8) | raw[:, 1]
    head = (head & ((1 << free) - 1)) | (prefix << free)
    raw[:, 0] = head >> 8
    raw[:, 1] = head & 0xFF
    records["id"] = raw.view("S32").reshape(count)
    records["balance"] = balances
    # Sorting "S32" is bytewise for equal-length values (NUL sorts first, as in bytes order).
    records.sort(order="id", kind="stable")
    return records


def _merge(records: np.ndarray, extra: list[tuple[bytes, int]]) -> np.ndarray:
    for account, amount in extra:
        if len(account) != ACCOUNT_ID_BYTES or not 1 <= amount <= TOTAL_SUPPLY:
            raise ConfigError(f"bad allocation {account.hex()}={amount}")
    added = np.array(extra, dtype=_RECORD_DTYPE)
    # concatenate would promote to native (little-endian) byte order: keep the record layout.
    merged = np.concatenate([records, added]).astype(_RECORD_DTYPE)
    merged.sort(order="id", kind="stable")
    return merged


def _check_strictly_increasing(ids: np.ndarray) -> None:
    # 2**-256 odds for random ids, but a fixed id may equal a random one: refuse, never merge.
    if len(ids) > 1 and not bool(np.all(ids[1:] > ids[:-1])):
        raise ConfigError("an account id appears twice (pick another --seed)")


def write_random_genesis(
    path: Path, accounts: int, faucet: bytes, fixed: Mapping[bytes, int], seed: int
) -> tuple[int, bytes]:
    """Write the genesis atomically (temp file, fsync, rename, fsync the directory).

    Returns (file size in bytes, network id = SHA-256 of the file, protocol §5.2).
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    digest = hashlib.sha256()
    size = 0
    previous_last = b""
    with open(temporary, "wb") as file:
        for chunk in random_genesis_chunks(accounts, faucet, fixed, seed):
            if chunk:
                # Ranges are disjoint and ascending, so the file is sorted as a whole.
                invariant(chunk[:ACCOUNT_ID_BYTES] > previous_last, "ranges out of order")
                previous_last = chunk[-RECORD.size : -RECORD.size + ACCOUNT_ID_BYTES]
            digest.update(chunk)
            file.write(chunk)
            size += len(chunk)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    fsync_directory(path.parent)
    return size, digest.digest()
