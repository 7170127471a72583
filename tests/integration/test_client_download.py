"""``python -m scryp.client INFOHASH`` as a real process against a loopback swarm (§8.6)."""

from __future__ import annotations

import asyncio
import hashlib
import sys
from pathlib import Path

import pytest

from scryp.core import snapshot

from .conftest import PrivateDHT, make_balances, write_round

pytestmark = pytest.mark.slow

PROCESS_TIMEOUT_S = 60.0


async def run_client(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "scryp.client",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), PROCESS_TIMEOUT_S)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def test_downloads_the_last_of_several_infohashes(dht: PrivateDHT, tmp_path: Path) -> None:
    balances = make_balances(30_000)
    round_dir = write_round(tmp_path / "seed", 5, balances, b"t" * 1400)

    async def body() -> None:
        async with dht(4) as swarms:
            torrent = await swarms[0].seed(round_dir)
            pasted = "ab" * 20 + "cd" * 20 + torrent.infohash_hex.upper()
            code, out, err = await run_client(
                pasted,
                "--bootstrap",
                "{}:{}".format(*swarms[1].address),
                "--out",
                str(tmp_path / "out"),
                "--timeout-s",
                "30",
            )
            assert code == 0, err
            saved = tmp_path / "out" / round_dir.name / snapshot.BALANCES
            assert f"{hashlib.sha256(balances).hexdigest()}  {saved}" in out.splitlines()
            assert saved.read_bytes() == balances
            assert "100%" in err  # the progress bar reached the end

    asyncio.run(body())


def test_unknown_infohash_fails_clearly_within_the_timeout(dht: PrivateDHT, tmp_path: Path) -> None:
    async def body() -> None:
        async with dht(2) as swarms:
            code, out, err = await run_client(
                "12" * 20,
                "--bootstrap",
                "{}:{}".format(*swarms[0].address),
                "--out",
                str(tmp_path),
                "--timeout-s",
                "3",
            )
            assert code == 1
            assert out == ""
            assert "could not fetch torrent " + "12" * 20 + " within 3 s" in err

    asyncio.run(body())


@pytest.mark.parametrize(
    "args",
    [
        ["xyz", "--bootstrap", "127.0.0.1:1"],
        ["ab" * 21, "--bootstrap", "127.0.0.1:1"],
        ["ab" * 20],  # no DHT to ask: refused rather than silently joining the public one
        ["ab" * 20, "--bootstrap", "10.1.2.3:6881"],  # not loopback in loopback mode
        ["ab" * 20, "--bootstrap", "localhost:6881"],  # a name: it could resolve anywhere
        ["ab" * 20, "--peer", "192.168.1.1:6881"],
    ],
)
def test_bad_arguments_exit_2(args: list[str]) -> None:
    code, _, err = asyncio.run(run_client(*args))
    assert code == 2
    assert "error" in err
