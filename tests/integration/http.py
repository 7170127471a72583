"""HTTP in tests: asking a real process's API (a JSON body, or None when it does not answer),
and standing in for a server with a fixed answer."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web

from tests.support.web import serving_app


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


@contextlib.asynccontextmanager
async def serving(path: str, answer: Any) -> AsyncIterator[str]:
    """A real aiohttp server on 127.0.0.1 answering every GET ``path`` with ``answer`` (JSON):
    a lying or broken server stand-in. Yields its base URL."""

    async def handler(_: web.Request) -> web.Response:
        return web.json_response(answer)

    app = web.Application()
    app.router.add_get(path, handler)
    async with serving_app(app) as url:
        yield url
