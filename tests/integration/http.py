"""Asking a real process's HTTP API from a test: a JSON body, or None when it does not answer."""

from __future__ import annotations

from typing import Any

import aiohttp


async def get_json(url: str, timeout_s: float = 2.0) -> dict[str, Any] | None:
    """The JSON body at ``url``; None if nothing answers within ``timeout_s`` (a process down,
    paused or still starting)."""
    try:
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as r:
            body: dict[str, Any] = await r.json()
            return body
    except (aiohttp.ClientError, TimeoutError):
        return None
