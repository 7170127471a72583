"""Signature checks on every core, apart from the ledger (protocol §6.1).

pynacl's C calls release the GIL, so plain threads check signatures in parallel (measured in
docs/BENCHMARKS.md); no process pool, and nothing is pickled.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

from scryp.core.ledger import Reason, precheck_all
from scryp.core.tx import Transaction

_ABSENT = object()
CHUNK_TXS_MIN = 64  # below this, one thread: handing work over costs more than it saves


async def precheck_parallel(txs: Sequence[Transaction]) -> list[Reason | None]:
    """``precheck_all(txs)``, split across up to one thread per core."""
    workers = min(os.cpu_count() or 1, max(1, len(txs) // CHUNK_TXS_MIN))
    if workers == 1:
        return await asyncio.to_thread(precheck_all, txs)
    chunks = [txs[i::workers] for i in range(workers)]
    results = await asyncio.gather(*(asyncio.to_thread(precheck_all, c) for c in chunks))
    merged: list[Reason | None] = [None] * len(txs)
    for offset, chunk_results in enumerate(results):
        merged[offset::workers] = chunk_results
    return merged


class Verified:
    """The ids of payments this server's API checked and passed (protocol §6.1), until the
    entry that holds them is applied: a signature depends on the 140 bytes alone, and the id
    is their SHA-256, so the verdict is reused, not recomputed. At apply, every server checked
    every payment again, and the one that took it a second time (4 checks a payment in a
    3-server quorum, not 3); at 10M accounts those checks, awaited by the core loop, bounded
    how fast entries were applied (docs/BENCHMARKS.md, server load at 10M accounts).

    Bounded: beyond ``kept_max`` ids the oldest go (a payment refused at submission, or lost,
    is never applied); one that went is only checked again."""

    def __init__(self, kept_max: int = 200_000) -> None:
        self.kept_max = kept_max
        self._ids: dict[bytes, None] = {}  # insertion order: the oldest first

    def __len__(self) -> int:
        return len(self._ids)

    async def taken(self, txs: Sequence[Transaction]) -> list[Reason | None]:
        """``precheck_parallel`` for payments a client submits; remembers those that pass."""
        reasons = await precheck_parallel(txs)
        ids = self._ids
        for tx, reason in zip(txs, reasons, strict=True):
            if reason is None:
                ids[tx.tx_id] = None
        while len(ids) > self.kept_max:
            del ids[next(iter(ids))]
        return reasons

    async def applying(self, txs: Sequence[Transaction]) -> list[Reason | None]:
        """The verdicts for an entry being applied: those remembered passed (and are
        forgotten now), the others are checked here."""
        ids = self._ids
        known = [ids.pop(tx.tx_id, _ABSENT) is not _ABSENT for tx in txs]
        unknown = [tx for tx, seen in zip(txs, known, strict=True) if not seen]
        checked = iter(await precheck_parallel(unknown) if unknown else [])
        return [None if seen else next(checked) for seen in known]
