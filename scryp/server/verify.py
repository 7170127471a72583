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
