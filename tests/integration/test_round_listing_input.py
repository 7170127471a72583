"""A server's malformed ``GET /rounds`` is its fault: the client's listing skips it, ends, and
takes the next server's (protocol §10.4). Real aiohttp servers on 127.0.0.1."""

from __future__ import annotations

import asyncio

from scryp.client.servers import round_listing

from .http import serving

HONEST = {"rounds": [{"round": n, "infohash": f"{n:040x}"} for n in (3, 4, 5)]}
LIES = [
    {"rounds": [{"round": "x"}, {"round": True}, "not an entry", {"round": None}]},
    {"rounds": "not a list"},
    {"rounds": [{"round": 1}]},  # listing backwards from 3: once asked, never again
    ["not", "an", "object"],
]


def test_a_malformed_listing_is_skipped_and_the_next_server_asked() -> None:
    async def scenario() -> None:
        for lie in LIES:
            async with serving("/rounds", lie) as liar, serving("/rounds", HONEST) as honest:
                found = await asyncio.wait_for(round_listing([liar, honest], 3, 5), 10.0)
            assert sorted(found) == [3, 4, 5], lie
            assert found[4] == HONEST["rounds"][1]

    asyncio.run(scenario())
