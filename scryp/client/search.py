"""Light sync's search: find one account's record in a sorted balances file while fetching
as few 16 KiB pieces as possible (protocol §10.3). Pure apart from the ``fetch`` callback.

Account ids are ed25519 public keys, close to uniformly spread, so the record of id X sits
near index N·X/2^256: interpolation search finds it in one or two probes. After
``INTERPOLATION_PROBES_MAX`` probes it falls back to bisection, so a skewed file costs at most
about log2(pieces) more probes. Each probe fetches the piece(s) holding one record; every
complete record inside the fetched bytes narrows the search.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from scryp.core.balances import ACCOUNT_ID_BYTES, RECORD, RECORD_BYTES
from scryp.core.snapshot import PIECE_BYTES, piece_range
from scryp.errors import MalformedInput

INTERPOLATION_PROBES_MAX = 4
PROBES_MAX = 80
ID_SPACE = 1 << (8 * ACCOUNT_ID_BYTES)

# fetch(pieces) makes those pieces readable; read(offset, length) returns bytes of them.
Fetch = Callable[[set[int]], Awaitable[None]]
Read = Callable[[int, int], bytes]


async def find_balance(
    size_bytes: int, account: bytes, fetch: Fetch, read: Read
) -> tuple[int, int]:
    """(balance of ``account``, 0 if absent; probes made) in a balances file of that size."""
    if size_bytes % RECORD_BYTES:
        raise MalformedInput(f"balances file of {size_bytes} bytes is not whole records")
    count = size_bytes // RECORD_BYTES
    target = int.from_bytes(account, "big")
    low, high = 0, count - 1  # the record, if present, has an index in [low, high]
    low_id, high_id = -1, ID_SPACE  # ids just outside [low, high] (or the space's ends)
    have: set[int] = set()
    probes = 0
    while low <= high:
        if probes >= PROBES_MAX:
            raise MalformedInput("balances file is not sorted: search did not converge")
        if probes < INTERPOLATION_PROBES_MAX:
            span = high - low + 1
            guess = low + (target - low_id) * span // max(high_id - low_id, 1)
            index = min(max(guess, low), high)
        else:
            index = (low + high) // 2
        wanted = set(piece_range(index * RECORD_BYTES, RECORD_BYTES)) - have
        probes += 1
        await fetch(wanted)
        have |= wanted
        for at in _complete_records(have, count):
            if not low <= at <= high:
                continue
            account_id, balance = RECORD.unpack(read(at * RECORD_BYTES, RECORD_BYTES))
            found = int.from_bytes(account_id, "big")
            if found == target:
                return balance, probes
            if found < target and at >= low:
                low, low_id = at + 1, found
            elif found > target and at <= high:
                high, high_id = at - 1, found
    return 0, probes


def _complete_records(pieces: set[int], count: int) -> list[int]:
    """Indices of records whose bytes all lie in ``pieces``, in increasing order."""
    indices: set[int] = set()
    for piece in pieces:
        first = piece * PIECE_BYTES // RECORD_BYTES
        last = min(((piece + 1) * PIECE_BYTES - 1) // RECORD_BYTES, count - 1)
        for at in range(first, last + 1):
            if set(piece_range(at * RECORD_BYTES, RECORD_BYTES)) <= pieces:
                indices.add(at)
    return sorted(indices)
