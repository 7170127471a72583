"""A fresh checkout's server explains itself (protocol §9.11): a real process in an empty
directory holding only the committed, comments-only ``.keys``. It must make its key, print its
id and the commands that are missing, exit with status 2 without a traceback; the commands it
prints, run as printed, must give a server that runs and certifies rounds."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from scryp.crypto import KeyPair
from scryp.keyfile import read_seed
from scryp.localnet import LocalNetwork, free_port

from .http import get_json

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
COMMAND_TIMEOUT_S = 30.0
CERTIFIED_TIMEOUT_S = 30.0


def environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def start_server(cwd: Path, argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scryp.server", *argv],
        cwd=cwd,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )


def test_first_start_makes_the_key_and_prints_commands_that_work(tmp_path: Path) -> None:
    shutil.copy(REPO / ".keys", tmp_path / ".keys")  # the committed one: comments only
    torrent_port, server_port = free_port(), free_port()
    argv = [str(torrent_port), str(server_port), "--round-interval", "1"]

    first = start_server(tmp_path, argv)
    assert first.returncode == 2, first.stderr
    assert "Traceback" not in first.stderr + first.stdout
    seed_file = tmp_path / "keys" / "server.seed"
    assert (seed_file.stat().st_mode & 0o777) == 0o600
    key = KeyPair.from_seed(read_seed(seed_file))
    assert f"its public id: {key.account_id}" in first.stderr
    assert "the quorum: .keys lists no server ids" in first.stderr
    assert "the genesis: genesis does not exist" in first.stderr

    again = start_server(tmp_path, argv)  # the key is kept, not made anew
    assert again.returncode == 2 and f"its public id: {key.account_id}" in again.stderr

    # The block for a quorum of one: the lines after its heading, up to the blank line.
    block = first.stderr.split("a quorum of 1, for trying it), run:\n")[1].split("\n\n")[0]
    commands = [shlex.split(line) for line in block.splitlines()]
    assert all(c[:2] == [sys.executable, "-m"] for c in commands), block
    keytool = [c for c in commands if c[2] == "scryp.keytool"]
    assert [c[3] for c in keytool] == ["quorum", "new", "genesis"]
    server = [c for c in commands if c[2] == "scryp.server"]
    assert server == [[sys.executable, "-m", "scryp.server", *argv]]
    for command in keytool:
        done = subprocess.run(
            command,
            cwd=tmp_path,
            env=environment(),
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
        assert done.returncode == 0, (command, done.stderr)
    assert re.search(r"[0-9a-f]{64}", (tmp_path / ".keys").read_text())

    process = subprocess.Popen(
        server[0],
        cwd=tmp_path,
        env=environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        async def certified() -> bool:
            found = await get_json(f"http://127.0.0.1:{server_port}/status")
            return found is not None and int(found.get("certified_round") or 0) >= 2

        asyncio.run(LocalNetwork.wait_until(certified, CERTIFIED_TIMEOUT_S, "a certified round"))
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=COMMAND_TIMEOUT_S)
    assert process.returncode == 0, err
    assert f"(id {key.account_id})" in err  # the server names itself as it starts
