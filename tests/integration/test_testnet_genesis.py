"""``python -m scryp.testnet`` runs any genesis it finds in DIR (issue 10; protocol §9.1):
a random genesis made by ``keytool genesis --random-accounts`` is kept, not replaced."""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scryp.core.balances import RECORD

from .http import get_json

pytestmark = pytest.mark.slow
DEADLINE_S = 60.0


def keytool(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "scryp.keytool", *args], check=True)


def test_testnet_keeps_an_existing_random_genesis(tmp_path: Path) -> None:
    genesis = tmp_path / "genesis"
    keytool("new", str(tmp_path / "keys" / "faucet.seed"))
    faucet = str(tmp_path / "keys" / "faucet.seed")
    keytool("genesis", "--random-accounts", "5000", "--faucet", faucet, "--seed", "5",
            "--out", str(genesis))  # fmt: skip
    made = genesis.read_bytes()
    account, balance = next(RECORD.iter_unpack(made[36 * 100 : 36 * 101]))
    command = [sys.executable, "-m", "scryp.testnet", "--dir", str(tmp_path), "--servers", "3",
               "--seeders", "0", "--archives", "0", "--round-interval", "0.5",
               "--duration-s", "120"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:

        async def scenario() -> None:
            deadline = time.monotonic() + DEADLINE_S
            description_path = tmp_path / "testnet.json"
            while not description_path.exists():
                assert time.monotonic() < deadline, "no testnet.json"
                await asyncio.sleep(0.2)  # another process: nothing to wait on but the file
            description = json.loads(description_path.read_text())
            assert description["network_id"] == hashlib.sha256(made).hexdigest()
            for server in description["servers"]:
                url = f"{server['api']}/query/{account.hex()}"
                while (answer := await get_json(url)) is None or "balance" not in answer:
                    assert time.monotonic() < deadline, f"{url} never answered"
                    await asyncio.sleep(0.2)
                assert answer["balance"] == balance

        asyncio.run(scenario())
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, output.decode()
    assert genesis.read_bytes() == made  # the testnet wrote no genesis of its own
