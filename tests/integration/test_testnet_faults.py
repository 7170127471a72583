"""Failing servers of a running test network (protocol §9.1): ``python -m scryp.testnet`` runs
in a pseudo-terminal, so its live view takes keys, and another process asks it with
``python -m scryp.testnet kill|restart|pause|resume N --dir DIR``. Each fault is watched
through the servers' own APIs: a killed or paused server stops answering, and once restarted
or resumed it is back in agreement with the others at a newer certified round."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from scryp.localnet import LocalNetwork

from .http import get_json

pytestmark = pytest.mark.slow

DEADLINE_S = 30.0
REPO = Path(__file__).resolve().parents[2]


def run_testnet(root: Path, *args: str) -> tuple[int, str, str]:
    done = subprocess.run(
        [sys.executable, "-m", "scryp.testnet", *args, "--dir", str(root)],
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr


def wait(condition: Any, what: str) -> None:
    asyncio.run(LocalNetwork.wait_until(condition, DEADLINE_S, what, poll_s=0.2))


class Network:
    """What the test reads of the running network: its servers' answers."""

    def __init__(self, root: Path) -> None:
        description = json.loads((root / "testnet.json").read_text())
        self.urls = [server["api"] + "/status" for server in description["servers"]]

    async def statuses(self) -> list[dict[str, Any] | None]:
        return list(await asyncio.gather(*(get_json(url, 1.0) for url in self.urls)))

    def wait_silent(self, index: int) -> None:
        async def silent() -> bool:
            return await get_json(self.urls[index], 1.0) is None

        wait(silent, f"server {index} to stop answering")

    def wait_agreement(self, after_round: int) -> int:
        """Every server certified at one round past ``after_round`` with one state."""
        found: list[int] = []

        async def agreed() -> bool:
            every = await self.statuses()
            pairs = {(s["certified_round"], s["certified_state_root"]) for s in every if s}
            if None in every or len(pairs) != 1:
                return False
            ((round_number, _),) = pairs
            found.append(round_number or 0)
            return (round_number or 0) > after_round

        wait(agreed, f"every server in agreement past round {after_round}")
        return found[-1]


def test_servers_fail_and_recover_on_command_and_by_keys(tmp_path: Path) -> None:
    master, slave = pty.openpty()  # the live view reads keys only from a terminal
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))  # rows, columns
    options = ["--seeders", "0", "--round-interval", "0.5", "--duration-s", "120"]
    process = subprocess.Popen(
        [sys.executable, "-m", "scryp.testnet", "--dir", str(tmp_path), *options],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**os.environ, "PYTHONPATH": str(REPO), "TERM": "xterm"},
    )
    os.close(slave)
    screen: list[bytes] = []
    drain = threading.Thread(target=read_all, args=(master, screen), daemon=True)
    drain.start()
    try:

        async def started() -> bool:
            return (tmp_path / "control.json").exists()

        wait(started, "the control endpoint")
        assert (tmp_path / "control.json").stat().st_mode & 0o777 == 0o600
        net = Network(tmp_path)
        newest = net.wait_agreement(1)

        code, out, err = run_testnet(tmp_path, "kill", "1")
        assert (code, out) == (0, "server 1: down\n"), err
        net.wait_silent(1)
        code, out, _ = run_testnet(tmp_path, "list")
        assert "server 1: down" in out and "server 0: up, pid" in out
        code, _, err = run_testnet(tmp_path, "pause", "1")  # a down server cannot be paused
        assert code == 1 and "server 1 is down" in err
        code, out, err = run_testnet(tmp_path, "restart", "1")
        assert code == 0 and out.startswith("server 1: up, pid"), err
        newest = net.wait_agreement(newest)

        code, out, err = run_testnet(tmp_path, "pause", "2")
        assert code == 0 and out.startswith("server 2: paused"), err
        net.wait_silent(2)
        code, out, err = run_testnet(tmp_path, "resume", "2")
        assert code == 0 and out.startswith("server 2: up"), err
        newest = net.wait_agreement(newest)

        os.write(master, b"p0")  # the live view's keys: pause server 0...
        net.wait_silent(0)
        assert "server 0: paused" in run_testnet(tmp_path, "list")[1]
        os.write(master, b"c0")  # ...and resume it
        net.wait_agreement(newest)

        async def shown() -> bool:  # the view says what the key did
            return b"resume server 0: up" in b"".join(screen)

        wait(shown, "the view to show the resume")
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=DEADLINE_S)
        finally:
            if process.poll() is None:
                process.kill()
            os.close(master)
            drain.join(timeout=5)
    text = b"".join(screen).decode(errors="replace")
    assert process.returncode == 0, text[-2000:]
    assert "infohash" in text and "keys: k N kill" in text
    assert not (tmp_path / "control.json").exists()
    code, _, err = run_testnet(tmp_path, "kill", "0")
    assert code == 1 and "no test network is running" in err


def read_all(fd: int, into: list[bytes]) -> None:
    """Drain the terminal, so the live view never blocks writing to it."""
    deadline = time.monotonic() + 5 * DEADLINE_S
    with contextlib.suppress(OSError):  # EIO once the child has closed its end
        while time.monotonic() < deadline:
            chunk = os.read(fd, 65536)
            if not chunk:
                return
            into.append(chunk)
