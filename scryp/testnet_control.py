"""Failing a running test network's servers: kill, restart, pause, resume (protocol §9.1).

The running ``python -m scryp.testnet`` is the supervisor: the servers are its child processes,
so only it can start one again with the same ports, key and data directory, and only it knows
which are paused. It serves a small HTTP control endpoint on 127.0.0.1 (a free port) and
writes ``DIR/control.json`` atomically, mode 0600: the endpoint's URL, a random token and its
own pid. ``python -m scryp.testnet ACTION N --dir DIR`` reads that file and asks
(``POST /servers/N/ACTION`` with the token; ``GET /servers`` lists each server's state). The
token, which only the owner can read, keeps other local users out; the file goes at stop. The
live view's keys call the same ``apply``, so both ways behave alike.

Invariants: the endpoint listens on loopback only; an action that makes no sense in the
server's state (pause a server that is down) is refused with a reason (409), never guessed.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from scryp.hostport import LOOPBACK
from scryp.keyfile import atomic_write
from scryp.localnet import STOP_TIMEOUT_S, LocalNetwork

ACTIONS = ("kill", "restart", "pause", "resume")
CONTROL_FILE = "control.json"
REQUEST_TIMEOUT_S = 30.0  # a restart waits for the old process to die (10 s at most)


class Refused(Exception):
    """The action makes no sense now (409), or names no server (404); the text says why."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


class NotRunning(Exception):
    """No supervisor answers for this directory."""


async def apply(net: LocalNetwork, index: int, action: str) -> dict[str, Any]:
    """Do ``action`` to server ``index``; what became of it, as JSON."""
    if not 0 <= index < net.servers:
        raise Refused(f"no server {index}: this network has servers 0..{net.servers - 1}", 404)
    if action not in ACTIONS:
        raise Refused(f"unknown action {action!r} (one of {', '.join(ACTIONS)})", 404)
    state = net.state(index)
    child = net.server_processes[index].child
    if action == "kill":
        if state == "down":
            raise Refused(f"server {index} is already down")
        net.kill(index)  # SIGKILL, a crash: no clean shutdown
        await child.wait(STOP_TIMEOUT_S)  # reaped, so it shows as down at once
    elif action == "restart":
        await net.restart(index)
    elif action == "pause":
        if state != "up":
            raise Refused(f"server {index} is {state}, not running")
        net.pause(index)  # SIGSTOP: alive, holds its ports, answers nothing
    else:
        if state != "paused":
            raise Refused(f"server {index} is {state}, not paused")
        net.resume(index)  # SIGCONT
    return describe(net, index) | {"action": action}


def describe(net: LocalNetwork, index: int) -> dict[str, Any]:
    process = net.server_processes[index].child.process
    pid = process.pid if process is not None and process.poll() is None else None
    return {"server": index, "state": net.state(index), "pid": pid}


@dataclass
class ControlServer:
    """The supervisor's end: the HTTP endpoint and ``DIR/control.json``."""

    net: LocalNetwork
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    runner: web.AppRunner | None = None

    @property
    def path(self) -> Path:
        return self.net.root / CONTROL_FILE

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/servers", self._list)
        app.router.add_post("/servers/{index}/{action}", self._act)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, LOOPBACK, 0)
        await site.start()
        port = self.runner.addresses[0][1]
        control = {"url": f"http://{LOOPBACK}:{port}", "token": self.token, "pid": os.getpid()}
        atomic_write(self.path, json.dumps(control).encode(), mode=0o600)

    async def stop(self) -> None:
        self.path.unlink(missing_ok=True)
        if self.runner is not None:
            await self.runner.cleanup()

    def _allowed(self, request: web.Request) -> bool:
        given = request.headers.get("Authorization", "")
        return secrets.compare_digest(given, f"Bearer {self.token}")

    async def _list(self, request: web.Request) -> web.Response:
        if not self._allowed(request):
            return web.json_response({"error": "wrong or missing token"}, status=403)
        servers = [describe(self.net, i) for i in range(self.net.servers)]
        return web.json_response({"servers": servers})

    async def _act(self, request: web.Request) -> web.Response:
        if not self._allowed(request):
            return web.json_response({"error": "wrong or missing token"}, status=403)
        try:
            index = int(request.match_info["index"])
            return web.json_response(await apply(self.net, index, request.match_info["action"]))
        except ValueError:
            return web.json_response({"error": "a server is a number"}, status=404)
        except Refused as refused:
            return web.json_response({"error": str(refused)}, status=refused.status)


async def request(root: Path, action: str, index: int | None = None) -> dict[str, Any]:
    """Ask the supervisor of ``root``: ``action`` on server ``index``, or the list."""
    path = root / CONTROL_FILE
    try:
        control = json.loads(path.read_text())
    except FileNotFoundError:
        raise NotRunning(
            f"no test network is running in {root} (no {path}); "
            f"start one with: python -m scryp.testnet --dir {root}"
        ) from None
    headers = {"Authorization": f"Bearer {control['token']}"}
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    url = control["url"] + ("/servers" if index is None else f"/servers/{index}/{action}")
    method = "GET" if index is None else "POST"
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.request(method, url, headers=headers) as response,
        ):
            body: dict[str, Any] = await response.json(content_type=None)
            if response.status != 200:
                raise Refused(str(body.get("error")), response.status)
            return body
    except (aiohttp.ClientConnectionError, TimeoutError):
        raise NotRunning(
            f"the test network in {root} does not answer at {control['url']} (stopped?)"
        ) from None
