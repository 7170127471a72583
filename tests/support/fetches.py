"""Counting a client's torrent fetches (the tests that a sync fetched what it should)."""

from __future__ import annotations

from typing import Any


def count_fetches(client: Any) -> list[Any]:
    """Wrap ``client.swarm.fetch``: the list returned gets the ``files`` argument of every
    fetch from now on (None: the whole torrent)."""
    fetched: list[Any] = []
    fetch = client.swarm.fetch

    async def counted(*args: Any, **kwargs: Any) -> Any:
        fetched.append(kwargs.get("files"))
        return await fetch(*args, **kwargs)

    client.swarm.fetch = counted
    return fetched
