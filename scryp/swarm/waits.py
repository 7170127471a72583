"""Waiting on the swarm: every wait has a deadline, and a missed one is ``TimedOut``.

Owns: the two helpers the session, BEP 44 items and fetching share. Nothing here sleeps to
wait for an event: the awaited futures are resolved by libtorrent's alerts (session.py).
"""

from __future__ import annotations

import asyncio
from typing import TypeVar

from scryp.errors import TimedOut

_T = TypeVar("_T")


async def deadline(awaitable: asyncio.Future[_T], timeout_s: float, what: str) -> _T:
    """``awaitable``'s result, or ``TimedOut`` naming ``what`` did not come in time.

    asyncio.timeout, not wait_for: on Python 3.11 wait_for returns the result (or raises the
    future's own error) when the future completes as the caller is cancelled, and the
    cancellation is lost. Seen in CI: a swarm closing failed a DHT put as the server was
    cancelled, the publisher took the error for a failed put and waited 30 min for its next
    one, and the server never stopped."""
    try:
        async with asyncio.timeout(max(timeout_s, 0.0)):
            return await awaitable
    except TimeoutError:
        raise TimedOut(f"no {what} within {timeout_s:.1f} s") from None


async def stop(task: asyncio.Task[None] | None) -> None:
    """Cancel a helper task and wait until it has ended."""
    if task is not None:
        task.cancel()
        await asyncio.wait([task])  # unlike awaiting it, never swallows our own cancellation
