"""The README's main command as a user runs it: ``python -m scryp.testnet``, then Ctrl-C."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from .http import get_json

pytestmark = pytest.mark.slow
DEADLINE_S = 60.0
AGREEMENT = b"agreement: every server reports the same certified state"


async def wait_for(condition: Any, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not await condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        await asyncio.sleep(0.2)  # polling other processes, which cannot signal us


async def output_on_ctrl_c(process: subprocess.Popen[bytes]) -> bytes:
    """Everything the view printed: up to a frame showing agreement, then Ctrl-C, then the
    rest. The view prints a frame at most once a second and the servers may agree between two
    frames, so wait (with a deadline) for a frame that shows it."""
    stdout = process.stdout
    assert stdout is not None

    def read_until_agreement() -> bytes:
        seen = b""
        while AGREEMENT not in seen and (line := stdout.readline()):
            seen += line
        return seen

    early = await asyncio.wait_for(asyncio.to_thread(read_until_agreement), DEADLINE_S)
    process.send_signal(signal.SIGINT)  # what Ctrl-C sends
    # The rest through the same buffered reader (communicate would skip what it holds).
    rest = await asyncio.wait_for(asyncio.to_thread(stdout.read), DEADLINE_S)
    await asyncio.wait_for(asyncio.to_thread(process.wait), DEADLINE_S)
    return early + rest


def test_testnet_runs_agrees_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "scryp.testnet",
        "--dir",
        str(tmp_path),
        "--servers",
        "3",
        "--seeders",
        "1",
        "--round-interval",
        "0.5",
        "--demo-payments",
        "3",
        "--duration-s",
        "300",
    ]
    # Unbuffered, so the live view's frames arrive as it prints them.
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        description_path = tmp_path / "testnet.json"

        async def scenario() -> list[str]:
            async def described() -> bool:
                return description_path.exists()

            await wait_for(described, "testnet.json")
            description = json.loads(description_path.read_text())
            assert description["bootstrap"].startswith("127.0.0.1:")
            assert len(description["servers"]) == 3
            assert len(description["archives"]) == 1  # one archive by default
            urls = [server["api"] + "/status" for server in description["servers"]]
            for server in description["servers"]:
                assert server["api"].startswith("http://127.0.0.1:")
                assert len(server["public_key"]) == 64

            async def agreed() -> bool:
                found = [await get_json(url) for url in urls]
                return (
                    all(s and (s["certified_round"] or 0) >= 3 for s in found)
                    and len({s["certified_state_root"] for s in found if s}) == 1
                )

            await wait_for(agreed, "three servers agreeing on a certified round")
            return urls

        urls = asyncio.run(scenario())
        output = asyncio.run(output_on_ctrl_c(process))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
    text = output.decode()
    assert process.returncode == 0, text
    assert AGREEMENT.decode() in text
    assert text.rstrip().endswith("stopped.")

    async def all_down() -> bool:
        return all(found is None for found in [await get_json(url) for url in urls])

    assert asyncio.run(all_down()), "a server outlived the testnet command"
    logs = sorted(p.name for p in (tmp_path / "logs").iterdir())
    servers = [f"server-{i}.log" for i in range(3)]  # the archive runs by default (§10.8)
    assert logs == ["archive-0.log", "dht.log", "seeder-0.log", *servers]
