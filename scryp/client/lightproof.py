"""Light sync by proof (protocol §4.4.6, stage A of issue 10).

``balance_from_proof``: a server's (untrusted) ``GET /proof`` answer carries the account's
bucket, its records and the 16 sibling hashes; if ``leaf(records)`` and the siblings give the
certified state root, the records are the bucket's true bytes and the balance is read from
them, with no piece fetched at all. Anything that does not verify gives None, and the light
sync falls back to the certified torrent's pieces.

``check``: when the proof came without records (or too late) and the pieces a light sync
fetched already hold the account's whole bucket, that bucket and the proof must give the
certified state root, and the bucket must hold the balance the search found. Only certified
data that disagree with each other is an error. Pure apart from ``read``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from scryp.core.balances import RECORD_BYTES, lookup
from scryp.core.buckets import BUCKET_BITS, HASH_BYTES, bucket_of, verify_proof
from scryp.core.snapshot import piece_range
from scryp.errors import RemoteError

Read = Callable[[int, int], bytes]


class StateDisagrees(RemoteError):
    """The certified torrent and the certified state root say different balances."""


def check(
    proof: Any,
    *,
    root: bytes,
    round_number: int,
    account: bytes,
    balance: int,
    have: set[int],
    read: Read,
) -> bool:
    """True if the proof was checked and agrees; False if there was nothing to check (no
    usable proof, or the bucket's bytes not all among the ``have`` pieces)."""
    parsed = _parse(proof, round_number, bucket_of(account, BUCKET_BITS))
    if parsed is None:
        return False
    siblings, start, end = parsed
    if start is None or end is None:
        return False  # a round with no balances file: no pieces to compare (§4.4.4)
    if end > start and not set(piece_range(start, end - start)) <= have:
        return False
    bucket = read(start, end - start) if end > start else b""
    index = bucket_of(account, BUCKET_BITS)
    if len(bucket) != end - start or not verify_proof(root, index, bucket, siblings, BUCKET_BITS):
        return False  # a lying or stale helper: ignored
    if lookup(bucket, account) != balance:
        raise StateDisagrees(
            f"round {round_number}: the certified torrent gives balance {balance}, the bucket "
            f"under the certified state root {lookup(bucket, account)}"
        )
    return True


def balance_from_proof(proof: Any, *, root: bytes, round_number: int, account: bytes) -> int | None:
    """The account's balance proved by ``proof`` against the certified ``root`` of round
    ``round_number``, or None if the proof has no records or does not verify."""
    index = bucket_of(account, BUCKET_BITS)
    parsed = _parse(proof, round_number, index)
    records_hex = proof.get("records") if isinstance(proof, dict) else None
    if parsed is None or not isinstance(records_hex, str):
        return None
    siblings, start, end = parsed
    try:
        records = bytes.fromhex(records_hex)
    except ValueError:
        return None
    sized = start is None or end is None or len(records) == end - start
    if len(records) % RECORD_BYTES or not sized:
        return None
    if not verify_proof(root, index, records, siblings, BUCKET_BITS):
        return None  # a lying, stale or broken helper: the pieces will tell
    return lookup(records, account)


def _parse(
    proof: Any, round_number: int, index: int
) -> tuple[list[bytes], int | None, int | None] | None:
    """(siblings, start, end) of a ``GET /proof`` answer for this round and bucket, or None;
    start and end are None (both) for a round with no balances file (§4.4.4)."""
    if not isinstance(proof, dict) or proof.get("round") != round_number:
        return None
    start, end, listed = proof.get("start"), proof.get("end"), proof.get("siblings")
    if proof.get("bucket") != index:
        return None
    if start is not None or end is not None:
        if not isinstance(start, int) or not isinstance(end, int):
            return None
        if not 0 <= start <= end or start % RECORD_BYTES or end % RECORD_BYTES:
            return None
    if not isinstance(listed, list) or len(listed) != BUCKET_BITS:
        return None
    try:
        siblings = [bytes.fromhex(s) for s in listed if isinstance(s, str)]
    except ValueError:
        return None
    if len(siblings) != BUCKET_BITS or any(len(s) != HASH_BYTES for s in siblings):
        return None
    return siblings, start, end
