"""The archive's HTTP API on 127.0.0.1 (protocol §10.8, docs/api.md "Archive").

- ``GET /rounds?from=N``: the archived rounds from N on, at most 100, in the servers' format
  (each with its certificate, checkable against ``.keys`` alone) plus ``"checkpoint"``;
- ``GET /status``: the network, the first and last round held, the gaps, the checkpoint
  period and the BitTorrent port the rounds are seeded on.
The archive is not trusted: a client checks every entry's certificate and every file it
fetches (v2 infohash, replay to the certified state rootes).
"""

from __future__ import annotations

from aiohttp import web

from scryp.archive.follow import Archive

ROUNDS_LISTED_MAX = 100
ARCHIVE: web.AppKey[Archive] = web.AppKey("archive", Archive)


async def rounds(request: web.Request) -> web.Response:
    try:
        start = int(request.query.get("from", "0"))
    except ValueError:
        return web.json_response({"error": "from must be a round number"}, status=400)
    held = request.app[ARCHIVE].held
    numbers = sorted(n for n in held if n >= start)[:ROUNDS_LISTED_MAX]
    return web.json_response({"rounds": [held[n].entry for n in numbers]})


async def status(request: web.Request) -> web.Response:
    archive = request.app[ARCHIVE]
    held = archive.held
    return web.json_response(
        {
            "archive": True,
            "network": archive.network.hex() if archive.network else None,
            "first_round": min(held, default=None),
            "last_round": max(held, default=None),
            "rounds": len(held),
            "gaps": archive.gaps,
            "checkpoint_every": archive.config.checkpoint_every,
            "torrent_port": archive.swarm.port,
        }
    )


def make_app(archive: Archive) -> web.Application:
    app = web.Application(client_max_size=1024)
    app[ARCHIVE] = archive
    app.router.add_get("/rounds", rounds)
    app.router.add_get("/status", status)
    return app
